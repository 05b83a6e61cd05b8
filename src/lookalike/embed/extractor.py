"""Turn images into embeddings: one worker per core, each decoding a batch and then inferring it.

Pillow releases the GIL while it decodes and resizes, and ONNX Runtime while
it runs, so plain threads keep every core busy. Each worker runs the network on
one intra-op thread: a network split over all cores waits, op by op, for
whichever core is busy decoding, and measured slower (benchmarks/extract.py:
63 vs 67 img/s on web photos, 22 vs 24 on 12 MP ones, 2 cores). Finished
batches pass through a bounded queue to the calling thread, which alone
touches the cache and the progress bar, so memory stays flat however many
images there are.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from lookalike.config import cpu_count, execution_providers
from lookalike.embed.cache import EmbeddingCache, FileKey
from lookalike.embed.frontend import PIXELS, embedding_graph_file
from lookalike.embed.registry import ModelSpec
from lookalike.errors import Failure, ImageError, InvalidArgument
from lookalike.ingest.decode import ImageInfo, decode_image, source_name
from lookalike.ingest.pixel_facts import PixelFacts, pixel_facts
from lookalike.store import files


@dataclass
class Extraction:
    """Result of :meth:`Embedder.extract`."""

    embeddings: np.ndarray  # (len(ok), dim) float32, rows in input order
    ok: np.ndarray  # positions (into the input) of the rows of ``embeddings``
    failures: list[Failure] = field(default_factory=list)  # positions into the input, ascending
    info: list[ImageInfo] = field(default_factory=list)  # header of each embedded image, aligned with ``ok``
    facts: list[PixelFacts] = field(default_factory=list)  # what each embedded image's pixels say, aligned with ``ok``
    cached: int = 0  # how many embeddings came from the cache


#: Images per inference call on CPU. Measured end to end (2,000 web photos, 2 cores, int8 EfficientNet-Lite0):
#: batch 8, 16 and 32 run at the same speed within noise (208-229 img/s), but ORT's activation arena grows
#: with the batch: peak RSS 280, 331 and 426-473 MB (SqueezeNet: 387 MB at 16 against 891 MB at 64).
BATCH_SIZE = 16
#: A GPU is only busy with big batches.
GPU_BATCH_SIZE = 256


class Embedder:
    """Runs one :class:`ModelSpec`: preprocessing, an ONNX Runtime session, batched extraction."""

    def __init__(self, spec: ModelSpec, threads: int | None = None):
        self.spec = spec
        self.threads = threads or cpu_count()
        self._network: str | None = None
        self._sessions: dict[int, Any] = {}

    @property
    def session(self):
        """The ONNX Runtime session on all ``threads`` (uint8 ``pixels`` input, see :mod:`.frontend`)."""
        return self._session_on(self.threads)

    def _session_on(self, threads: int):
        """A session whose ops run on ``threads`` intra-op threads, created on first use (one network, loaded once)."""
        if threads not in self._sessions:
            import onnxruntime as ort

            if self._network is None:
                self._network = str(embedding_graph_file(self.spec))
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            self._sessions[threads] = ort.InferenceSession(self._network, options, providers=execution_providers())
        return self._sessions[threads]

    def preprocess(self, image: Image.Image) -> np.ndarray:
        """An RGB PIL image -> the network's (H, W, 3) uint8 input, resized as the spec says."""
        prep = self.spec.preprocessing
        width, height = self.spec.pixel_size
        box = None
        if prep.resize == "center_crop":
            # Scale the short side to size/crop_fraction, keep the centre: one resize of the source box.
            scale = (min(width, height) / prep.crop_fraction) / min(image.size)
            box_w, box_h = width / scale, height / scale
            # Clamped: with crop_fraction 1 rounding can put the box a hair outside the image, which Pillow refuses.
            left, top = max(0.0, (image.size[0] - box_w) / 2), max(0.0, (image.size[1] - box_h) / 2)
            box = (left, top, min(image.size[0], left + box_w), min(image.size[1], top + box_h))
        if image.size != (width, height) or box is not None:
            image = image.resize((width, height), Image.BILINEAR, box=box)
        return np.asarray(image)

    def load(self, source: Any) -> np.ndarray:
        """Decode and preprocess one image; every failure is an :class:`ImageError`."""
        return self._load(source, with_facts=False)[0]

    def _load(self, source: Any, with_facts: bool = True) -> tuple[np.ndarray, ImageInfo, PixelFacts | None]:
        """The network's input, the header and the pixel facts of one image (decoded once for all three)."""
        try:
            # draft() only down to twice the input: the antialiased resize then does the rest. Drafting
            # right down to the input size cost 0.02 N-S on neardup; camera photos keep most of the gain.
            width, height = self.spec.pixel_size
            image, info = decode_image(source, min_size=(2 * width, 2 * height))
            return self.preprocess(image), info, pixel_facts(image) if with_facts else None
        except ImageError:
            raise
        except Exception as exc:  # one odd file must never stop a batch
            reason = f"unexpected error while decoding ({type(exc).__name__}: {exc})"
            raise ImageError(source_name(source), reason, "unexpected error") from None

    def run(self, batch: np.ndarray, output: str | None = None, session: Any = None) -> np.ndarray:
        """Run a preprocessed (n, H, W, 3) uint8 batch -> (n, dim) float32 (or another named output)."""
        out = (session or self.session).run([output or self.spec.output_name], {PIXELS: batch})[0]
        return np.asarray(out, dtype=np.float32).reshape(len(batch), -1)

    def extract(
        self,
        sources: Sequence[Any],
        batch_size: int = BATCH_SIZE,
        verbose: bool = True,
        ignore_failure: bool = True,
        cache: EmbeddingCache | None = None,
        facts: bool = True,
    ) -> Extraction:
        """Embed every image in ``sources`` (paths, bytes, PIL images or arrays).

        Images that cannot be decoded are skipped and listed in
        ``Extraction.failures`` (or raise :class:`ImageError` when
        ``ignore_failure`` is False). With a ``cache``, files whose path, size
        and mtime are unchanged are not decoded again, and each batch is
        stored as soon as it is embedded. Without ``facts`` (a query, images made to calibrate), the pixel facts
        are not read (``Extraction.facts`` holds None): they are a seventh of an image's time besides the network.
        """
        if batch_size < 1:
            raise InvalidArgument(f"batch_size must be a positive integer, got {batch_size!r}")
        with_facts = facts or cache is not None  # what is cached holds its facts
        total = len(sources)
        shape = (total, self.spec.dim)
        # Embeddings of a large collection are written to a scratch file as they are made, not held in memory.
        large = total * self.spec.dim * 4 >= files.SCRATCH_BYTES
        out = files.scratch_array(shape) if large else np.empty(shape, dtype=np.float32)
        ok = np.zeros(total, dtype=bool)
        infos: list[ImageInfo | None] = [None] * total
        facts: list[PixelFacts | None] = [None] * total
        failures: list[Failure] = []
        keys: list[FileKey | None] = [None] * total
        if cache is not None:
            keys = [FileKey.of(s) if isinstance(s, (str, os.PathLike)) else None for s in sources]
            for position, hit in cache.get(keys).items():
                out[position], ok[position] = hit.vector, True
                infos[position] = ImageInfo(hit.width, hit.height, hit.format, "")
                facts[position] = hit.facts
        cached = int(ok.sum())
        todo = np.flatnonzero(~ok)
        # Cached embeddings whose pixel facts are of an older version keep their embedding: only the facts are read
        # off their pixels again (a decode, a few small resizes: a fifth of the network's time).
        stale = [p for p in np.flatnonzero(ok).tolist() if facts[p] is None]
        batches = [todo[i : i + batch_size].tolist() for i in range(0, len(todo), batch_size)]
        # One batch (a query) runs on all cores at once; more are shared out, one worker per core.
        workers = min(self.threads, len(batches) + len(stale))
        # The session (and importing onnx and ONNX Runtime) is the dearest part of a warm re-index: skip it.
        session = self._session_on(1 if workers > 1 else self.threads) if batches else None
        if session is not None and "CUDAExecutionProvider" in session.get_providers():
            batches = [todo[i : i + GPU_BATCH_SIZE].tolist() for i in range(0, len(todo), GPU_BATCH_SIZE)]
        jobs = [(batch, True) for batch in batches]
        jobs += [(stale[i : i + batch_size], False) for i in range(0, len(stale), batch_size)]
        progress = tqdm(
            total=total,
            initial=cached - len(stale),
            unit="img",
            desc="Embedding",
            disable=None if verbose else True,
            leave=False,
        )
        pending = iter(jobs)
        taking = threading.Lock()
        stop = threading.Event()
        done: queue.Queue = queue.Queue(maxsize=2 * max(workers, 1))  # bounded: workers wait for the caller

        def work() -> None:
            try:
                while not stop.is_set():
                    with taking:
                        positions, embed = next(pending, (None, False))
                    if positions is None:
                        break
                    arrays, kept, failed = [], [], []
                    for position in positions:
                        try:
                            array, infos[position], facts[position] = self._load(sources[position], with_facts)
                        except ImageError as exc:
                            failed.append((position, exc))
                            continue
                        arrays.append(array)
                        kept.append(position)
                    vectors = self.run(np.stack(arrays), session=session) if arrays and embed else None
                    done.put((kept, vectors, failed))
            except BaseException as exc:  # handed to the caller, which raises it
                done.put(exc)
            finally:
                done.put(None)

        with ThreadPoolExecutor(max(workers, 1)) as pool:
            for _ in range(workers):
                pool.submit(work)
            finished = 0
            try:
                while finished < workers:
                    item = done.get()
                    if item is None:
                        finished += 1
                        continue
                    if isinstance(item, BaseException):
                        raise item
                    kept, vectors, failed = item
                    for position, exc in failed:
                        if not ignore_failure:
                            raise exc
                        failures.append(Failure.of(position, exc))
                        ok[position] = False  # a cached one whose facts were to be read again too: unreadable now
                    if kept:
                        if vectors is not None:  # else its embedding came from the cache, and its facts are new
                            out[kept], ok[kept] = vectors, True
                        if cache is not None:
                            cache.put((keys[p], out[p], infos[p], facts[p]) for p in kept if keys[p] is not None)
                    progress.update(len(kept) + len(failed))
            finally:
                stop.set()
                while finished < workers:  # let every worker finish its batch and leave
                    finished += done.get() is None
                progress.close()
        kept = np.flatnonzero(ok)
        embeddings = out if len(kept) == total else _compacted(out, kept)
        failures.sort(key=lambda f: f.position)
        return Extraction(embeddings, kept, failures, [infos[p] for p in kept], [facts[p] for p in kept], cached)


def _compacted(out: np.ndarray, kept: np.ndarray, block: int = 65536) -> np.ndarray:
    """The rows ``kept`` (ascending) of ``out``, moved to its top in place: no second copy of a million rows."""
    for start in range(0, len(kept), block):  # kept[i] >= i: each block only reads rows not yet overwritten
        rows = kept[start : start + block]
        out[start : start + len(rows)] = out[rows]
    return out[: len(kept)]
