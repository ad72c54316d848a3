"""Training: losses, the epoch loop with early stopping, pretraining and per-segment fine-tuning."""
