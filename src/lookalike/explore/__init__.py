"""Seeing a collection: the 2-D map and notebook display.

The names below are this package's public surface (the fronts import them from here, never from its modules),
each imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import lazy_loader

if TYPE_CHECKING:
    from lookalike.explore.layout import MAP_FILE, METHODS, MapLayout, compute, tsne_available

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={"layout": ["MAP_FILE", "METHODS", "MapLayout", "compute", "tsne_available"]},
)
