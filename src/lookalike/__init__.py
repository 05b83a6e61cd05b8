"""lookalike: find similar images. Embed with a pretrained CNN, index, query.

>>> import lookalike as lk
>>> refs = lk.load_images("samples/clothing")          # doctest: +SKIP
>>> model = lk.create(refs)                            # doctest: +SKIP
>>> model.query(refs.head(3), k=5)                     # doctest: +SKIP
"""

from lookalike import config
from lookalike.embed.registry import ModelSpec, Preprocessing, available_models, register
from lookalike.errors import Failure, ImageError, InvalidArgument, LookalikeError, ModelFormatError
from lookalike.evaluate import EvaluationReport, PairReport, evaluate, evaluate_model, evaluate_pairs
from lookalike.ingest.sources import load_images
from lookalike.match import match
from lookalike.model import ImageSimilarityModel, create, load_model
from lookalike.version import __version__

__all__ = [
    "__version__",
    "EvaluationReport",
    "Failure",
    "ImageError",
    "ImageSimilarityModel",
    "InvalidArgument",
    "LookalikeError",
    "ModelFormatError",
    "ModelSpec",
    "PairReport",
    "Preprocessing",
    "available_models",
    "config",
    "create",
    "evaluate",
    "evaluate_model",
    "evaluate_pairs",
    "load_images",
    "load_model",
    "match",
    "register",
]
