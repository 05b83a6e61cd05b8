"""Export a SqueezeNet model as a Core ML program: camera image in, embedding and top-k references out.

coremltools 9 no longer converts ONNX, so the Core ML program is built
directly from the network's weights with coremltools' MIL builder, walking
the same layer list as the ONNX build (:func:`lookalike.embed.squeezenet.trunk`,
:func:`~lookalike.embed.squeezenet.conv_params`). The caffe preprocessing
(BGR, mean subtraction) is the Core ML ``ImageType``'s own bias, so an iOS
app hands it a ``CVPixelBuffer`` (e.g. from Vision, scaled to 224 x 224)
and nothing else. The descriptor is built as the ONNX graph builds it
(:mod:`lookalike.embed.frontend`): average or GeM pooling of fire9, then unit
length when it asks for it. The reference embeddings are constants in the program,
followed by the model's distance and a ``topk``, as in
:mod:`lookalike.export`. Core ML models only run on Apple platforms; this
module only needs coremltools to *write* one (it works on Linux).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

import lookalike
from lookalike.embed import squeezenet
from lookalike.embed.frontend import GEM_EPS

IMAGE = "image"
EMBEDDING = "embedding"
DISTANCES = "distances"
INDICES = "indices"
SUPPORTED = "squeezenet_v1.1"


def _import_coremltools():
    try:
        import coremltools as ct
    except ImportError as error:
        raise ImportError("Core ML export needs coremltools: pip install 'lookalike[coreml]'") from error
    return ct


def _image_bias(spec) -> tuple[float, list[float]]:
    """(scale, per-channel bias in network channel order) with ``pixel * scale + bias`` = the network input."""
    prep = spec.preprocessing
    gains = {prep.scale / s for s in prep.std}
    if len(gains) != 1:  # an ImageType has one scale for all channels
        raise ValueError(f"Core ML export needs the same std on every channel, got {prep.std}")
    return gains.pop(), [-m / s for m, s in zip(prep.mean, prep.std, strict=True)]


def _trunk(mb, image, weights: dict[str, list[np.ndarray]]):
    """MIL ops of SqueezeNet up to fire9's feature map (batch, 512, 13, 13), the ONNX graph's ``feature_map``."""

    def conv(x, layer: str, stride: int = 1):
        w, b = squeezenet.conv_params(weights, layer)
        # TensorFlow 'same' (ONNX SAME_UPPER): an odd padding pixel goes at the end. Written out as explicit
        # pads so that the saved program says exactly what it computes.
        pads = []
        for size, kernel in zip(x.shape[2:], w.shape[2:], strict=True):
            total = max(0, (-(-size // stride) - 1) * stride + kernel - size)
            pads += [total // 2, total - total // 2]
        x = mb.conv(x=x, weight=w, bias=b, strides=[stride, stride], pad_type="custom", pad=pads, name=f"{layer}/conv")
        return mb.relu(x=x, name=f"{layer}/relu")

    x = image
    for kind, name, stride in squeezenet.trunk():
        if kind == "conv":
            x = conv(x, name, stride)
        elif kind == "maxpool":
            x = mb.max_pool(x=x, kernel_sizes=[3, 3], strides=[stride, stride], pad_type="valid", name=name)
        else:
            squeeze = conv(x, f"{name}/squeeze1x1")
            e1, e3 = conv(squeeze, f"{name}/expand1x1"), conv(squeeze, f"{name}/expand3x3")
            x = mb.concat(values=[e1, e3], axis=1, name=f"{name}/concat")
    return x


def _descriptor(mb, feature_map, descriptor):
    """MIL ops pooling the feature map into the (batch, 512) ``embedding``, as lookalike.embed.frontend does."""
    if descriptor.pooling == "avg":
        pooled = mb.reduce_mean(x=feature_map, axes=[2, 3], keep_dims=False, name="descriptor/pooled")
    else:  # GeM: (mean(max(x, eps) ** p)) ** (1 / p) over the spatial axes
        clipped = mb.maximum(x=feature_map, y=np.float32(GEM_EPS), name="descriptor/clipped")
        powered = mb.pow(x=clipped, y=np.float32(descriptor.gem_p), name="descriptor/powered")
        mean = mb.reduce_mean(x=powered, axes=[2, 3], keep_dims=False, name="descriptor/mean")
        pooled = mb.pow(x=mean, y=np.float32(1.0 / descriptor.gem_p), name="descriptor/pooled")
    if descriptor.normalize:  # ONNX LpNormalization(p=2): x / |x|; the floor only guards an all-zero vector
        norm = mb.sqrt(x=mb.reduce_sum(x=mb.mul(x=pooled, y=pooled), axes=[1], keep_dims=True))
        pooled = mb.real_div(x=pooled, y=mb.maximum(x=norm, y=np.float32(1e-12)), name="descriptor/normalized")
    return mb.identity(x=pooled, name=EMBEDDING)


def _check_exportable(model, spec) -> None:
    """Refuse what the program cannot compute as the references were computed, saying what to do instead."""
    d = spec.descriptor
    if spec.name == SUPPORTED and not (d.flip or d.scales != (1.0,) or d.whiten) and model.projection is None:
        return
    projection = model.projection.kind if model.projection is not None else None
    raise ValueError(
        f"Core ML export is built for {SUPPORTED!r} with average or GeM pooling (the 'plain' and 'gem' "
        "descriptors, optionally unit length) and no mirror image, scales, whitening or learned projection; this "
        f"model uses {spec.name!r} with descriptor {d.to_dict()} and projection {projection}. Rebuild it with "
        "descriptor='gem' (the default) or 'plain' to export it, or use model.export_onnx "
        "(which also exports the mirror image and scales)"
    )


def _search(mb, embedding, metric: str, references: np.ndarray, k: int):
    """(distances, indices) of the k nearest references, in the model's metric (see lookalike.export)."""
    refs = references.astype(np.float64)
    query = embedding
    if metric == "cosine":
        norms = np.linalg.norm(refs, axis=1, keepdims=True)
        refs = np.divide(refs, norms, out=np.zeros_like(refs), where=norms > 0)
        norm = mb.sqrt(x=mb.reduce_sum(x=mb.mul(x=query, y=query), axes=[1], keep_dims=True))
        query = mb.real_div(x=query, y=mb.maximum(x=norm, y=np.float32(1e-12)))
    dots = mb.matmul(x=query, y=np.ascontiguousarray(refs.T, dtype=np.float32), name="search/dots")
    if metric == "euclidean":
        # |q - r|^2 = |q|^2 - 2 q.r + |r|^2, clipped at 0 against rounding, then sqrt.
        squares = mb.reduce_sum(x=mb.mul(x=query, y=query), axes=[1], keep_dims=True)
        d2 = mb.add(
            x=mb.add(x=mb.mul(x=dots, y=np.float32(-2.0)), y=squares), y=(refs**2).sum(1)[None].astype(np.float32)
        )
        distance = mb.sqrt(x=mb.maximum(x=d2, y=np.float32(0.0)))
    elif metric == "cosine":
        distance = mb.sub(x=np.float32(1.0), y=dots)
    else:  # dot: -q.r
        distance = mb.mul(x=dots, y=np.float32(-1.0))
    return mb.topk(x=distance, k=k, axis=-1, ascending=True, name="search/topk")


