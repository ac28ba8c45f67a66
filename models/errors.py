"""Errors a user fixes by changing the modelling configuration, reported without a traceback."""

from __future__ import annotations

from features.errors import ConfigError


class SplitError(ConfigError):
    """The data cannot be split as configured (too few labelled dates for the slices and gaps). `reason` is
    what went wrong without the advice on what to change (split=auto says it when it falls back)."""

    def __init__(self, message: str, reason: str | None = None):
        super().__init__(message)
        self.reason = reason or message
