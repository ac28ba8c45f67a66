"""Decisions: lifetime value, reasons, rules, the loyalty ladder, valuation, actions, budgeted selection, batch scoring."""
