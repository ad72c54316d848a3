"""Datasets: the interaction log as arrays, splits, training views and the synthetic generator."""
