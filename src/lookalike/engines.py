"""Embedding engines: where ``create`` runs the network over the references.

An engine turns the list of image sources into an :class:`~lookalike.embed.batch.Embedded`
(vectors by input position, failures, image headers, counts); ``create``
assembles the model from it the same way whichever engine ran. A new engine
(a Spark or Dask pool, say) is one class here with ``prepare`` and ``embed``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Protocol

from lookalike.embed.batch import Embedded, embed_sources
from lookalike.embed.extractor import Embedder
from lookalike.embed.registry import ModelSpec
from lookalike.errors import InvalidArgument
from lookalike.ingest.download import DownloadSettings

__all__ = ["Engine", "LocalEngine", "RayEngine", "as_engine"]


class Engine(Protocol):
    def prepare(self, dataset: Any) -> Any:
        """The dataset as ``create`` should read it (an engine may list remote prefixes first)."""

    def embed(
        self,
        spec: ModelSpec,
        images: list,
        batch_size: int,
        verbose: bool,
        cache: bool,
        download: DownloadSettings | dict | None,
    ) -> Embedded:
        """Embed ``images`` with ``spec``; failures are reported, never raised."""


class LocalEngine:
    """This process: the pipelined extractor (decode threads, batched inference) with the embedding cache."""

    def prepare(self, dataset: Any) -> Any:
        return dataset

    def embed(self, spec, images, batch_size, verbose, cache, download) -> Embedded:
        return embed_sources(Embedder(spec), images, batch_size, verbose, cache, download)

    def __repr__(self) -> str:
        return "LocalEngine()"


@dataclass(frozen=True)
class RayEngine:
    """A Ray cluster (``pip install 'lookalike[ray]'``, see ``docs/distributed.md``): an actor pool runs the
    same extractor and writes parquet shards that this process builds the model from.

    Parameters
    ----------
    address : str, optional
        The cluster to join (``"ray://head:10001"``, ``"auto"``); a local one
        is started when None and no Ray session is open.
    work_dir : str or path, optional
        Where the shards are written (a re-run after a crash resumes from
        them); shared storage on a multi-node cluster. Default: a folder
        under ``config.cache_dir()`` named after the job.
    """

    address: str | None = None
    work_dir: str | os.PathLike | None = None

    def prepare(self, dataset: Any) -> Any:
        from lookalike.distributed import list_inputs

        return list_inputs(dataset)  # object-store prefixes -> one URI per image

    def embed(self, spec, images, batch_size, verbose, cache, download) -> Embedded:
        from lookalike.distributed import embed_on_ray

        return embed_on_ray(
            spec, images, batch_size, verbose, cache, download, address=self.address, work_dir=self.work_dir
        )


def as_engine(engine: str | Engine) -> Engine:
    """``"local"``, ``"ray"`` or an engine object -> an engine object."""
    if engine == "local":
        return LocalEngine()
    if engine == "ray":
        return RayEngine()
    if hasattr(engine, "prepare") and hasattr(engine, "embed"):
        return engine
    raise InvalidArgument(
        f"engine must be 'local' or 'ray' (or an engine object such as RayEngine(address=...)), got {engine!r}"
    )
