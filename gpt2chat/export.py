"""``python -m gpt2chat.export`` runs :mod:`gpt2chat.modeling.export`: the package is grouped by
stage, the command stays."""

import sys

from gpt2chat.modeling.export import main

if __name__ == "__main__":
    sys.exit(main())
