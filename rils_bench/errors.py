"""The one exception type that means "the input is wrong", not "the code is wrong".

The CLI reports a `UserError` as one line on stderr with exit code 2; any other exception is a bug and
keeps its traceback.
"""


class UserError(Exception):
    """Bad input or environment: a missing or corrupt file, an unknown name, a bad flag, an unreachable registry."""
