"""The one exception type that means "the user did something we can explain"."""


class NanoNetError(Exception):
    """A mistake in the user's input or environment.

    The CLI prints the message as one sentence and exits with code 2, with no traceback,
    so every message must say what is wrong and what to do about it.
    """
