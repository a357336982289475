"""Errors the model layer raises for bad input: one clear line each.

All derive from ``ModelError`` (a ``ValueError``) so command-line tools can catch one type and print
``error: <message>`` without a traceback.
"""


class ModelError(ValueError):
    """Base class for user-facing model errors."""


class UnknownModelError(ModelError):
    """A family or size that the registry does not know."""


class UnsupportedLengthError(ModelError):
    """A length the model cannot take by construction (not an out-of-memory)."""


class NotACheckpointError(ModelError):
    """A path or hub id that does not hold a loadable checkpoint."""
