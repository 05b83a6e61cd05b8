"""Run the embedding step on Ray: inputs as a Ray Dataset, an actor pool, parquet shards, resume.

The driver lists the inputs, skips every id already in a complete shard of
the same job (a re-run after a crash resumes there), streams the rest through
:class:`~lookalike.distributed.actor.EmbedActor` with ``map_batches`` and
``write_parquet``, then reads the shards back as one :class:`Embedded`, which
:func:`lookalike.create` assembles into a model exactly as for the local engine.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from typing import Any

import pandas as pd

from lookalike.config import cache_dir
from lookalike.distributed.actor import EmbedActor
from lookalike.distributed.inputs import filesystem, job_key
from lookalike.distributed.shards import read_shards, to_embedded
from lookalike.embed.batch import Embedded
from lookalike.embed.extractor import BATCH_SIZE
from lookalike.embed.registry import ModelSpec
from lookalike.errors import InvalidArgument, InvalidType, MissingExtra
from lookalike.ingest.decode import source_name
from lookalike.ingest.download import DownloadSettings

#: Images per shard file at most: the unit of work, of retry and of resume.
ROWS_PER_SHARD = 1024
_BLOCKS_PER_ACTOR = 4  # enough blocks that every actor stays busy and a lost one costs little


def _import_ray():
    try:
        import ray
        import ray.data  # noqa: F401  # the Data library is the part lookalike needs
    except ImportError:
        raise MissingExtra(
            "engine='ray' needs Ray Data: pip install 'lookalike[ray]' (or: pip install 'ray[data]')"
        ) from None
    return ray


def embed_on_ray(
    spec: ModelSpec,
    sources: Sequence[Any],
    batch_size: int = BATCH_SIZE,
    verbose: bool = True,
    cache: bool = True,
    download: DownloadSettings | dict | None = None,
    *,
    address: str | None = None,
    work_dir: str | os.PathLike | None = None,
    cpus_per_actor: float = 1,
    keep_shards: bool = False,
) -> Embedded:
    """Embed ``sources`` (paths, http(s) URLs, object-store URIs) on a Ray cluster.

    Parameters
    ----------
    spec : ModelSpec
        The embedding network; every actor opens its own ONNX Runtime session of it.
    sources : sequence of str
        One image each; ids in the shards are positions in this list.
    batch_size, verbose, cache, download
        As for :func:`lookalike.create` (``cache`` is each node's own embedding cache).
    address : str, optional
        Cluster address (``"ray://head:10001"``, ``"auto"``). None joins the
        open Ray session, or starts a local cluster for the job (and stops it after).
    work_dir : str or path, optional
        Where the shards go (``WORK/shards/*.parquet``): a local folder or an
        object-store URI; on a multi-node cluster it must be storage every
        node reaches. Default: ``config.cache_dir()/ray-jobs/<job key>``.
    cpus_per_actor : float, default 1
        CPUs of each actor, which are its ONNX Runtime and decode threads.
        The pool has one actor per ``cpus_per_actor`` CPUs of the cluster.
    keep_shards : bool, default False
        Keep the work folder after success (it is always kept after a failure, to resume from).

    Returns
    -------
    Embedded
        With ``stats["from_shards"]``: images found in shards of an earlier run of this job.

    Examples
    --------
    >>> from lookalike.embed.registry import get_spec
    >>> done = embed_on_ray(get_spec("squeezenet_v1.1"), ["a.jpg", "s3://bucket/b.jpg"])  # doctest: +SKIP
    >>> done.positions.tolist(), done.stats  # doctest: +SKIP
    ([0, 1], {'from_shards': 0})
    """
    ray = _import_ray()
    odd = next((s for s in sources if not isinstance(s, str)), None)
    if odd is not None:
        raise InvalidType(
            f"engine='ray' embeds image files, URLs and object-store URIs; got {source_name(odd)} "
            "(use engine='local' for bytes, PIL images or arrays)"
        )
    if cpus_per_actor <= 0:
        raise InvalidArgument(f"cpus_per_actor must be positive, got {cpus_per_actor!r}")
    store, root = filesystem(work_dir or cache_dir() / "ray-jobs" / job_key(spec.fingerprint, sources))
    shards = f"{root.rstrip('/')}/shards"
    done = read_shards(store, shards, spec.dim)
    from_shards = len(done)
    seen = set(done["id"].to_pylist())
    todo = [i for i in range(len(sources)) if i not in seen]
    if todo:
        started_here = not ray.is_initialized()
        if started_here:
            ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=verbose)
        try:
            _run(ray, spec, sources, todo, batch_size, verbose, cache, download, cpus_per_actor, store, shards)
        finally:
            if started_here:
                ray.shutdown()
        done = read_shards(store, shards, spec.dim)
    if len(done) != len(sources):
        raise RuntimeError(
            f"the Ray job ended with {len(sources) - len(done)} of {len(sources)} images neither embedded nor "
            f"reported as failed; run it again to resume from the shards in {root}"
        )
    embedded = to_embedded(done, spec.dim)
    embedded.stats = {"from_shards": from_shards}
    if not keep_shards:
        store.delete_dir(root)
    return embedded


def _run(
    ray,
    spec: ModelSpec,
    sources: Sequence[str],
    todo: list[int],
    batch_size: int,
    verbose: bool,
    cache: bool,
    download: DownloadSettings | dict | None,
    cpus_per_actor: float,
    store,
    shards: str,
) -> None:
    """Embed the ``todo`` positions of ``sources`` into new shards under ``shards``."""
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = verbose
    context.print_on_execution_start = verbose
    actors = max(1, int(ray.cluster_resources().get("CPU", 1) // cpus_per_actor))
    rows = max(1, min(ROWS_PER_SHARD, math.ceil(len(todo) / (_BLOCKS_PER_ACTOR * actors))))
    blocks = [
        pd.DataFrame({"id": todo[start : start + rows], "path": [sources[i] for i in todo[start : start + rows]]})
        for start in range(0, len(todo), rows)
    ]
    dataset = ray.data.from_pandas(blocks).map_batches(
        EmbedActor,
        batch_size=None,  # a whole block per call: one shard, and the extractor pipelines across it
        batch_format="pandas",
        fn_constructor_kwargs={"spec": spec, "batch_size": batch_size, "cache": cache, "download": download},
        # Ray Data starts pool actors with max_restarts=-1 and max_task_retries=-1: a killed
        # actor is restarted and the blocks it held are run again (tests/test_ray.py kills one).
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=cpus_per_actor,
    )
    # Writing a shard is I/O: no CPU is reserved for it, so the actors keep every core.
    dataset.write_parquet(shards, filesystem=store, ray_remote_args={"num_cpus": 0})
