"""halbench: benchmark and profile KNN loss functions (HAL, AL, NCA and friends)."""

import os

__version__ = "0.1.0"

# The CPU memory probe uses torch.profiler, whose Kineto backend prints a line at every
# profiler start and stop (and a CUDA error on machines without a GPU); level 6 silences them.
# Set before torch initializes Kineto; a user's own setting wins.
os.environ.setdefault("KINETO_LOG_LEVEL", "6")
