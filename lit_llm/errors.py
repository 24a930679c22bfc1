"""The kit's user-facing error: bad input, reported as one line naming the file and the problem."""


class UserError(ValueError):
    """Bad input from the user (a path, a file's content, a config). `lit-llm` prints it as one line, exit 1."""
