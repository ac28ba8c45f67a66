"""Errors a user fixes by changing the decision configuration, reported without a traceback."""

from __future__ import annotations

from features.errors import ConfigError


class DecisionConfigError(ConfigError):
    """The decision configuration (reasons, ladder, valuation, actions) is malformed; the message names the key."""