def _save_package(mlmodel, path: Path) -> None:
    """Save the .mlpackage folder beside ``path`` and move it into place, so a failed save leaves no half package."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
    try:
        mlmodel.save(str(staging / path.name))
        if path.exists():
            old = staging / "previous"
            os.replace(path, old)  # a folder cannot be replaced in one rename: swap, then drop the old one
        os.replace(staging / path.name, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def export_coreml(model, path: str | os.PathLike, k: int = 5) -> Path:
    """Write ``model`` as a Core ML program (``.mlpackage``) for iOS/macOS apps.

    Parameters
    ----------
    model : lookalike.ImageSimilarityModel
        A model built from images with ``squeezenet_v1.1`` (the only network
        whose weights lookalike holds) and the ``"gem"`` (default) or
        ``"plain"`` descriptor: average or GeM pooling, unit length or not.
        Mirror image, several scales, whitening and learned projections are
        refused (:meth:`export_onnx` exports the first two).
    path : path
        The ``.mlpackage`` folder to write (replaced if it exists).
    k : int, default 5
        Neighbours returned per image (at most the number of references).

    Returns
    -------
    pathlib.Path
        ``path``. Input ``image``: a 224 x 224 colour image (Core ML
        ``ImageType``, BGR layout; the caffe mean subtraction is built in), so
        an app passes a camera frame resized to 224 x 224 (Vision:
        ``scaleFill``, the same squash as lookalike). Outputs ``embedding``
        (float32, 1 x 512), ``distances`` (float32, 1 x k, the model's metric,
        nearest first) and ``indices`` (int32, 1 x k, positions into the
        labels kept as JSON in the ``lookalike.labels`` metadata).
        Computed in float32; Core ML predictions run on Apple platforms only.

    Examples
    --------
    >>> model.export_coreml("Search.mlpackage", k=5)  # doctest: +SKIP
    >>> # Swift: try Search(configuration: .init()).prediction(image: pixelBuffer).indices
    """
    ct = _import_coremltools()
    from coremltools.converters.mil import Builder as mb

    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    path = Path(path)
    if path.suffix != ".mlpackage":
        raise ValueError(f"Core ML programs are saved as a .mlpackage folder, got {str(path)!r}")
    spec = model._get_embedder().spec
    _check_exportable(model, spec)
    k = min(k, len(model.labels))
    width, height = spec.preprocessing.size
    weights = squeezenet.load_weights()
    references = np.asarray(model.embeddings)

    @mb.program(input_specs=[mb.TensorSpec(shape=(1, 3, height, width))], opset_version=ct.target.iOS15)
    def program(image):
        embedding = _descriptor(mb, _trunk(mb, image, weights), spec.descriptor)
        distances, indices = _search(mb, embedding, model.metric, references, k)
        return embedding, mb.identity(x=distances, name=DISTANCES), mb.identity(x=indices, name=INDICES)

    scale, bias = _image_bias(spec)
    layout = ct.colorlayout.BGR if spec.preprocessing.channel_order == "BGR" else ct.colorlayout.RGB
    mlmodel = ct.convert(
        program,
        inputs=[ct.ImageType(name=IMAGE, shape=(1, 3, height, width), scale=scale, bias=bias, color_layout=layout)],
        outputs=[ct.TensorType(name=EMBEDDING), ct.TensorType(name=DISTANCES), ct.TensorType(name=INDICES)],
        convert_to="mlprogram",
        minimum_deployment_target=ct.target.iOS15,
        compute_precision=ct.precision.FLOAT32,  # float16 would move distances by ~1e-3 and can swap near ties
    )
    mlmodel.short_description = "lookalike image similarity search: image -> embedding and top-k references"
    mlmodel.version = lookalike.__version__
    mlmodel.input_description[IMAGE] = f"{width}x{height} colour image, squashed (not cropped) to this size"
    mlmodel.output_description[EMBEDDING] = f"{spec.dim}-d {spec.name} embedding"
    mlmodel.output_description[DISTANCES] = f"{model.metric} distance to the {k} nearest references, nearest first"
    mlmodel.output_description[INDICES] = "positions of those references in the lookalike.labels metadata (JSON)"
    mlmodel.user_defined_metadata.update(
        {
            "lookalike.version": lookalike.__version__,
            "lookalike.model": spec.name,
            "lookalike.metric": model.metric,
            "lookalike.k": str(k),
            "lookalike.labels": json.dumps(model.labels.tolist(), default=str),
            "lookalike.preprocessing": json.dumps(spec.preprocessing.to_dict()),
            "lookalike.descriptor": json.dumps(spec.descriptor.to_dict()),
        }
    )
    _save_package(mlmodel, path)
    return path
