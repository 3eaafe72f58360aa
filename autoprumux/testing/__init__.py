"""Helpers for testing autoprumux against real services (as `optuna.testing`)."""
