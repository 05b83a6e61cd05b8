"""Core ML export: the saved .mlpackage is checked on Linux, where Core ML itself cannot run.

Core ML predictions need macOS/iOS. So the tests read the *saved* package
back (coremltools' MIL-proto loader), translate its ops one by one into an
ONNX graph, run that with ONNX Runtime on real photos and compare with
``model.query``. The translation maps each MIL op to the ONNX op of the same
definition using only what the file says (explicit pads, strides, groups,
axes, constants), so weights, wiring, quantization grids, preprocessing and
the search are all checked; what it cannot check is Apple's own kernels.
Float32 networks must answer as ``model.query`` does to 1e-4; the int8 default
is checked to be its QDQ graph op for op and measured against the integer
kernels ``model`` runs (see the two int8 tests).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import lookalike as lk
from lookalike.embed.extractor import Embedder
from lookalike.embed.frontend import PIXELS, embedding_graph
from lookalike.export.coreml import EMBEDDING

ct = pytest.importorskip("coremltools", reason="needs the coreml extra: pip install 'lookalike[coreml]'")

SAMPLES = Path(__file__).resolve().parents[1] / "samples" / "clothing"
ALL = sorted(str(p) for p in SAMPLES.rglob("*.jpg"))
REFERENCES, QUERIES = ALL[::2], ALL[1::2][:12]  # queries are photos the model has not indexed
UNSEEN = ALL[1::2]  # all 40 photos not indexed: the int8 closeness is measured on these


def _saved_program(path: Path):
    """The main function of the MIL program stored in ``path`` (.mlpackage), as coremltools loads it."""
    from coremltools.converters.mil.frontend.milproto.load import load

    spec = ct.utils.load_spec(str(path))
    program = load(spec, spec.specificationVersion, str(path / "Data" / "com.apple.CoreML" / "weights"))
    return spec, program.functions["main"]


def _first_ops(function, n: int) -> list:
    """The first ``n`` operations of a MIL function that are not constants."""
    return [op for op in function.operations if op.op_type != "const"][:n]


def _onnx_type(var) -> int:
    from coremltools.converters.mil.mil.types import nptype_from_builtin

    return helper.np_dtype_to_tensor_dtype(np.dtype(nptype_from_builtin(var.dtype)))


def _as_onnx(function) -> onnx.ModelProto:
    """An ONNX graph computing the same ops as the MIL ``function`` (only the op kinds the exporter emits)."""
    nodes, inits, seen = [], [], set()

    def tensor(var) -> str:  # a var used as tensor data: consts become initializers
        if var.op is not None and var.op.op_type == "const" and var.name not in seen:
            seen.add(var.name)
            inits.append(numpy_helper.from_array(np.asarray(var.val), var.name))
        return var.name

    def constant(op, name: str, value) -> str:  # an ONNX input that MIL holds as an attribute-like const
        inits.append(numpy_helper.from_array(np.asarray(value), f"{op.name}/{name}"))
        return f"{op.name}/{name}"

    def pads(value) -> list[int]:  # MIL: (before, after) per axis; ONNX: all befores, then all afters
        assert value["pad_type"] == "custom"
        pad = [int(p) for p in value["pad"]]
        return pad[0::2] + pad[1::2]

    simple = {"relu": "Relu", "sqrt": "Sqrt", "identity": "Identity", "add": "Add", "sub": "Sub", "round": "Round"}
    simple |= {"mul": "Mul", "real_div": "Div", "maximum": "Max", "minimum": "Min", "matmul": "MatMul", "pow": "Pow"}
    for op in function.operations:
        kind, args, out = op.op_type, op.inputs, [v.name for v in op.outputs]
        value = {
            name: var.val for name, var in args.items() if not isinstance(var, (list, tuple)) and var.val is not None
        }
        if kind == "const":
            continue
        if kind in simple:
            assert not value.get("transpose_x") and not value.get("transpose_y")
            names = [tensor(args[n]) for n in ("x", "y") if n in args]
            nodes.append(helper.make_node(simple[kind], names, out))
        elif kind == "clip":
            bounds = [constant(op, n, np.float32(value[n])) for n in ("alpha", "beta")]
            nodes.append(helper.make_node("Clip", [tensor(args["x"]), *bounds], out))
        elif kind == "conv":
            names = [tensor(args[n]) for n in ("x", "weight", "bias") if n in args]
            attrs = {"strides": list(value["strides"]), "dilations": list(value["dilations"])}
            nodes.append(helper.make_node("Conv", names, out, pads=pads(value), group=int(value["groups"]), **attrs))
        elif kind == "max_pool":
            kernel, strides = list(value["kernel_sizes"]), list(value["strides"])
            attrs = {"kernel_shape": kernel, "strides": strides, "ceil_mode": int(value["ceil_mode"])}
            nodes.append(helper.make_node("MaxPool", [tensor(args["x"])], out, pads=pads(value), **attrs))
        elif kind == "concat":
            assert not value["interleave"]
            nodes.append(helper.make_node("Concat", [tensor(v) for v in args["values"]], out, axis=int(value["axis"])))
        elif kind == "reshape":
            shape = constant(op, "shape", np.asarray(value["shape"], np.int64))
            nodes.append(helper.make_node("Reshape", [tensor(args["x"]), shape], out))
        elif kind in ("reduce_mean", "reduce_sum"):
            axes = constant(op, "axes", np.asarray(value["axes"], np.int64))
            onnx_op = "ReduceMean" if kind == "reduce_mean" else "ReduceSum"
            nodes.append(helper.make_node(onnx_op, [tensor(args["x"]), axes], out, keepdims=int(value["keep_dims"])))
        elif kind == "topk":
            k = constant(op, "k", np.array([value["k"]], np.int64))
            largest = int(not value["ascending"])
            int64 = out[1] + "/int64"  # ONNX TopK gives int64 indices, MIL's are int32
            nodes.append(
                helper.make_node(
                    "TopK", [tensor(args["x"]), k], [out[0], int64], axis=int(value["axis"]), largest=largest
                )
            )
            nodes.append(helper.make_node("Cast", [int64], [out[1]], to=TensorProto.INT32))
        else:
            raise AssertionError(f"the exporter emitted a MIL op this check does not know: {kind}")
    [image] = function.inputs.values()
    graph = helper.make_graph(
        nodes,
        "saved_coreml_program",
        [helper.make_tensor_value_info(image.name, TensorProto.FLOAT, list(image.shape))],
        [helper.make_tensor_value_info(v.name, _onnx_type(v), None) for v in function.outputs],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def _op_by_op() -> ort.SessionOptions:
    """ONNX Runtime options running a graph as written: no fused or re-laid-out kernels, no integer kernels."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return options


