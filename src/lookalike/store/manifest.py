"""What a saved model says about itself: every entry of ``manifest.json`` the model reads, and the side files.

:mod:`lookalike.store.storage` owns the format's own entries (``format``,
``format_version``, ``checksums``, ``byte_columns``) and the files; this
module owns the model's entries: their names, the types they must have, and
one upgrade of what older versions wrote (a missing descriptor was the plain
one, a missing precision fp32, a missing index exact search, a missing failure
count the last build's). Nothing else reads a manifest key.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Any

from lookalike.errors import ModelFormatError

__all__ = ["CANDIDATES_FILE", "DECISIONS_FILE", "MAP_FILE", "SIDE_FILES", "Manifest", "check_entries", "is_int"]

#: A person's dedup and audit decisions (lookalike.dedup.decisions).
DECISIONS_FILE = "decisions.json"
#: The 2-D map (lookalike.explore.layout).
MAP_FILE = "map.npz"
#: Dedup's copy candidates, found once per save of the model (lookalike.dedup.candidates).
CANDIDATES_FILE = "candidates.npz"
#: Files kept in the model folder beside the generations, each written atomically on its own (small, changed often).
SIDE_FILES = (DECISIONS_FILE, MAP_FILE, CANDIDATES_FILE)

#: The batch size of models saved before it was recorded.
_OLD_BATCH_SIZE = 16

#: Entries and the types they must have when present.
_ENTRIES: dict[str, tuple[tuple[type, ...], str]] = {
    "metric": ((str,), "a string"),
    "label_column": ((str, type(None)), "a column name or null"),
    "feature_column": ((str, type(None)), "a column name or null"),
    "training_time": ((int, float), "a number"),
    "build_stats": ((dict,), "an object"),
    "embedding_model": ((dict, type(None)), "an object or null"),
    "index": ((dict, type(None)), "an object or null"),
    "projection": ((dict, type(None)), "an object or null"),
    "roots": ((list, type(None)), "a list or null"),
}
#: Counts and the least each may be.
_COUNTS = {"count": 0, "dim": 1, "batch_size": 1, "failure_count": 0}


def is_int(value: Any) -> bool:
    """An integer, and not a bool (JSON's true is no count)."""
    return isinstance(value, int) and not isinstance(value, bool)


def check_entries(record: dict[str, Any], path: str | os.PathLike) -> None:
    """Refuse a manifest whose entries lack the types the loader relies on (``path`` names it in the error).

    Raises
    ------
    lookalike.errors.ModelFormatError
    """
    for key, least in _COUNTS.items():
        value = record.get(key, least)
        if not is_int(value) or value < least:
            raise ModelFormatError(f"{path} is damaged: {key} is {value!r}, not an integer of at least {least}")
    for key, (types, wanted) in _ENTRIES.items():
        value = record.get(key)
        if key in record and (not isinstance(value, types) or isinstance(value, bool)):
            raise ModelFormatError(f"{path} is damaged: {key} is {value!r}, not {wanted}")
    spec = record.get("embedding_model")
    if spec is not None and not isinstance(spec.get("name"), str):
        raise ModelFormatError(f"{path} is damaged: embedding_model has no name")


@dataclass(frozen=True)
class Manifest:
    """A saved model's own entries, as this version writes them.

    ``embedding_model`` is the network's record (None for precomputed
    embeddings), ``index`` the index's (``method`` and how it was built),
    ``projection`` the fitted projection's; ``roots`` the folders indexed.
    """

    metric: str | None
    count: int
    dim: int
    label_column: str | None = None
    feature_column: str | None = None
    batch_size: int = _OLD_BATCH_SIZE
    training_time: float = 0.0
    build_stats: dict[str, Any] = field(default_factory=dict)
    embedding_model: dict[str, Any] | None = None
    index: dict[str, Any] = field(default_factory=lambda: {"method": "brute_force"})
    roots: tuple[str, ...] = ()
    failure_count: int = 0
    projection: dict[str, Any] | None = None

    @property
    def method(self) -> str:
        return self.index["method"]

    def record(self) -> dict[str, Any]:
        """The entries as ``manifest.json`` holds them (``projection`` only when there is one)."""
        record = {
            "metric": self.metric,
            "count": self.count,
            "dim": self.dim,
            "label_column": self.label_column,
            "feature_column": self.feature_column,
            "batch_size": self.batch_size,
            "training_time": self.training_time,
            "build_stats": self.build_stats,
            "embedding_model": self.embedding_model,
            "index": self.index,
            "roots": list(self.roots),
            "failure_count": self.failure_count,
        }
        if self.projection is not None:
            record["projection"] = self.projection
        return record

    @classmethod
    def read(cls, record: dict[str, Any], path: str | os.PathLike) -> Manifest:
        """The entries of a manifest (checked, see :func:`check_entries`) as this version writes them.

        Raises
        ------
        lookalike.errors.ModelFormatError
            An entry of the wrong type. (A missing metric is left to the loader, which names it after checking
            the files: a model missing its files is told so first.)
        """
        check_entries(record, path)
        spec = record.get("embedding_model")
        if spec is not None:  # written before descriptors and precisions: the plain fp32 embeddings
            spec = {
                **spec,
                "descriptor": spec.get("descriptor") or "plain",
                "precision": spec.get("precision") or "fp32",
            }
        build_stats = record.get("build_stats") or {}
        failed = build_stats.get("failed", 0)
        manifest = cls(
            metric=record.get("metric"),
            count=record.get("count", 0),
            dim=record.get("dim", 1),
            label_column=record.get("label_column"),
            feature_column=record.get("feature_column"),
            batch_size=record.get("batch_size", _OLD_BATCH_SIZE),
            training_time=float(record.get("training_time", 0.0)),
            build_stats=build_stats,
            embedding_model=spec,
            index={**(record.get("index") or {})},
            # Older versions recorded relative roots, which name no folder once the working folder changes.
            roots=tuple(r for r in record.get("roots") or () if isinstance(r, str) and os.path.isabs(r)),
            # Counted at save since this version; before, the last build's count.
            failure_count=record.get("failure_count", failed if is_int(failed) and failed >= 0 else 0),
            projection=record.get("projection"),
        )
        if not manifest.index.get("method"):
            manifest = replace(manifest, index={**manifest.index, "method": "brute_force"})
        return manifest
