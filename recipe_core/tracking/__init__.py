"""The store of datasets, runs, metrics, labels and notes, its tracking API and importers.

The only package that holds SQL for the store.
"""
