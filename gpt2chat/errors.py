"""The base of the errors a user can fix (a model that does not load, a failed export or deployment): commands print
them in one line with exit status 2 (``gpt2chat.cli.run``), never a traceback."""


class CommandError(Exception):
    pass
