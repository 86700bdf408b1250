"""``python -m gpt2chat.slides`` runs :mod:`gpt2chat.reports.slides`: the package is grouped by
stage, the command stays."""

import sys

from gpt2chat.reports.slides import main

if __name__ == "__main__":
    sys.exit(main())
