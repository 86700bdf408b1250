"""``python -m gpt2chat`` is the ``gpt2chat`` console script."""

import sys

from gpt2chat.cli import main

sys.exit(main())
