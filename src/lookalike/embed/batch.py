"""Embed a list of image sources: download the URLs, reuse the cache, extract.

This is the one embedding step every engine runs: the local engine calls it
on the whole list in this process, the Ray engine on each block in its actors
(:mod:`lookalike.distributed`). Both hand an :class:`Embedded` to the same
model-assembly code in :func:`lookalike.create`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from lookalike.embed.cache import EmbeddingCache, default_path
from lookalike.embed.extractor import BATCH_SIZE, Embedder
from lookalike.errors import Failure
from lookalike.ingest.download import DownloadSettings, localize
from lookalike.ingest.pixel_facts import COLUMNS as PIXEL_FACTS
from lookalike.ingest.pixel_facts import facts_table

#: What each embedded image's header and pixels say, kept as columns of the references.
HEADER_COLUMNS = ["width", "height", "format", *PIXEL_FACTS]


@dataclass
class Embedded:
    """Embeddings of a list of sources, by input position."""

    vectors: np.ndarray  # (len(positions), dim) float32
    positions: np.ndarray  # int64 input positions of the rows of ``vectors``, ascending
    failures: list[Failure] = field(default_factory=list)  # by input position, ascending; named as in the input
    headers: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=HEADER_COLUMNS))  # rows as ``vectors``
    stats: dict[str, int] = field(default_factory=dict)  # "from_cache", and download/shard counts when any


def embed_sources(
    embedder: Embedder,
    sources: Sequence[Any],
    batch_size: int = BATCH_SIZE,
    verbose: bool = True,
    cache: bool = True,
    download: DownloadSettings | dict | None = None,
) -> Embedded:
    """Embed ``sources`` (paths, http(s) URLs, bytes, PIL images or arrays) with ``embedder``.

    URLs are fetched into the download cache first; with ``cache``, files
    already in the embedding cache (``config.cache_dir()``) are not decoded
    again and new ones are stored batch by batch.

    Examples
    --------
    >>> from lookalike.embed.registry import get_spec
    >>> done = embed_sources(Embedder(get_spec("squeezenet_v1.1")), ["samples/clothing/dress/dress_1.jpg"])  # doctest: +SKIP
    >>> done.vectors.shape, done.positions.tolist()  # doctest: +SKIP
    ((1, 512), [0])
    """
    spec = embedder.spec
    local = localize(sources, download, verbose=verbose)  # URLs -> downloaded files
    store = EmbeddingCache(default_path(), spec.fingerprint, spec.dim) if cache else None
    try:
        result = embedder.extract(local.sources, batch_size=batch_size, verbose=verbose, cache=store)
    finally:
        if store is not None:
            store.close()
    positions, failures = local.merge(result.ok, result.failures)
    headers = pd.concat(
        [
            pd.DataFrame([(i.width, i.height, i.format) for i in result.info], columns=HEADER_COLUMNS[:3]),
            facts_table(result.facts),
        ],
        axis=1,
    )
    return Embedded(result.embeddings, positions, failures, headers, {"from_cache": result.cached, **local.stats()})
