"""``python -m gpt2chat.safety`` runs :mod:`gpt2chat.guard.safety`: the package is grouped by
stage, the command stays."""

import sys

from gpt2chat.guard.safety import main

if __name__ == "__main__":
    sys.exit(main())
