"""Experiment platform: Ray Data streaming, Ray Train/Tune, MLflow tracking."""
