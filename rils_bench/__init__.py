"""rils-bench: RILS pre-training and transfer evaluation."""

__version__ = "0.1.0"
