"""Training: fresh checkpoints, datasets, the Trainer-based engine and evaluation."""
