"""Hyperparameter search, learning curves and ensembles, on this machine or a listed cluster."""
