"""Data side of churnwise: the data contract, reading and validating input tables, demo data, features."""
