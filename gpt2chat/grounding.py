"""``python -m gpt2chat.grounding`` runs :mod:`gpt2chat.chat.grounding`: the package is grouped by
stage, the command stays."""

import sys

from gpt2chat.chat.grounding import main

if __name__ == "__main__":
    sys.exit(main())
