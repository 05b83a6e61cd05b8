"""Change a model's references in place: add images, remove labels, sync with a folder.

The index is updated, not rebuilt (see :mod:`lookalike.index.approximate` for how
HNSW and IVF drop vectors). New images are embedded by :func:`lookalike.create`
itself (same dataset forms, same embedding cache), so only files the cache has
not seen cost inference.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from lookalike.index import build_index
from lookalike.index.factory import after_change, requested_method

if TYPE_CHECKING:
    from lookalike.model import ImageSimilarityModel


def _describe(labels: np.ndarray, limit: int = 5) -> str:
    shown = ", ".join(repr(v) for v in labels[:limit].tolist())
    return shown + (f" and {len(labels) - limit} more" if len(labels) > limit else "")


def _embed_like(
    model: ImageSimilarityModel, dataset: Any, verbose: bool, cache: bool, download
) -> ImageSimilarityModel:
    """A throw-away exact model of ``dataset``, embedded exactly as ``model``'s references were."""
    from lookalike.model import create

    spec = model._model_spec()
    return create(
        dataset,
        label=model.label,
        feature=model.feature,
        model=spec,
        metric=model.metric,
        batch_size=model.batch_size,
        verbose=verbose,
        cache=cache,
        download=download,
        descriptor=spec.descriptor if spec is not None else None,
        projection=model.projection,
        method="brute_force",
    )


def _append(model: ImageSimilarityModel, part: ImageSimilarityModel, rows: np.ndarray | None = None) -> int:
    """Append ``part``'s references (all, or those at ``rows``) to ``model``; returns how many."""
    rows = np.arange(len(part.labels)) if rows is None else np.asarray(rows, dtype=np.int64)
    if len(rows) == 0:
        return 0
    if part.features.shape[1] != model.features.shape[1]:
        raise ValueError(
            f"added embeddings have length {part.features.shape[1]}, but this model's "
            f"({model.model_name or 'precomputed'}) have length {model.features.shape[1]}"
        )
    labels = part.labels[rows]
    if model.label is None:  # row-number labels: continue the numbering
        start = int(np.max(model.labels)) + 1 if len(model.labels) else 0
        labels = np.arange(start, start + len(rows))
    else:
        clash = pd.Index(labels).intersection(pd.Index(model.labels))
        if len(clash):
            raise ValueError(
                f"label column {model.label!r}: {len(clash)} new labels are already references "
                f"({_describe(clash.to_numpy())}); labels must stay unique (remove() them first to replace them)"
            )
    references = part.references.iloc[rows].reset_index(drop=True)
    if part.feature != model.feature and part.feature in references.columns:
        references = references.rename(columns={part.feature: model.feature})
    model.labels = np.concatenate([model.labels, labels])
    model.references = pd.concat([model.references, references], ignore_index=True)
    _set_vectors(model, part.features[rows], part.embeddings[rows], None)
    return len(rows)


def _set_vectors(model: ImageSimilarityModel, features, embeddings, drop: np.ndarray | None) -> None:
    """Apply an append (``features``/``embeddings``) or a removal (``drop`` positions) to vectors and index."""
    shared = model.features is model.embeddings
    if drop is not None:
        model.features = model.features if shared else np.delete(model.features, drop, axis=0)
        model._index.remove(drop)
    else:
        model.features = model.features if shared else np.concatenate([model.features, features])
        model._index.add(embeddings)
    model.embeddings = model._index.vectors
    if shared:
        model.features = model.embeddings
    if model.projection is not None and model.projection.kind == "whiten":
        # A whitening is fitted on the references: it changes with them, and so does every vector.
        model.refit_projection()
    else:
        model._index = after_change(model._index, model.embeddings, model.metric)


def add(model: ImageSimilarityModel, dataset: Any, verbose: bool = True, cache: bool = True, download=None) -> None:
    """Embed ``dataset`` (any form :func:`lookalike.create` takes) and append it to ``model``'s references."""
    part = _embed_like(model, dataset, verbose, cache, download)
    _append(model, part)
    model.failures = (
        pd.concat([model.failures, part.failures], ignore_index=True) if len(part.failures) else model.failures
    )
    model.build_stats = {**part.build_stats, "added": int(len(part.labels))}


def remove(model: ImageSimilarityModel, labels: Any) -> None:
    """Drop the references named by ``labels`` (each must exist, once)."""
    wanted = np.atleast_1d(
        np.asarray(list(labels) if isinstance(labels, (list, tuple, set, pd.Index, pd.Series)) else labels)
    )
    if wanted.ndim != 1:
        raise ValueError(f"labels must be a label or a 1-D list of labels, got shape {wanted.shape}")
    counts = pd.Series(wanted).value_counts()
    if (counts > 1).any():
        raise ValueError(f"labels to remove are repeated: {_describe(counts.index[counts > 1].to_numpy())}")
    positions = pd.Index(model.labels).get_indexer(wanted)
    if (positions < 0).any():
        raise ValueError(f"no reference has label {_describe(wanted[positions < 0])}")
    if len(positions) == len(model.labels):
        raise ValueError("cannot remove every reference: a model needs at least one (build a new one instead)")
    if len(positions) == 0:
        return
    model.labels = np.delete(model.labels, positions)
    model.references = model.references.drop(index=model.references.index[positions]).reset_index(drop=True)
    _set_vectors(model, None, None, positions)


def sync(model: ImageSimilarityModel, sources: Any, verbose: bool = True, download=None) -> dict[str, int]:
    """Make ``model``'s references the images now found in ``sources``: add new files, drop deleted ones,
    re-embed changed ones (the cache makes unchanged files cheap). Returns the counts.

    References are matched by path, so ``model`` must have been built from files.
    """
    if model.feature is None or model.feature not in model.references.columns:
        raise ValueError("this model was not built from image files: it cannot be synced with a folder")
    started = time.perf_counter()
    fresh = _embed_like(model, sources, verbose, cache=True, download=download)
    old = pd.Index(model.references[model.feature].map(os.fspath))
    new = pd.Index(fresh.references[fresh.feature].map(os.fspath))
    in_new = new.get_indexer(old)
    gone = np.flatnonzero(in_new < 0)
    both = np.flatnonzero(in_new >= 0)
    differs = both[np.any(np.asarray(model.features[both]) != fresh.features[in_new[both]], axis=1)]
    added = np.flatnonzero(old.get_indexer(new) < 0)
    if len(gone) + len(differs) == len(model.labels):  # nothing survives: take the fresh set as it is
        requested = requested_method(model._index)
        for name in ("labels", "references", "features", "embeddings", "projection"):
            setattr(model, name, getattr(fresh, name))
        model._index = build_index(model.embeddings, model.metric, requested)
        added = np.arange(len(new))
    else:
        if len(gone) or len(differs):
            remove(model, model.labels[np.sort(np.concatenate([gone, differs]))])
        _append(model, fresh, np.sort(np.concatenate([added, in_new[differs]])))
    model.failures = fresh.failures
    stats = {"added": int(len(added)), "removed": int(len(gone)), "changed": int(len(differs))}
    model.build_stats = {**fresh.build_stats, **stats}
    model.training_time = time.perf_counter() - started
    return stats
