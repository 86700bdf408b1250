"""``python -m gpt2chat.sweep`` runs :mod:`gpt2chat.modeling.sweep`: the package is grouped by
stage, the command stays."""

import sys

from gpt2chat.modeling.sweep import main

if __name__ == "__main__":
    sys.exit(main())
