"""Targets, splits, features, models, the training loop, fitting, the recipe's checks, runs and jobs.

The only package that imports torch and scikit-learn; targets, verdicts and artifacts are read without them.
"""
