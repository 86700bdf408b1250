"""``python -m gpt2chat.followups`` runs :mod:`gpt2chat.chat.followups`: the package is grouped by
stage, the command stays."""

import sys

from gpt2chat.chat.followups import main

if __name__ == "__main__":
    sys.exit(main())
