"""Pixels to vectors: the network registry, the built-in and zoo networks, preprocessing and the extractor.

Importing any module of this package imports the zoo too, which adds its
entries to the registry with ``register()``: the registry itself knows
nothing of the zoo, so the two do not import each other.

The other names below are this package's public surface (the fronts import them from here, never from its
modules), each imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import lazy_loader

from lookalike.embed import registry, zoo  # noqa: F401 - the zoo registers its networks

if TYPE_CHECKING:
    from lookalike.embed.extractor import BATCH_SIZE
    from lookalike.embed.registry import (
        DEFAULT_MODEL,
        PRECISIONS,
        Descriptor,
        ModelSpec,
        Preprocessing,
        available_models,
        get_spec,
        register,
    )
    from lookalike.embed.zoo import fetch, list_models

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "extractor": ["BATCH_SIZE"],
        "registry": [
            "DEFAULT_MODEL",
            "PRECISIONS",
            "Descriptor",
            "ModelSpec",
            "Preprocessing",
            "available_models",
            "get_spec",
            "register",
        ],
        "zoo": ["fetch", "list_models"],
    },
)
