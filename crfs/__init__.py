"""crfs: browse and restart process checkpoint images."""

__version__ = "0.1.0"
