"""Export a model as a Core ML program: camera image in, embedding and top-k references out.

coremltools 9 no longer converts ONNX, so this module translates the
model's own ONNX embedding graph (:func:`lookalike.embed.frontend.embedding_graph`,
the graph the extractor runs) into MIL ops, one ONNX node at a time: one path
for every network, in either precision, with the descriptor as that graph
builds it. The graph's uint8 pixel front end is left out because the Core ML
``ImageType`` does the same scale, bias and channel order, so an iOS app
hands it a ``CVPixelBuffer`` and nothing else.

An int8 (QDQ) network becomes its definition in float32: each
``DequantizeLinear`` of a weight is folded into the float tensor it stands
for, and each quantized activation is rounded to its 8-bit grid
(``(clip(round(x / scale) + zero_point, 0, 255) - zero_point) * scale`` for uint8).
ONNX Runtime computes the same graph with integer kernels, which round
differently at a few requantization boundaries, so the embeddings are close
to the references' but not bit for bit (tests/test_coreml.py measures how close).

The reference embeddings are constants in the program, followed by the
model's distance and a ``topk``, as in :mod:`lookalike.export.onnx`. Core ML
models only run on Apple platforms; this module only needs coremltools to
*write* one (it works on Linux).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from lookalike.embed.frontend import embedding_graph
from lookalike.errors import InvalidArgument, MissingExtra
from lookalike.export.onnx import export_metadata
from lookalike.references.core import References, as_references
from lookalike.store.files import replace_dir, staging_dir
from lookalike.validation import check_positive_int
from lookalike.version import __version__

IMAGE = "image"
EMBEDDING = "embedding"
DISTANCES = "distances"
INDICES = "indices"
#: LpNormalization and cosine distance divide by at least this: it only guards an all-zero vector.
NORM_FLOOR = 1e-12


def _import_coremltools():
    try:
        import coremltools as ct
    except ImportError as error:
        raise MissingExtra("Core ML export needs coremltools: pip install 'lookalike[coreml]'") from error
    return ct


def _image_bias(spec) -> tuple[float, list[float]]:
    """(scale, per-channel bias in network channel order) with ``pixel * scale + bias`` = the network input."""
    prep = spec.preprocessing
    gains = {prep.scale / s for s in prep.std}
    if len(gains) != 1:  # an ImageType has one scale for all channels
        raise InvalidArgument(f"Core ML export needs the same std on every channel, got {prep.std}")
    return gains.pop(), [-m / s for m, s in zip(prep.mean, prep.std, strict=True)]


def _image_description(spec) -> str:
    """What an app feeds the ``image`` input: the resize the references were embedded with."""
    prep = spec.preprocessing
    width, height = prep.size
    if prep.resize == "squash":
        return f"{width}x{height} colour image: the whole photo squashed (not cropped) to this size"
    return (
        f"{width}x{height} colour image: the centre crop of the photo ({prep.crop_fraction:.1%} of its short "
        f"side), scaled to this size"
    )


def _network_graph(spec):
    """The embedder's graph (onnx.GraphProto) from the network input ``spec.input_name`` to ``spec.output_name``.

    The pixel front end before the input and the nodes the output does not need (a classifier head) are left out.
    """
    from onnx.shape_inference import infer_shapes
    from onnx.utils import Extractor

    # The network input is an intermediate tensor of the embedding graph: the Extractor needs its inferred type.
    graph_model = infer_shapes(embedding_graph(spec))
    return Extractor(graph_model).extract_model([spec.input_name], [spec.output_name]).graph


def _unit_length(mb, x, axis: int, name: str):
    """``x / max(|x|, NORM_FLOOR)`` along ``axis``: ONNX LpNormalization(p=2), safe for a zero vector."""
    norm = mb.sqrt(x=mb.reduce_sum(x=mb.mul(x=x, y=x), axes=[axis], keep_dims=True))
    return mb.real_div(x=x, y=mb.maximum(x=norm, y=np.float32(NORM_FLOOR)), name=name)


def _along(param: np.ndarray, axis: int, rank: int) -> np.ndarray:
    """A scalar or per-channel (1-D) quantization parameter shaped to broadcast over axis ``axis`` of a rank-``rank`` tensor."""
    if param.ndim == 0:
        return param
    shape = [1] * rank
    shape[axis % rank] = -1
    return param.reshape(shape)


def _quantization(args: list, attrs: dict, rank: int) -> tuple[np.ndarray, np.ndarray, np.iinfo]:
    """(scale, zero point, integer range) of a QuantizeLinear/DequantizeLinear, shaped for a rank-``rank`` input."""
    scale = _constant(args[1], "quantization scale")
    # ONNX's default zero point is a uint8 0.
    zero_point = _constant(args[2], "zero point") if len(args) > 2 and args[2] is not None else np.zeros((), np.uint8)
    axis = attrs.get("axis", 1)
    return (
        _along(scale.astype(np.float32), axis, rank),
        _along(zero_point.astype(np.float32), axis, rank),
        np.iinfo(zero_point.dtype),
    )


def _pads(sizes, kernels, strides, dilations, attrs: dict) -> list[int]:
    """MIL's explicit pads (before, after for each spatial axis) for an ONNX Conv or MaxPool."""
    auto_pad = attrs.get("auto_pad", b"NOTSET").decode()
    if auto_pad.startswith("SAME"):
        # TensorFlow 'same': the output is ceil(size / stride); SAME_UPPER puts an odd padding pixel at the end.
        pads = []
        for size, kernel, stride, dilation in zip(sizes, kernels, strides, dilations, strict=True):
            total = max(0, (-(-size // stride) - 1) * stride + (kernel - 1) * dilation + 1 - size)
            pair = [total // 2, total - total // 2]
            pads += pair if auto_pad == "SAME_UPPER" else pair[::-1]
        return pads
    onnx_pads = [0] * (2 * len(sizes)) if auto_pad == "VALID" else list(attrs.get("pads", [0] * (2 * len(sizes))))
    return [int(p) for pair in zip(onnx_pads[: len(sizes)], onnx_pads[len(sizes) :], strict=True) for p in pair]


def _constant(value: Any, what: str) -> np.ndarray:
    if not isinstance(value, np.ndarray):
        raise InvalidArgument(f"Core ML export needs the {what} to be a constant of the ONNX graph")
    return value


def _conv(mb, args: list, attrs: dict, name: str):
    x, weight = args[0], _constant(args[1], "Conv weights").astype(np.float32)
    bias = args[2].astype(np.float32) if len(args) > 2 and args[2] is not None else None
    spatial = weight.ndim - 2
    strides = list(attrs.get("strides", [1] * spatial))
    dilations = list(attrs.get("dilations", [1] * spatial))
    # Written out as explicit pads, so that the saved program says exactly what it computes.
    pads = _pads(x.shape[2:], weight.shape[2:], strides, dilations, attrs)
    return mb.conv(
        x=x,
        weight=weight,
        bias=bias,
        strides=strides,
        dilations=dilations,
        pad_type="custom",
        pad=pads,
        groups=int(attrs.get("group", 1)),
        name=name,
    )


def _max_pool(mb, args: list, attrs: dict, name: str):
    x, kernel = args[0], list(attrs["kernel_shape"])
    if any(d != 1 for d in attrs.get("dilations", [])):
        raise InvalidArgument("Core ML export cannot translate a dilated MaxPool")
    strides = list(attrs.get("strides", [1] * len(kernel)))
    pads = _pads(x.shape[2:], kernel, strides, [1] * len(kernel), attrs)
    ceil_mode = bool(attrs.get("ceil_mode", 0))
    return mb.max_pool(
        x=x, kernel_sizes=kernel, strides=strides, pad_type="custom", pad=pads, ceil_mode=ceil_mode, name=name
    )


def _clip(mb, args: list, attrs: dict, name: str):
    x = args[0]
    low, high = (args[i] if len(args) > i else None for i in (1, 2))
    if low is not None and high is not None:
        return mb.clip(x=x, alpha=np.float32(_constant(low, "Clip bounds")), beta=np.float32(high), name=name)
    if low is not None:  # the GeM descriptor's floor: a lower bound only
        return mb.maximum(x=x, y=np.float32(_constant(low, "Clip bounds")), name=name)
    if high is not None:
        return mb.minimum(x=x, y=np.float32(_constant(high, "Clip bounds")), name=name)
    return mb.identity(x=x, name=name)


def _flatten(mb, args: list, attrs: dict, name: str):
    x = args[0]
    axis = attrs.get("axis", 1) % x.rank
    return mb.reshape(x=x, shape=[int(np.prod(x.shape[:axis])), -1], name=name)


def _lp_normalization(mb, args: list, attrs: dict, name: str):
    if attrs.get("p", 2) != 2:
        raise InvalidArgument(f"Core ML export translates LpNormalization with p=2 only, got p={attrs['p']}")
    return _unit_length(mb, args[0], attrs.get("axis", -1), name=name)


def _quantize(mb, args: list, attrs: dict, name: str):
    """Round an activation to its integer grid, kept in float32 (ONNX rounds half to even, as MIL's round)."""
    x = args[0]
    scale, zero_point, limits = _quantization(args, attrs, x.rank)
    steps = mb.round(x=mb.real_div(x=x, y=scale))
    return mb.clip(
        x=mb.add(x=steps, y=zero_point), alpha=np.float32(limits.min), beta=np.float32(limits.max), name=name
    )


def _dequantize(mb, args: list, attrs: dict, name: str):
    x = args[0]
    if isinstance(x, np.ndarray):  # a quantized weight or bias: the float tensor it denotes is a constant
        scale, zero_point, _ = _quantization(args, attrs, x.ndim)
        return ((x.astype(np.float32) - zero_point) * scale).astype(np.float32)
    scale, zero_point, _ = _quantization(args, attrs, x.rank)
    return mb.mul(x=mb.sub(x=x, y=zero_point), y=scale, name=name)


def _binary(op: str) -> Callable:
    return lambda mb, args, attrs, name: getattr(mb, op)(x=args[0], y=args[1], name=name)


#: ONNX op -> (mb, inputs (MIL vars or numpy constants, None where absent), attributes, name) -> MIL var.
_OPS: dict[str, Callable] = {
    "Conv": _conv,
    "MaxPool": _max_pool,
    "Clip": _clip,
    "Flatten": _flatten,
    "LpNormalization": _lp_normalization,
    "QuantizeLinear": _quantize,
    "DequantizeLinear": _dequantize,
    "Add": _binary("add"),
    "Mul": _binary("mul"),
    "Pow": _binary("pow"),
    "Relu": lambda mb, args, attrs, name: mb.relu(x=args[0], name=name),
    "Identity": lambda mb, args, attrs, name: mb.identity(x=args[0], name=name),
    "Concat": lambda mb, args, attrs, name: mb.concat(values=args, axis=attrs["axis"], name=name),
    "GlobalAveragePool": lambda mb, args, attrs, name: mb.reduce_mean(
        x=args[0], axes=list(range(2, args[0].rank)), keep_dims=True, name=name
    ),
}


def _translate(mb, graph, image, output: str):
    """MIL ops computing tensor ``output`` of the ONNX ``graph`` (from :func:`_network_graph`) on ``image``.

    The op producing ``output`` is named :data:`EMBEDDING`; the others take their ONNX tensor's name.
    """
    from onnx import helper, numpy_helper

    # Tensor name -> MIL var, or numpy array for the graph's constants (weights, scales, folded weights).
    values: dict[str, Any] = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    values[graph.input[0].name] = image
    for node in graph.node:
        if node.op_type not in _OPS:
            raise InvalidArgument(
                f"Core ML export cannot translate the ONNX op {node.op_type!r} (node {node.name or node.output[0]!r}); "
                f"it translates {', '.join(sorted(_OPS))}. Use model.export_onnx for this network"
            )
        args = [values[name] if name else None for name in node.input]
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        name = EMBEDDING if node.output[0] == output else node.output[0]
        values[node.output[0]] = _OPS[node.op_type](mb, args, attrs, name)
    return values[output]


def _check_exportable(references: References, spec) -> None:
    """Refuse what the program cannot compute as the references were computed, saying what to do instead."""
    d = spec.descriptor
    if not (d.flip or d.scales != (1.0,) or d.whiten) and references.projection is None:
        return
    projection = references.projection.kind if references.projection is not None else None
    raise InvalidArgument(
        "Core ML export supports average or GeM pooling (the 'plain' and 'gem' descriptors, optionally unit "
        "length) with no mirror image, scales, whitening or learned projection; this model uses "
        f"{spec.name!r} with descriptor {d.to_dict()} and projection {projection}. Rebuild it with "
        "descriptor='gem' (the default) or 'plain' to export it, or use model.export_onnx "
        "(which also exports the mirror image and scales)"
    )


def _search(mb, embedding, metric: str, references: np.ndarray, k: int):
    """(distances, indices) of the k nearest references, in the model's metric (see lookalike.export.onnx)."""
    refs = references.astype(np.float64)
    query = embedding
    if metric == "cosine":
        norms = np.linalg.norm(refs, axis=1, keepdims=True)
        refs = np.divide(refs, norms, out=np.zeros_like(refs), where=norms > 0)
        query = _unit_length(mb, query, axis=1, name="search/unit")
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
    with staging_dir(path) as staging:
        mlmodel.save(str(staging / path.name))
        replace_dir(staging / path.name, path)


def export_coreml(references: References, path: str | os.PathLike, k: int = 5) -> Path:
    """Write a model's references as a Core ML program (``.mlpackage``) for iOS/macOS apps.

    Parameters
    ----------
    references : lookalike.references.core.References
        The references (``model.core``; ``model.export_coreml`` calls this) of a model built from images with a network whose ONNX graph uses only
        the ops translated here (the built-in ``efficientnet_lite0``,
        ``efficientnet_lite2`` and ``squeezenet_v1.1``, float32 or int8; not
        the Hugging Face zoo models, refused naming their first other op) and the ``"gem"`` (default) or ``"plain"`` descriptor: average or GeM
        pooling, unit length or not. Mirror image, several scales, whitening
        and learned projections are refused (:meth:`export_onnx` exports the
        first two).
    path : path
        The ``.mlpackage`` folder to write (replaced if it exists).
    k : int, default 5
        Neighbours returned per image (at most the number of references).

    Returns
    -------
    pathlib.Path
        ``path``. Input ``image``: a colour image of the network's input size
        (Core ML ``ImageType`` in the network's channel order, with its
        scaling and mean subtraction built in), resized as the references were:
        the whole photo squashed (SqueezeNet, Vision's ``scaleFill``) or its
        centre crop (EfficientNet-Lite: 87.5% of the short side), as the
        input's description and the ``lookalike.preprocessing`` metadata say.
        Outputs ``embedding`` (float32, 1 x dim), ``distances`` (float32,
        1 x k, the model's metric, nearest first) and ``indices`` (int32,
        1 x k, positions into the labels kept as JSON in the
        ``lookalike.labels`` metadata). Computed in float32 (an int8 network
        as its quantization in float32); Core ML predictions run on Apple
        platforms only.

    Examples
    --------
    >>> model.export_coreml("Search.mlpackage", k=5)  # doctest: +SKIP
    >>> # Swift: try Search(configuration: .init()).prediction(image: pixelBuffer).indices
    """
    references = as_references(references)
    ct = _import_coremltools()
    from coremltools.converters.mil import Builder as mb

    k = check_positive_int("k", k)
    path = Path(path)
    if path.suffix != ".mlpackage":
        raise InvalidArgument(f"Core ML programs are saved as a .mlpackage folder, got {str(path)!r}")
    spec = references.embedder.spec
    _check_exportable(references, spec)
    k = min(k, len(references))
    width, height = spec.preprocessing.size
    graph = _network_graph(spec)
    vectors = np.asarray(references.embeddings)

    @mb.program(input_specs=[mb.TensorSpec(shape=(1, 3, height, width))], opset_version=ct.target.iOS15)
    def program(image):
        embedding = _translate(mb, graph, image, spec.output_name)
        distances, indices = _search(mb, embedding, references.metric, vectors, k)
        return embedding, mb.identity(x=distances, name=DISTANCES), mb.identity(x=indices, name=INDICES)

    scale, bias = _image_bias(spec)
    layout = ct.colorlayout.BGR if spec.preprocessing.channel_order == "BGR" else ct.colorlayout.RGB
    # Keep each QuantizeLinear's x / scale as ONNX defines it, not 1 / scale folded into the conv weights: the
    # 8-bit grids sit on rounding boundaries (in exact arithmetic the input's puts every pixel value half a step
    # between two points), and
    # without those two passes the program is the QDQ graph op for op (tests/test_coreml.py checks the grids).
    passes = ct.PassPipeline.DEFAULT
    passes.remove_passes(["common::divide_to_multiply", "common::fuse_conv_scale"])
    mlmodel = ct.convert(
        program,
        inputs=[ct.ImageType(name=IMAGE, shape=(1, 3, height, width), scale=scale, bias=bias, color_layout=layout)],
        outputs=[ct.TensorType(name=EMBEDDING), ct.TensorType(name=DISTANCES), ct.TensorType(name=INDICES)],
        convert_to="mlprogram",
        pass_pipeline=passes,
        minimum_deployment_target=ct.target.iOS15,
        # float16 would move distances by ~1e-3 and can swap near ties, and could not hold an int8 network's grid.
        compute_precision=ct.precision.FLOAT32,
    )
    mlmodel.short_description = "lookalike image similarity search: image -> embedding and top-k references"
    mlmodel.version = __version__
    mlmodel.input_description[IMAGE] = _image_description(spec)
    mlmodel.output_description[EMBEDDING] = f"{spec.dim}-d {spec.name} ({spec.precision}) embedding"
    mlmodel.output_description[DISTANCES] = f"{references.metric} distance to the {k} nearest references, nearest first"
    mlmodel.output_description[INDICES] = (
        "positions of those references in the lookalike.paths and lookalike.labels metadata (JSON)"
    )
    mlmodel.user_defined_metadata.update(export_metadata(references, spec, k))
    _save_package(mlmodel, path)
    return path
