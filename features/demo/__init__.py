"""Demo data: a dated subscription business (`dated`), a telecom-layout snapshot table (`telco`), and the
configured generator (`configured`: `make data`, and demo data made when a stage finds none)."""
