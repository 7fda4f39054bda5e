"""Experiment definitions (TOML) and the sweep runner."""
