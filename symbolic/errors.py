"""One exception type for everything a user can get wrong, so the CLI can report it cleanly."""


class SympropError(Exception):
    """Bad input from a user: a formula, a file, a network spec, a name.

    The message names the problem and where it is (file, line, field, column); the CLI prints
    it on one line and exits with status 2 instead of showing a traceback.
    """
