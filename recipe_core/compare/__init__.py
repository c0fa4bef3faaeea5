"""Runs side by side: the comparison table, the loss-curve chart, curve smoothing and the reports."""
