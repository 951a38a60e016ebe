"""User-facing errors: one line, naming the file or field and what was expected."""


class UserError(Exception):
    """A mistake in what the user gave us (suite file, names, paths, data location).

    The CLI prints it as one line and exits 2; it is never shown as a traceback.
    """
