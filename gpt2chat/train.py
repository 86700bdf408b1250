"""``python -m gpt2chat.train`` runs :mod:`gpt2chat.modeling.train`: the package is grouped by
stage, the command stays."""

import sys

from gpt2chat.modeling.train import main

if __name__ == "__main__":
    sys.exit(main())
