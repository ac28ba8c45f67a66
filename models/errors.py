"""Errors a user fixes by changing the modelling configuration, reported without a traceback."""

from __future__ import annotations


class SplitError(ValueError):
    """The data cannot be split as configured (too few labelled dates for the slices and gaps)."""


class DecisionConfigError(ValueError):
    """The decision configuration (reasons, ladder, valuation, actions) is malformed; the message names the key."""
