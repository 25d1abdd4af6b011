"""One exception type for everything a user can fix.

The CLI prints a :class:`TinymlError` as one message and exits non-zero, without a traceback:
the message itself must say what was wrong, where (file, key, line) and what to do.
"""

from __future__ import annotations


class TinymlError(Exception):
    """An error the user can act on; ``str(err)`` is the complete message."""


class SpecError(TinymlError):
    """The model spec is malformed or names something that does not exist."""


class DataError(TinymlError):
    """The data set is missing, corrupt or does not match the spec."""


class ModelError(TinymlError):
    """A model file is unreadable, or uses something the target cannot run."""


class AcceptanceError(TinymlError):
    """The model was built but misses the spec's acceptance bars."""


class FirmwareError(TinymlError):
    """The firmware did not configure, build or run."""
