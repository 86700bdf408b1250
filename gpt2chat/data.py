"""``python -m gpt2chat.data`` runs :mod:`gpt2chat.corpus.data`: the package is grouped by
stage, the command stays."""

import sys

from gpt2chat.corpus.data import main

if __name__ == "__main__":
    sys.exit(main())
