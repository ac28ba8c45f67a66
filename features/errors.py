"""Errors a user fixes by changing the configuration, reported without a traceback."""

from __future__ import annotations


class ConfigError(ValueError):
    """The configuration cannot work with this data; the message names the key to change."""
