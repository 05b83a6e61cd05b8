"""The Ray Data actor: one ONNX Runtime session per actor, the local engine's embedding step per block."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import numpy as np
import pandas as pd
import pyarrow as pa

from lookalike.distributed.inputs import is_object_uri, read_object
from lookalike.distributed.shards import to_table
from lookalike.embed.batch import Embedded, embed_sources
from lookalike.embed.extractor import Embedder
from lookalike.embed.registry import ModelSpec
from lookalike.errors import Failure
from lookalike.ingest.download import DownloadSettings

_READ_THREADS = 16  # object reads wait on the network, not on the CPU


def _read(uri: str) -> bytes | str:
    try:
        return read_object(uri)
    except OSError as exc:
        return f"cannot read object ({exc})"


class EmbedActor:
    """Callable class for ``Dataset.map_batches``: a block of (id, path) rows -> a shard table.

    Its ONNX Runtime session (and decode pool) uses as many threads as the
    CPUs Ray assigned to the actor, and lives as long as the actor.
    """

    def __init__(self, spec: ModelSpec, batch_size: int, cache: bool, download: DownloadSettings | dict | None) -> None:
        import ray

        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
        self.embedder = Embedder(spec, threads=max(1, int(cpus)))
        self.batch_size = batch_size
        self.cache = cache
        self.download = download

    def __call__(self, block: pd.DataFrame) -> pa.Table:
        paths = block["path"].tolist()
        sources, unread = _fetch_objects(paths)
        skipped = {f.position for f in unread}
        readable = np.asarray([p for p in range(len(paths)) if p not in skipped], dtype=np.int64)
        done = embed_sources(
            self.embedder, [sources[p] for p in readable], self.batch_size, False, self.cache, self.download
        )
        # Named by path: an object-store image was handed to the embedder as its bytes.
        failures = unread + [
            replace(f, position=int(readable[f.position]), source=paths[readable[f.position]]) for f in done.failures
        ]
        failures.sort(key=lambda f: f.position)
        in_block = Embedded(done.vectors, readable[done.positions], failures, done.headers)
        return to_table(block["id"].to_numpy(), paths, in_block, self.embedder.spec.dim)


def _fetch_objects(paths: list[str]) -> tuple[list, list[Failure]]:
    """``paths`` with object-store URIs replaced by their bytes, and a failure for each unreadable one."""
    objects = [p for p, path in enumerate(paths) if is_object_uri(path)]
    sources: list = list(paths)
    unread: list[Failure] = []
    if objects:
        with ThreadPoolExecutor(_READ_THREADS) as pool:
            for p, data in zip(objects, pool.map(_read, [paths[p] for p in objects]), strict=True):
                if isinstance(data, str):
                    unread.append(Failure(p, paths[p], "unreadable object", data))
                sources[p] = data
    return sources, unread
