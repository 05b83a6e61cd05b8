"""The inputs of a distributed job: object-store prefixes listed into one URI per image, objects read.

Folders, globs and tables are expanded by :mod:`lookalike.ingest` as for the
local engine; this module only adds what a cluster needs: ``s3://``,
``gs://``, ``hdfs://``, ``abfs://`` and ``file://`` URIs, listed and read
through pyarrow's filesystems (the layer Ray Data itself reads with).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lookalike.ingest.download import url_scheme
from lookalike.ingest.sources import IMAGE_EXTENSIONS

#: URI schemes read through pyarrow.fs (http(s) URLs are downloaded by :mod:`lookalike.ingest.download`).
OBJECT_SCHEMES = frozenset({"s3", "gs", "gcs", "hdfs", "viewfs", "abfs", "abfss", "file"})


def is_object_uri(value: Any) -> bool:
    """True for a string whose scheme is an object store or filesystem pyarrow reads (``s3://``, ``file://``...)."""
    return isinstance(value, str) and url_scheme(value) in OBJECT_SCHEMES


def filesystem(location: str | os.PathLike):
    """(pyarrow filesystem, path inside it) for a local path or an object-store URI."""
    from pyarrow import fs

    if is_object_uri(str(location)):
        return fs.FileSystem.from_uri(str(location))
    return fs.LocalFileSystem(), str(Path(location).resolve())


def list_objects(uri: str) -> list[str]:
    """One URI per image under an object-store prefix (sorted), or ``[uri]`` for a single object.

    Examples
    --------
    >>> list_objects("s3://bucket/photos/")  # doctest: +SKIP
    ['s3://bucket/photos/a.jpg', 's3://bucket/photos/b/c.png']
    """
    from pyarrow import fs

    store, root = filesystem(uri)
    info = store.get_file_info(root)
    if info.type == fs.FileType.File:
        return [uri]
    if info.type == fs.FileType.NotFound:
        raise FileNotFoundError(f"no such object or prefix: {uri}")
    base = uri[: uri.index(root.rstrip("/"))]  # scheme (and host): entries are paths inside the filesystem
    found = sorted(
        entry.path
        for entry in store.get_file_info(fs.FileSelector(root, recursive=True))
        if entry.type == fs.FileType.File and Path(entry.path).suffix.lower() in IMAGE_EXTENSIONS
    )
    if not found:
        raise FileNotFoundError(f"no images under {uri} (looked for {', '.join(sorted(IMAGE_EXTENSIONS)[:6])}...)")
    return [base + path for path in found]


def list_inputs(dataset: Any) -> Any:
    """``dataset`` with each object-store prefix in it replaced by the URIs of its images.

    Anything else (folders, tables, DataFrames) is returned unchanged: the
    ingest stage expands it as for the local engine.
    """
    entries = [dataset] if isinstance(dataset, (str, os.PathLike)) else dataset
    if not isinstance(entries, (list, tuple)) or not any(is_object_uri(e) for e in entries):
        return dataset
    expanded: list[Any] = []
    for entry in entries:
        expanded.extend(list_objects(entry) if is_object_uri(entry) else [entry])
    return expanded


def read_object(uri: str) -> bytes:
    """The bytes of one object (``s3://bucket/key.jpg``); OSError when it cannot be read."""
    store, path = filesystem(uri)
    with store.open_input_file(path) as stream:
        return stream.read()


def job_key(fingerprint: str, sources: Sequence[str]) -> str:
    """Names one job: the embedding model and the exact input list (shard ids are positions in it)."""
    digest = hashlib.sha256(fingerprint.encode())
    for source in sources:
        digest.update(b"\0" + str(source).encode())
    return digest.hexdigest()[:20]
