"""What a model is, in the words of ``model.summary()`` and ``lookalike info``: one description, read from a manifest.

A model in memory describes itself from the manifest it would save; a saved
model is described from the manifest on disk, once every file it lists passed
its checks, without loading the embeddings, the tables or the index (so
``lookalike info`` imports neither pandas, pyarrow nor faiss, and answers at
once however large the model).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from lookalike.embed.registry import Descriptor, descriptor_name
from lookalike.index.base import build_info_of
from lookalike.references.projection import Projection
from lookalike.store import storage
from lookalike.store.manifest import Manifest

__all__ = ["describe", "summary_text", "summary_values"]


def summary_values(manifest: Manifest, failures: int) -> dict[str, Any]:
    """The summary of the model a manifest records, with its number of ``failures`` (inputs left out).

    ``method_reason`` is the index's, whose counts are the references' as saved;
    ``roots`` are the folders the references were indexed from.
    """
    record = manifest.embedding_model or {}
    descriptor = record.get("descriptor")
    if record and isinstance(descriptor, dict):
        try:
            descriptor = descriptor_name(Descriptor.resolve(descriptor)) or "custom"
        except ValueError:  # settings this lookalike does not know: shown as they are
            descriptor = "custom"
    return {
        "model": record.get("name") or "precomputed",
        "precision": record.get("precision"),
        "descriptor": descriptor,
        "metric": manifest.metric,
        "method": manifest.method,
        "method_reason": manifest.index.get("reason"),
        "recall": manifest.index.get("recall"),
        "num_references": manifest.count,
        "num_features": manifest.dim,
        "projection": (manifest.projection or {}).get("kind"),
        "num_failures": int(failures),
        "label": manifest.label_column,
        "feature": manifest.feature_column,
        "roots": list(manifest.roots),
        "training_time": round(manifest.training_time, 3),
    }


def summary_text(values: dict[str, Any], title: str = "ImageSimilarityModel") -> str:
    """``values`` as Turi's summary prints them: one ``key : value`` line each (a size on disk in MB or GB)."""
    shown = dict(values)
    if "size_on_disk" in shown:
        shown["size_on_disk"] = _size(shown["size_on_disk"])
    if isinstance(shown.get("roots"), list):
        shown["roots"] = ", ".join(shown["roots"]) or None
    width = max(map(len, shown))
    lines = [f"Class                          : {title}", ""]
    lines += [f"{key:<{width}} : {value}" for key, value in shown.items()]
    return "\n".join(lines)


def _size(count: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} bytes"


def describe(path: str | os.PathLike, whole: bool = False) -> dict[str, Any]:
    """The summary of the model saved at ``path``, its ``path``, ``format_version``, ``generation`` and
    ``size_on_disk`` (bytes of every file of the model's folder), and what was ``checked``.

    Every file the manifest lists is checked against its checksums (large
    ones by samples, every byte with ``whole``), every array's header read,
    and the index and projection records checked as a load checks them; the
    tables and the index are not read. A format-1 model has no checksums:
    its files are checked by loading it (``checked["files"]`` is 0).

    Raises
    ------
    FileNotFoundError
        Nothing at ``path``.
    lookalike.errors.ModelFormatError
        The model is damaged (the message names the file) or not a model.
    """

    def read(saved: storage.SavedModel) -> dict[str, Any]:
        checked = saved.verify()
        manifest = Manifest.read(saved.manifest, saved.manifest_path)
        for name in saved.listed_files():
            if name.endswith(".npy"):
                saved.array(name, mmap=True)  # its header: an empty or foreign file is damage
        if checked["files"]:
            saved.check_embeddings(saved.array("embeddings.npy", mmap=True))
            build_info_of(manifest.index, saved.manifest_path)
            if manifest.projection is not None:
                Projection.load(saved, manifest.projection)
        return {
            **summary_values(manifest, manifest.failure_count),
            "path": str(path),
            "format_version": checked["format_version"],
            "generation": str(saved.generation),
            "size_on_disk": _bytes_under(Path(path)),
            "checked": checked,
        }

    return storage.load(path, read, whole=whole)


def _bytes_under(folder: Path) -> int:
    """Bytes of the regular files under ``folder`` (links not followed): what the model takes on disk."""
    total = 0
    for root, _, names in os.walk(folder):
        for name in names:
            try:
                entry = os.lstat(os.path.join(root, name))
            except OSError:  # removed meanwhile (an older generation)
                continue
            total += entry.st_size if stat.S_ISREG(entry.st_mode) else 0
    return total
