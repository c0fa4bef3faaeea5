"""Targets, splits, features, models, the training loop, the recipe's checks, runs and jobs. The only package that imports torch and scikit-learn."""
