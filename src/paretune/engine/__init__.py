"""The one training loop and what it needs: optimizer, schedule, precision, checkpoints."""
