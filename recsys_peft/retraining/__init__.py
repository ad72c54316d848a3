"""Scheduled retraining: what to retrain, whether to promote, run history and retention."""
