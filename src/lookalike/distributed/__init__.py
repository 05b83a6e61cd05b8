"""Distributed indexing on Ray: the same extractor on an actor pool, parquet shards, one model.

``lookalike.create(..., engine="ray")`` and ``lookalike index SRC -o OUT
--engine ray`` use :func:`embed_on_ray`; the local engine stays the default.
Ray is the optional extra ``lookalike[ray]``. See ``docs/distributed.md``.
"""

from lookalike.distributed.engine import embed_on_ray
from lookalike.distributed.inputs import list_inputs

__all__ = ["embed_on_ray", "list_inputs"]
