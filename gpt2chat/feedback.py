"""``python -m gpt2chat.feedback`` runs :mod:`gpt2chat.serving.feedback`: the package is grouped by
stage, the command stays."""

import sys

from gpt2chat.serving.feedback import main

if __name__ == "__main__":
    sys.exit(main())
