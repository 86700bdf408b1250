"""``python -m gpt2chat.compare`` runs :mod:`gpt2chat.reports.compare`: the package is grouped by
stage, the command stays."""

import sys

from gpt2chat.reports.compare import main

if __name__ == "__main__":
    sys.exit(main())
