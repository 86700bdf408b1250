"""``python -m gpt2chat.masking`` runs :mod:`gpt2chat.guard.masking`: the package is grouped by
stage, the command stays."""

import sys

from gpt2chat.guard.masking import main

if __name__ == "__main__":
    sys.exit(main())
