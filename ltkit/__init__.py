"""ltkit: long-tail image classification by category extrapolation."""
__version__ = "0.1.0"