def _run_saved(path: Path, photos: list[str], spec, extra: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """Run the saved program on ``photos`` as Core ML would feed them: pixel values 0..255 in the image's layout.

    Returns its outputs and the ``extra`` tensors (names of MIL vars), stacked over the photos.
    """
    saved, function = _saved_program(path)
    graph = _as_onnx(function)
    graph.graph.output.extend(helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in extra)
    session = ort.InferenceSession(graph.SerializeToString(), _op_by_op())
    names = [o.name for o in session.get_outputs()]
    bgr = saved.description.input[0].type.imageType.colorSpace == ct.proto.FeatureTypes_pb2.ImageFeatureType.BGR
    embedder = Embedder(spec)
    results = []
    for photo in photos:
        pixels = embedder.load(photo)  # uint8 (H, W, 3) RGB, resized (squashed or centre-cropped) as the model does
        image = pixels[None, :, :, ::-1] if bgr else pixels[None]
        feed = {"image": image.transpose(0, 3, 1, 2).astype(np.float32)}
        results.append(dict(zip(names, session.run(None, feed), strict=True)))
    return {key: np.concatenate([r[key] for r in results]) for key in names}


def _create(**options):
    return lk.create(REFERENCES, verbose=False, **options)


#: The networks exported once for the module: the default (EfficientNet-Lite0 in int8, gem, euclidean),
#: EfficientNet-Lite0 in float32 and SqueezeNet.
NETWORKS = {"default": {}, "fp32": {"precision": "fp32"}, "squeezenet": {"model": "squeezenet_v1.1"}}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """name in NETWORKS -> (model, its package), built on first use; k=50 asks for more than the 40 references."""
    made = {}

    def get(name: str):
        if name not in made:
            model = _create(**NETWORKS[name])
            made[name] = model, model.export_coreml(tmp_path_factory.mktemp(name) / "Search.mlpackage", k=50)
        return made[name]

    return get


def _check_search(model, out: dict[str, np.ndarray], k: int) -> None:
    """The program's distances and indices are the exact search of its own embedding over the references."""
    queries = out["embedding"].astype(np.float64)
    refs = np.asarray(model.embeddings, np.float64)
    if model.metric == "cosine":
        unit = refs / np.linalg.norm(refs, axis=1, keepdims=True)
        distances = 1 - (queries / np.linalg.norm(queries, axis=1, keepdims=True)) @ unit.T
    elif model.metric == "dot":
        distances = -queries @ refs.T
    else:
        distances = np.linalg.norm(queries[:, None] - refs[None], axis=2)
    assert out["indices"].shape == out["distances"].shape == (len(queries), k) and out["indices"].dtype == np.int32
    np.testing.assert_allclose(np.sort(distances, axis=1)[:, :k], out["distances"], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.take_along_axis(distances, out["indices"], 1), out["distances"], rtol=1e-4, atol=1e-4)


def _check_answers(model, path: Path, k: int) -> None:
    """A float32 network: the same neighbours as ``model.query``, distances and embeddings to 1e-4."""
    out = _run_saved(path, QUERIES, model.core.embedder.spec)
    expected = model.query(QUERIES, k=k, verbose=False)
    _check_search(model, out, k)
    np.testing.assert_array_equal(model.labels[out["indices"].ravel()], expected["reference_label"].to_numpy())
    np.testing.assert_allclose(out["distances"].ravel(), expected["distance"], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(out["embedding"], model.extract_features(QUERIES, verbose=False), rtol=1e-4, atol=1e-4)


def test_int8_program_computes_the_quantized_graph(exported):
    """The program is the QDQ graph op for op: every activation on the same 8-bit grid, to the last bit.

    ONNX Runtime without graph optimizations runs the int8 graph as ONNX defines it (QuantizeLinear,
    DequantizeLinear, float Conv, no integer kernels), and the saved program, read back, runs on the same
    float kernels: the image's grid, the stem's and the head's are identical on the 40 unseen photos, and so
    the embeddings agree to float rounding. A float Conv summed in another order moves a few values by one
    step (40 of the stem's 16,056,320 with ONNX Runtime's optimized float kernels), and those steps cascade
    through the blocks (about half of the last projection's values): see the next test.
    """
    model, package = exported("default")
    spec = model.core.embedder.spec
    grids = ("image_QuantizeLinear_Output", "stem/relu6_QuantizeLinear_Output", "head/relu6_QuantizeLinear_Output")
    names = tuple(name.replace("/", "_") for name in grids)  # coremltools' spelling of the ONNX names
    out = _run_saved(package, UNSEEN, spec, extra=names)
    graph = embedding_graph(spec)
    graph.graph.output.extend(helper.make_tensor_value_info(name, TensorProto.UINT8, None) for name in grids)
    reference = ort.InferenceSession(graph.SerializeToString(), _op_by_op())
    embedder = Embedder(spec)
    expected = [reference.run([spec.output_name, *grids], {PIXELS: embedder.load(photo)[None]}) for photo in UNSEEN]
    stacked = [np.concatenate([e[i] for e in expected]).astype(np.float32) for i in range(len(grids) + 1)]
    for name, grid in zip(names, stacked[1:], strict=True):
        np.testing.assert_array_equal(out[name], grid, name)
    # Only GeM and the unit length (reduce_mean, sqrt of a sum: LpNormalization's definition) round differently.
    np.testing.assert_allclose(out[EMBEDDING], stacked[0], rtol=1e-5, atol=1e-7)


def test_int8_program_is_close_to_query(exported):
    """Fake quantization in float32 cannot match ONNX Runtime's integer kernels bit for bit.

    ``model`` runs the QDQ graph as fused uint8 x int8 kernels that requantize with their own rounding, so
    some activations land one step away on the 8-bit grid and that grows through the 16 blocks. Measured on
    the 40 photos not indexed (ONNX Runtime 1.32, AVX-512 VNNI CPU): embedding cosine to ``model``'s min
    0.99880, mean 0.99928, exactly as far as ONNX Runtime's own unfused run of the same graph (the previous
    test); the same nearest reference for 40 of 40 queries, the same 5 nearest (as a set) for 37 of 40.
    Distances differ by up to 0.005, so near ties can swap: the bounds below allow one such swap.
    """
    model, package = exported("default")
    spec = model.core.embedder.spec
    out = _run_saved(package, UNSEEN, spec)
    _check_search(model, out, len(REFERENCES))  # the search of the program's own embedding: exact
    expected = model.extract_features(UNSEEN, verbose=False)
    cosine = (out["embedding"] * expected).sum(1)  # both unit length
    assert cosine.min() >= 0.998 and cosine.mean() >= 0.999, (cosine.min(), cosine.mean())
    answers = model.query(UNSEEN, k=len(REFERENCES), verbose=False)
    table = answers.pivot(index="query_label", columns="reference_label", values="distance")
    distances = table.reindex(index=range(len(UNSEEN)), columns=model.labels).to_numpy()
    chosen = distances[np.arange(len(UNSEEN)), out["indices"][:, 0]]  # model's distance to the program's first
    assert np.count_nonzero(chosen > distances.min(1)) <= 1  # nearly always the same nearest reference
    assert (chosen - distances.min(1)).max() <= 0.005  # and otherwise one as near, in the model's distances


@pytest.mark.parametrize("network", ["fp32", "squeezenet"])
def test_float32_networks_answer_as_query_on_real_photos(exported, network):
    _check_answers(*exported(network), k=len(REFERENCES))


@pytest.mark.parametrize("metric", ["cosine", "dot"])
def test_other_metrics_answer_as_query(tmp_path, metric):
    model = _create(model="squeezenet_v1.1", metric=metric)
    _check_answers(model, model.export_coreml(tmp_path / "Search.mlpackage", k=5), k=5)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_plain_descriptor_answers_as_query(tmp_path, metric):
    """Average pooling, no unit length: Turi's embedding, still exportable."""
    model = _create(model="squeezenet_v1.1", metric=metric, descriptor="plain")
    path = model.export_coreml(tmp_path / "Search.mlpackage", k=5)
    _check_answers(model, path, k=5)
    _, function = _saved_program(path)
    assert "pow" not in {op.op_type for op in function.operations}


@pytest.mark.parametrize("network", ["squeezenet", "default"])
def test_gem_pooling_is_in_the_program(exported, network):
    """Clamp at 1e-6, cube, spatial mean, cube root, unit length: the descriptor the references were embedded with."""
    model, path = exported(network)
    _, function = _saved_program(path)
    ops = [op for op in function.operations if op.op_type != "const"]
    pows = [op for op in ops if op.op_type == "pow"]
    assert [float(op.inputs["y"].val) for op in pows] == pytest.approx([3.0, 1.0 / 3.0])
    clamp = pows[0].inputs["x"].op
    assert clamp.op_type == "maximum" and float(clamp.inputs["y"].val) == pytest.approx(1e-6)
    source = clamp.inputs["x"].op  # the feature map GeM pools
    if network == "squeezenet":
        assert source.op_type == "concat"  # fire9's two expand branches
    else:
        assert source.op_type == "mul" and source.inputs["x"].op.op_type == "clip"  # the int8 head, off its grid
    meta = dict(ct.utils.load_spec(str(path)).description.metadata.userDefined)
    assert json.loads(meta["lookalike.descriptor"]) == model.core.embedder.spec.descriptor.to_dict()
    embedding = _run_saved(path, QUERIES[:3], model.core.embedder.spec)["embedding"]
    np.testing.assert_allclose(np.linalg.norm(embedding, axis=1), 1.0, rtol=1e-5)


def test_squeezenet_spec_takes_a_squashed_bgr_image(exported):
    model, package = exported("squeezenet")
    spec, function = _saved_program(package)
    [image] = spec.description.input
    assert image.name == "image" and image.type.WhichOneof("Type") == "imageType"
    assert (image.type.imageType.width, image.type.imageType.height) == (224, 224)
    assert image.type.imageType.colorSpace == ct.proto.FeatureTypes_pb2.ImageFeatureType.BGR
    assert "whole photo squashed" in image.shortDescription
    shapes = {o.name: list(o.type.multiArrayType.shape) for o in spec.description.output}
    assert shapes == {"embedding": [1, 512], "distances": [1, 40], "indices": [1, 40]}  # k capped at 40 references
    meta = dict(spec.description.metadata.userDefined)
    assert json.loads(meta["lookalike.labels"]) == model.labels.tolist()
    assert meta["lookalike.metric"] == "euclidean" and meta["lookalike.k"] == "40"
    assert (meta["lookalike.model"], meta["lookalike.precision"]) == ("squeezenet_v1.1", "fp32")
    # The caffe means are the program's first op, on the image, in BGR order.
    [first] = _first_ops(function, 1)
    assert first.op_type == "add" and first.inputs["x"].name == "image"
    np.testing.assert_allclose(first.inputs["y"].val.ravel(), [-103.939, -116.779, -123.68], rtol=1e-6)


def test_default_spec_takes_a_centre_cropped_rgb_image(exported):
    model, package = exported("default")
    network = model.core.embedder.spec
    assert (network.name, network.precision, network.descriptor.pooling) == ("efficientnet_lite0", "int8", "gem")
    spec, function = _saved_program(package)
    [image] = spec.description.input
    assert (image.type.imageType.width, image.type.imageType.height) == (224, 224)
    assert image.type.imageType.colorSpace == ct.proto.FeatureTypes_pb2.ImageFeatureType.RGB
    assert "centre crop of the photo (87.5% of its short side)" in image.shortDescription
    shapes = {o.name: list(o.type.multiArrayType.shape) for o in spec.description.output}
    assert shapes == {"embedding": [1, 1280], "distances": [1, 40], "indices": [1, 40]}
    meta = dict(spec.description.metadata.userDefined)
    assert (meta["lookalike.model"], meta["lookalike.precision"]) == ("efficientnet_lite0", "int8")
    assert json.loads(meta["lookalike.preprocessing"])["resize"] == "center_crop"
    # RGB scaled to [-1, 1]: pixel * 2/255 - 1, then the input's own 8-bit grid.
    scale, bias = _first_ops(function, 2)
    assert scale.op_type == "mul" and scale.inputs["x"].name == "image"
    np.testing.assert_allclose(scale.inputs["y"].val, 2 / 255, rtol=1e-6)
    assert bias.op_type == "add" and np.allclose(bias.inputs["y"].val, -1.0)


@pytest.mark.parametrize("network", ["squeezenet", "fp32"])
def test_weights_equal_the_onnx_network(exported, network):
    """Float32 networks: every convolution of the program has the ONNX network's own weights, in order."""
    model, path = exported(network)
    spec = model.core.embedder.spec
    _, function = _saved_program(path)
    network = onnx.load(str(spec.network_file()))
    weights = {i.name: numpy_helper.to_array(i) for i in network.graph.initializer}
    # All but the classifier (SqueezeNet's conv10; EfficientNet-Lite's is a Gemm).
    onnx_convs = [n for n in network.graph.node if n.op_type == "Conv" and not n.output[0].startswith("conv10")]
    convs = [op for op in function.operations if op.op_type == "conv"]
    assert len(convs) == len(onnx_convs) == {"squeezenet_v1.1": 25, "efficientnet_lite0": 49}[spec.name]
    for op, node in zip(convs, onnx_convs, strict=True):
        np.testing.assert_array_equal(op.inputs["weight"].val, weights[node.input[1]])
        np.testing.assert_array_equal(op.inputs["bias"].val, weights[node.input[2]])
        assert int(op.inputs["groups"].val) == next((a.i for a in node.attribute if a.name == "group"), 1)


def test_an_existing_package_is_replaced(tmp_path, exported):
    model, package = exported("default")
    target = tmp_path / "Search.mlpackage"
    shutil.copytree(package, target)
    model.export_coreml(target, k=3)
    spec, _ = _saved_program(target)
    assert dict(spec.description.metadata.userDefined)["lookalike.k"] == "3"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Search.mlpackage"]  # no staging folder left


TINY = {"size": (32, 32), "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}  # an ImageType has one scale


def _tiny_network(path: Path, op: str) -> Path:
    """A local ONNX file: conv, ``op``, global average pool."""
    weight = numpy_helper.from_array(np.full((4, 3, 3, 3), 0.01, np.float32), "w")
    nodes = [
        helper.make_node("Conv", ["input", "w"], ["conv"], pads=[1, 1, 1, 1]),
        helper.make_node(op, ["conv"], ["act"]),
        helper.make_node("GlobalAveragePool", ["act"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["features"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 32, 32])],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", 4])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def test_clear_errors(tmp_path, exported):
    model, _ = exported("default")
    with pytest.raises(ValueError, match=r"\.mlpackage"):
        model.export_coreml(tmp_path / "search.mlmodel")
    with pytest.raises(ValueError, match="k must be a positive integer"):
        model.export_coreml(tmp_path / "s.mlpackage", k=0)
    flipped = lk.create(REFERENCES[:4], model="squeezenet_v1.1", descriptor="best", verbose=False)
    with pytest.raises(ValueError, match="no mirror image.*descriptor='gem'.*export_onnx"):
        flipped.export_coreml(tmp_path / "s.mlpackage")
    projected = lk.create(REFERENCES[4:8], model="squeezenet_v1.1", projection=flipped.projection, verbose=False)
    with pytest.raises(ValueError, match="learned projection.*projection whiten"):
        projected.export_coreml(tmp_path / "s.mlpackage")
    precomputed = lk.create(np.eye(3, dtype=np.float32), model=None, verbose=False)
    with pytest.raises(ValueError, match="precomputed embeddings"):
        precomputed.export_coreml(tmp_path / "s.mlpackage")
    network = _tiny_network(tmp_path / "tiny.onnx", "Sigmoid")
    local = lk.create(REFERENCES[:3], model=str(network), preprocessing=TINY, verbose=False)
    with pytest.raises(ValueError, match="cannot translate the ONNX op 'Sigmoid'.*export_onnx"):
        local.export_coreml(tmp_path / "s.mlpackage")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.onnx"]


def test_a_local_onnx_network_of_known_ops_is_exported(tmp_path):
    """Not only the registered networks: any graph of the translated ops, e.g. a user's own file."""
    network = _tiny_network(tmp_path / "tiny.onnx", "Relu")
    model = lk.create(REFERENCES, model=str(network), preprocessing=TINY, verbose=False)
    _check_answers(model, model.export_coreml(tmp_path / "Search.mlpackage", k=3), k=3)


def test_cli_writes_both_exports(tmp_path, capsys):
    from lookalike.cli import main

    lk.create(REFERENCES[:6], verbose=False).save(tmp_path / "m.lookalike")
    onnx_file, package = tmp_path / "s.onnx", tmp_path / "S.mlpackage"
    assert main(["export", str(tmp_path / "m.lookalike"), "--onnx", str(onnx_file), "--coreml", str(package)]) == 0
    assert capsys.readouterr().out.split() == ["wrote", str(onnx_file), "wrote", str(package)]
    assert [o.name for o in onnx.load(str(onnx_file)).graph.output] == ["distances", "indices"]
    assert dict(_saved_program(package)[0].description.metadata.userDefined)["lookalike.k"] == "5"
    assert main(["export", str(tmp_path / "m.lookalike")]) == 1
    assert "--onnx FILE.onnx and/or --coreml" in capsys.readouterr().err
