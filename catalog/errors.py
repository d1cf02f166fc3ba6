"""The project's one exception hierarchy.

Every error a user can cause derives from :class:`SmartcacheError`; the CLI turns
it into one line on stderr and a non-zero exit, the HTTP service into a 4xx JSON
body. Catalog errors carry a machine-readable :class:`ErrorCode`.
"""

from __future__ import annotations

import enum


class SmartcacheError(Exception):
    """Base of every error smartcache raises on purpose."""

    exit_code = 1


class ConfigError(SmartcacheError):
    """The configuration file or an environment variable is invalid."""


class ErrorCode(str, enum.Enum):
    NOT_FOUND = "not_found"
    ALREADY_EXISTS = "already_exists"
    INVALID = "invalid"
    UNAVAILABLE = "unavailable"


class CatalogError(SmartcacheError):
    """A catalog operation failed; ``code`` says why."""

    def __init__(self, code: ErrorCode, message: str):
        super().__init__(message)
        self.code = code


class NotFound(CatalogError):
    def __init__(self, message: str):
        super().__init__(ErrorCode.NOT_FOUND, message)


class AlreadyExists(CatalogError):
    def __init__(self, message: str):
        super().__init__(ErrorCode.ALREADY_EXISTS, message)


class Invalid(CatalogError):
    def __init__(self, message: str):
        super().__init__(ErrorCode.INVALID, message)


class Unavailable(CatalogError):
    def __init__(self, message: str):
        super().__init__(ErrorCode.UNAVAILABLE, message)
