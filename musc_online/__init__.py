"""musc-online: zero-shot MuSc anomaly scoring, in batch and one frame at a time."""

__version__ = "0.1.0"
