"""Stages and entry points of churnwise: `python -m pipeline.<stage>` with Hydra configs from `conf/`."""
