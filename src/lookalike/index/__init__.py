"""Nearest-neighbour search over embeddings; knows nothing of images."""

from lookalike.index.exact import ExactIndex
from lookalike.index.metrics import METRICS, check_metric

__all__ = ["METRICS", "ExactIndex", "check_metric"]
