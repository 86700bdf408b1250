"""``python -m gpt2chat.deploy`` runs :mod:`gpt2chat.serving.deploy`: the package is grouped by
stage, the command stays."""

import sys

from gpt2chat.serving.deploy import main

if __name__ == "__main__":
    sys.exit(main())
