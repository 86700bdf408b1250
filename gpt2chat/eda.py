"""``python -m gpt2chat.eda`` runs :mod:`gpt2chat.reports.eda`: the package is grouped by
stage, the command stays."""

import sys

from gpt2chat.reports.eda import main

if __name__ == "__main__":
    sys.exit(main())
