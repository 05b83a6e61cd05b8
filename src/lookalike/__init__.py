"""lookalike: find similar images. Embed with a pretrained CNN, index, query.

>>> import lookalike as lk
>>> refs = lk.load_images("samples/clothing")          # doctest: +SKIP
>>> model = lk.create(refs)                            # doctest: +SKIP
>>> model.query(refs.head(3), k=5)                     # doctest: +SKIP

The names below are imported on first use (``lk.create`` loads the stages it
needs then), so ``import lookalike`` and ``lookalike --help`` start at once.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

from lookalike import config
from lookalike.errors import Failure, ImageError, InvalidArgument, LookalikeError, ModelFormatError
from lookalike.version import __version__

if TYPE_CHECKING:
    from lookalike.embed.registry import ModelSpec, Preprocessing, available_models, register
    from lookalike.ingest.sources import load_images
    from lookalike.jobs import evaluate, evaluate_pairs, match
    from lookalike.model import ImageSimilarityModel, audit, create, load_model
    from lookalike.operations.evaluate import EvaluationReport, PairReport, evaluate_model

#: Each public name imported on first use -> the module defining it.
_WHERE = {
    "ModelSpec": "lookalike.embed.registry",
    "Preprocessing": "lookalike.embed.registry",
    "available_models": "lookalike.embed.registry",
    "register": "lookalike.embed.registry",
    "EvaluationReport": "lookalike.operations.evaluate",
    "PairReport": "lookalike.operations.evaluate",
    "evaluate": "lookalike.jobs",
    "evaluate_model": "lookalike.operations.evaluate",
    "evaluate_pairs": "lookalike.jobs",
    "load_images": "lookalike.ingest.sources",
    "match": "lookalike.jobs",
    "ImageSimilarityModel": "lookalike.model",
    "audit": "lookalike.model",
    "create": "lookalike.model",
    "load_model": "lookalike.model",
}

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
    "audit",
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


def __getattr__(name: str) -> Any:
    """A public name, imported now; or a sub-package (``lk.embed``), as ``import lookalike.embed`` would."""
    if name in _WHERE:
        value = getattr(importlib.import_module(_WHERE[name]), name)
        globals()[name] = value
        return value
    if not name.startswith("_"):
        try:
            return importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_WHERE})


class _Package(types.ModuleType):
    """The package, keeping ``lk.audit`` the function once the ``lookalike.audit`` package is imported."""

    def __setattr__(self, name: str, value: Any) -> None:
        # Importing lookalike.audit binds the package to the name "audit": the function is what users call, so
        # that binding is left out and the name resolves to the function, as an eager import made it.
        if name in _WHERE and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
