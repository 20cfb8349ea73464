"""What goes wrong when a backbone is asked for, importable without torch."""


class WeightsNotFoundError(FileNotFoundError):
    """Raised when a backbone's pretrained weights are neither in the local cache nor given as a file."""
