"""Shared utilities: metrics, the contrastive loss, the training engine, distributed helpers."""
