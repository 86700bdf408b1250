"""``python -m gpt2chat.engine`` runs :mod:`gpt2chat.chat.engine`: the package is grouped by
stage, the command stays."""

import sys

from gpt2chat.chat.engine import main

if __name__ == "__main__":
    sys.exit(main())
