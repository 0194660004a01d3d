"""Rollout of the ensemble next to the legacy single-model path."""
