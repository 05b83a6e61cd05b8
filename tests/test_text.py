"""Text-to-image search through a tiny CLIP-like pair of towers served by the loopback Hub.

The image tower embeds an image as its mean RGB colour; the text tower maps
the words "red", "green" and "blue" to those colour axes, through a real
``tokenizers`` tokenizer.json. So "red" must find the reddest photos: a
ranking the test can compute on its own from the image embeddings.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import numpy as np
import pytest

import lookalike as lk
from hubserver import COMMIT, FakeHub
from lookalike import cli
from lookalike.embed import zoo
from lookalike.embed.registry import Preprocessing

pytest.importorskip("huggingface_hub")
pytest.importorskip("tokenizers")

SAMPLES = Path(__file__).resolve().parents[1] / "samples" / "clothing"
PHOTOS = [str(p) for p in sorted(SAMPLES.rglob("*.jpg"))[:30]]
WORDS = ["[UNK]", "red", "green", "blue", "a", "dress"]
COLOURS = {"red": (1, 0, 0), "green": (0, 1, 0), "blue": (0, 0, 1)}


def _image_tower() -> bytes:
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("GlobalAveragePool", ["pixel_values"], ["pool"]),
        helper.make_node("Flatten", ["pool"], ["image_embeds"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "colour",
        [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, ["batch", 3, 16, 16])],
        [helper.make_tensor_value_info("image_embeds", TensorProto.FLOAT, ["batch", 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def _text_tower() -> bytes:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    table = np.zeros((len(WORDS), 3), np.float32)
    for word, colour in COLOURS.items():
        table[WORDS.index(word)] = colour
    nodes = [
        helper.make_node("Gather", ["table", "input_ids"], ["words"], axis=0),
        helper.make_node("ReduceMean", ["words", "axes"], ["text_embeds"], keepdims=0),
    ]
    graph = helper.make_graph(
        nodes,
        "words",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "sequence"]),
        ],
        [helper.make_tensor_value_info("text_embeds", TensorProto.FLOAT, ["batch", 3])],
        [numpy_helper.from_array(table, "table"), numpy_helper.from_array(np.array([1], np.int64), "axes")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _tokenizer_json() -> bytes:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    return tokenizer.to_str().encode()


@pytest.fixture(scope="module")
def clip_like(tmp_path_factory):
    """A registered CLIP-like zoo entry whose three files are served by a loopback Hub."""
    with FakeHub() as hub, pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_ENDPOINT", hub.url)
        mp.delenv("HF_HUB_OFFLINE", raising=False)
        repo = f"test-org/clip-{uuid.uuid4().hex[:8]}"
        hub.add(repo + "-vision", "model.onnx", _image_tower())
        text_sha = hub.add(repo + "-text", "model.onnx", _text_tower())
        hub.add(repo + "-text", "tokenizer.json", _tokenizer_json(), lfs=False)  # small file: git SHA-1 etag
        entry = zoo.ZooEntry(
            name=f"test-clip-{uuid.uuid4().hex[:8]}",
            image=zoo.HubFile(repo + "-vision", COMMIT, "model.onnx"),
            dim=3,
            preprocessing=Preprocessing(size=(16, 16), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)),
            input_name="pixel_values",
            output_name="image_embeds",
            normalize=True,
            license="test",
            description="colour CLIP",
            text=zoo.TextTower(
                model=zoo.HubFile(repo + "-text", COMMIT, "model.onnx", text_sha),
                tokenizer=zoo.HubFile(repo + "-text", COMMIT, "tokenizer.json"),
            ),
        )
        zoo.register_zoo(entry)
        model = lk.create(PHOTOS, model=entry.name, verbose=False, cache=False)
        yield entry, model, hub


def test_text_query_ranks_like_the_colour_axes(clip_like):
    entry, model, hub = clip_like
    assert any("tokenizer.json" in p for _, p in hub.requests)
    norms = np.linalg.norm(model.embeddings, axis=1)
    np.testing.assert_allclose(norms, 1.0, rtol=1e-5)  # unit vectors: euclidean ranks as cosine
    result = model.query_text(["red", "a blue dress"], k=5)
    assert result["query_label"].tolist() == ["red"] * 5 + ["a blue dress"] * 5
    for text, axis in (("red", 0), ("a blue dress", 2)):
        rows = result[result["query_label"] == text]
        expected = np.argsort(-model.embeddings[:, axis], kind="stable")[:5]
        assert rows["reference_label"].tolist() == expected.tolist()
        target = np.eye(3, dtype=np.float32)[axis]
        np.testing.assert_allclose(
            rows["distance"], np.linalg.norm(model.embeddings[expected] - target, axis=1), rtol=1e-5, atol=1e-6
        )


def test_reddest_photo_is_really_red(clip_like):
    """Independent of the pipeline: decode the top photo and the rest with Pillow and compare colours."""
    from PIL import Image

    _, model, _ = clip_like
    top = int(model.query_text("red", k=1)["reference_label"].iloc[0])

    def red_share(path: str) -> float:
        rgb = np.asarray(Image.open(path).convert("RGB"), np.float64).mean(axis=(0, 1))
        return rgb[0] / np.linalg.norm(rgb)

    shares = [red_share(p) for p in PHOTOS]
    assert shares[top] >= np.quantile(shares, 0.9)


def test_text_query_after_save_and_load_and_from_the_cli(clip_like, tmp_path, capsys):
    _, model, _ = clip_like
    model.save(tmp_path / "m")
    loaded = lk.load_model(tmp_path / "m")
    np.testing.assert_allclose(loaded.query_text("green", k=3)["distance"], model.query_text("green", k=3)["distance"])
    assert cli.main(["query", str(tmp_path / "m"), "--text", "green", "-k", "3", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["reference_label"] for r in rows] == model.query_text("green", k=3)["reference_label"].tolist()
    assert cli.main(["query", str(tmp_path / "m")]) == 1
    assert "--text" in capsys.readouterr().err


def test_image_only_model_says_which_models_can(sample_model, capsys, tmp_path):
    with pytest.raises(ValueError, match="has no text tower.*clip-vit-b-32"):
        sample_model.query_text("a red dress")
    sample_model.save(tmp_path / "s")
    assert cli.main(["query", str(tmp_path / "s"), "--text", "a red dress"]) == 1
    assert "no text tower" in capsys.readouterr().err


def test_empty_text_is_refused(clip_like):
    _, model, _ = clip_like
    for bad in ("", "   ", [], [3]):
        with pytest.raises(ValueError, match="text must be"):
            model.query_text(bad)


def test_text_query_on_a_whitened_model_compares_with_the_raw_image_embeddings(clip_like):
    """A whitening is fitted on image embeddings; text must not be pushed through it."""
    from lookalike.references.projection import fit_projection

    entry, model, _ = clip_like
    whitening = fit_projection("whiten", model.raw_embeddings)
    whitened = lk.create(PHOTOS, model=entry.name, projection=whitening, verbose=False, cache=False)
    assert whitened.projection is not None
    assert not np.allclose(whitened.embeddings, model.embeddings)  # the image-to-image space did change
    ours = whitened.query_text(["red", "a blue dress"], k=5)
    plain = model.query_text(["red", "a blue dress"], k=5)
    assert ours["reference_label"].tolist() == plain["reference_label"].tolist()
    np.testing.assert_allclose(ours["distance"], plain["distance"], rtol=1e-5, atol=1e-6)
