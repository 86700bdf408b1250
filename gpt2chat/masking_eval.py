"""``python -m gpt2chat.masking_eval`` runs :mod:`gpt2chat.guard.masking_eval`: the package is grouped by
stage, the command stays."""

import sys

from gpt2chat.guard.masking_eval import main

if __name__ == "__main__":
    sys.exit(main())
