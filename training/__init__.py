"""Training: the engine (epoch loop, tasks, logging), pre-training and downstream set-up,
schedules, losses, metrics, torchrun helpers, configuration and command-line handling."""
