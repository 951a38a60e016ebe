"""halbench: benchmark and profile KNN loss functions (HAL, AL, NCA and friends)."""

__version__ = "0.1.0"
