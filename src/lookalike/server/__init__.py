"""The web explorer and REST API: ``lookalike serve`` and ``model.explore()``.

Needs the ``server`` extra (``pip install 'lookalike[server]'``). The names below are this package's public
surface, each imported on first use (so that ``import lookalike.server`` needs no extra).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import lazy_loader

if TYPE_CHECKING:
    from lookalike.server.app import create_app
    from lookalike.server.matching import MatchedSet
    from lookalike.server.runner import RunningServer, serve, start_in_thread

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "app": ["create_app"],
        "matching": ["MatchedSet"],
        "runner": ["RunningServer", "serve", "start_in_thread"],
    },
)
