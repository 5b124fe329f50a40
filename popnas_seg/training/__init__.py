"""Training of child networks: losses/metrics and the Trainer."""
