"""One script per figure of the paper: read results, never retrain, draw."""
