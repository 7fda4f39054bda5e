"""Analyses built on :mod:`anisotropy`: symbolic limits, Monte Carlo free
entropy, convergence studies and cooling-law fits."""
