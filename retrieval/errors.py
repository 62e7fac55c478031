"""The user-error types: bad input, bad configuration, a model that cannot be found.

Only these become one line and exit code 2 in the CLI; anything else is a bug and keeps its
traceback. They subclass the built-in error a caller would expect (ValueError,
FileNotFoundError), so library callers can keep catching those.
"""

from __future__ import annotations


class UserError(Exception):
    """Something the user can fix: ``str(err)`` is one line that says what and where."""


class ConfigError(UserError, ValueError):
    """A config file, key or command-line option that cannot work."""


class MissingInputError(UserError, FileNotFoundError):
    """A file, folder, stage output or model the user named that is not there."""
