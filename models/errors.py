"""Errors a user fixes by changing the modelling configuration, reported without a traceback."""

from __future__ import annotations

from features.errors import ConfigError


class SplitError(ConfigError):
    """The data cannot be split as configured (too few labelled dates for the slices and gaps)."""
