"""``python -m gpt2chat.retrieval`` runs :mod:`gpt2chat.search.retrieval`: the package is grouped by
stage, the command stays."""

import sys

from gpt2chat.search.retrieval import main

if __name__ == "__main__":
    sys.exit(main())
