"""lookalike: find similar images. Embed with a pretrained CNN, index, query.

>>> import lookalike as lk
>>> refs = lk.load_images("samples/clothing")          # doctest: +SKIP
>>> model = lk.create(refs)                            # doctest: +SKIP
>>> model.query(refs.head(3), k=5)                     # doctest: +SKIP

The names below are imported on first use (``lk.create`` loads the stages it
needs then), so ``import lookalike`` and ``lookalike --help`` start at once.
"""

from __future__ import annotations

import sys
import types
from typing import TYPE_CHECKING, Any

import lazy_loader

from lookalike import config
from lookalike.errors import Failure, ImageError, InvalidArgument, LookalikeError, ModelFormatError
from lookalike.version import __version__

if TYPE_CHECKING:
    from lookalike.embed.registry import ModelSpec, Preprocessing, available_models, register
    from lookalike.ingest.sources import load_images
    from lookalike.jobs import evaluate, evaluate_pairs, match
    from lookalike.model import ImageSimilarityModel, audit, create, load_model
    from lookalike.operations.evaluate import EvaluationReport, PairReport, evaluate_model

#: Each public name imported on first use, under the module defining it.
_LAZY = {
    "embed.registry": ["ModelSpec", "Preprocessing", "available_models", "register"],
    "ingest.sources": ["load_images"],
    "jobs": ["evaluate", "evaluate_pairs", "match"],
    "model": ["ImageSimilarityModel", "audit", "create", "load_model"],
    "operations.evaluate": ["EvaluationReport", "PairReport", "evaluate_model"],
}
#: Modules and sub-packages reached as attributes (``lk.embed``), imported then as ``import lookalike.embed`` would.
#: ``lookalike.audit`` is not among them: ``lk.audit`` is the function.
_SUBMODULES = [
    "cli",
    "dedup",
    "distributed",
    "embed",
    "engines",
    "explore",
    "export",
    "index",
    "ingest",
    "jobs",
    "model",
    "operations",
    "references",
    "server",
    "store",
    "summary",
    "validation",
]
_LAZY_NAMES = {name for names in _LAZY.values() for name in names}

__getattr__, _lazy_dir, _ = lazy_loader.attach(__name__, submodules=_SUBMODULES, submod_attrs=_LAZY)
__all__ = ["__version__", "Failure", "ImageError", "InvalidArgument", "LookalikeError", "ModelFormatError", "config"]
__all__ += sorted(_LAZY_NAMES)


def __dir__() -> list[str]:
    return sorted({*globals(), *_lazy_dir()})


class _Package(types.ModuleType):
    """The package, keeping ``lk.audit`` the function once the ``lookalike.audit`` package is imported."""

    def __setattr__(self, name: str, value: Any) -> None:
        # Importing lookalike.audit binds the package to the name "audit": the function is what users call, so
        # that binding is left out and the name resolves to the function, as an eager import made it.
        if name in _LAZY_NAMES and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
