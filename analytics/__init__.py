"""Retention analytics: retention rates, survival, lifetime, defection reasons and the retention report."""
