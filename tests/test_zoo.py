"""The model zoo's real download path, against a loopback Hub serving models built here.

``huggingface_hub`` itself does the HTTP (HF_ENDPOINT points it at
:class:`hubserver.FakeHub`); the files are real ONNX networks that embed the
vendored photos. Only these test networks go through the network here: the
real zoo files (resnet-50, mobilenet_v3, dinov2-small, clip-vit-b-32) cannot
be downloaded on this machine.
"""

from __future__ import annotations

import json
import socket
import uuid
from pathlib import Path

import numpy as np
import pytest

import lookalike as lk
from hubserver import COMMIT, FakeHub, tiny_image_net
from lookalike import cli
from lookalike.embed import zoo
from lookalike.embed.registry import DEFAULT_MODEL, Preprocessing, get_spec

pytest.importorskip("huggingface_hub")

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples" / "clothing"
PREP = Preprocessing(size=(32, 32), resize="center_crop")
PHOTOS = sorted(SAMPLES.rglob("*.jpg"))[:12]


def _entry(repo: str, sha256: str | None = None, filename: str = "onnx/model.onnx", size: int = 0) -> zoo.ZooEntry:
    entry = zoo.ZooEntry(
        name=f"test-{uuid.uuid4().hex[:8]}",
        image=zoo.HubFile(repo, COMMIT, filename, sha256, size),
        dim=16,
        preprocessing=PREP,
        input_name="pixel_values",
        output_name="logits",
        tap="classifier_input",
        license="test",
        description="tiny test network",
    )
    zoo.register_zoo(entry)
    return entry


@pytest.fixture
def hub(monkeypatch):
    with FakeHub() as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        yield server


def _repo() -> str:
    return f"test-org/tiny-{uuid.uuid4().hex[:8]}"


def _closed_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"  # nothing listens once closed


def test_fetch_verifies_and_embeds_real_photos_like_the_same_local_file(hub, tmp_path):
    repo, data = _repo(), tiny_image_net(seed=1)
    sha = hub.add(repo, "onnx/model.onnx", data)
    entry = _entry(repo, sha256=sha, size=len(data))
    assert not zoo.is_cached(entry)

    model = lk.create([str(p) for p in PHOTOS], model=entry.name, verbose=False, cache=False)
    # (huggingface_hub may also ask /api/... for its own purposes; only file requests matter here)
    files = [(m, p) for m, p in hub.requests if "/resolve/" in p]
    assert {m for m, _ in files} == {"HEAD", "GET"}
    assert {p for _, p in files} == {f"/{repo}/resolve/{COMMIT}/onnx/model.onnx"}
    assert zoo.is_cached(entry)
    assert zoo.cached_file(entry.image).read_bytes() == data

    # The same network given as a local file: the tap must expose exactly the pooled features.
    local = tmp_path / "tiny.onnx"
    local.write_bytes(data)
    reference = lk.create([str(p) for p in PHOTOS], model=local, preprocessing=PREP, verbose=False, cache=False)
    assert reference.dim == 10  # the local file's first output is the logits
    features = _features(data, model)
    np.testing.assert_allclose(model.embeddings, features, rtol=1e-5, atol=1e-6)
    assert model.embeddings.shape == (len(PHOTOS), 16) and np.ptp(model.embeddings, axis=0).max() > 0
    top = model.query([str(p) for p in PHOTOS], k=1)
    assert (top["reference_label"].to_numpy() == np.arange(len(PHOTOS))).all()

    # Cached: no request at all the second time, even with the Hub gone.
    hub.requests.clear()
    hub.stop()
    again = lk.create([str(p) for p in PHOTOS[:3]], model=entry.name, verbose=False, cache=False)
    assert [p for _, p in hub.requests if "/resolve/" in p] == []
    np.testing.assert_allclose(again.embeddings, model.embeddings[:3], rtol=1e-6)


def _features(data: bytes, model: lk.ImageSimilarityModel) -> np.ndarray:
    """The tiny net's pooled features, computed by exposing them in ONNX Runtime directly."""
    import onnx
    import onnxruntime as ort

    from lookalike.embed.extractor import Embedder
    from lookalike.embed.frontend import with_pixel_input

    net = onnx.load_from_string(data)
    net.graph.output.append(onnx.helper.make_tensor_value_info("features", onnx.TensorProto.FLOAT, None))
    session = ort.InferenceSession(with_pixel_input(net, "pixel_values", PREP).SerializeToString())
    embedder = Embedder(get_spec(model.model_name))
    batch = np.stack([embedder.load(str(p)) for p in PHOTOS])
    return session.run(["features"], {"pixels": batch})[0]


def test_corrupted_download_fails_the_checksum_and_is_discarded(hub):
    repo, data = _repo(), tiny_image_net(seed=2)
    sha = hub.add(repo, "onnx/model.onnx", data)
    hub.corrupt.add((repo, "onnx/model.onnx"))
    entry = _entry(repo, sha256=sha)
    with pytest.raises(zoo.ChecksumError, match="checksum mismatch.*deleted"):
        zoo.fetch(entry.name)
    assert zoo.cached_file(entry.image) is None
    blobs = zoo.hub_cache() / f"models--{repo.replace('/', '--')}" / "blobs"
    assert not any(p.is_file() for p in blobs.iterdir())
    # Repaired on the server: the next fetch succeeds.
    hub.corrupt.clear()
    assert zoo.fetch(entry.name)[0].read_bytes() == data


def test_unpinned_entry_is_checked_against_the_hubs_content_hash(hub):
    repo, data = _repo(), tiny_image_net(seed=3)
    hub.add(repo, "onnx/model.onnx", data)
    hub.corrupt.add((repo, "onnx/model.onnx"))
    entry = _entry(repo, sha256=None)
    with pytest.raises(zoo.ChecksumError):
        zoo.fetch(entry.name)
    assert zoo.cached_file(entry.image) is None


def test_pinned_checksum_differs_from_what_the_hub_serves(hub):
    repo = _repo()
    hub.add(repo, "onnx/model.onnx", tiny_image_net(seed=4))
    entry = _entry(repo, sha256="0" * 64)
    with pytest.raises(zoo.ChecksumError, match="expected 0000"):
        lk.create([str(PHOTOS[0])], model=entry.name, verbose=False)
    assert zoo.cached_file(entry.image) is None


def test_missing_file_says_so(hub):
    entry = _entry(_repo(), sha256=None)
    with pytest.raises(zoo.ModelUnavailableError, match="does not exist"):
        zoo.fetch(entry.name)


def test_hub_unreachable_fails_with_how_to_fetch(monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", _closed_port())
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    entry = _entry(_repo())
    with pytest.raises(zoo.ModelUnavailableError) as info:
        lk.create([str(PHOTOS[0])], model=entry.name, verbose=False)
    message = str(info.value)
    assert "cannot be reached" in message and f"lookalike models fetch {entry.name}" in message
    assert "local .onnx" in message


def test_hub_that_never_answers_times_out(monkeypatch):
    """A server that accepts the connection and says nothing: the short timeout ends the wait."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{silent.getsockname()[1]}")
        monkeypatch.setenv("LOOKALIKE_HUB_TIMEOUT", "1")
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        entry = _entry(_repo())
        with pytest.raises(zoo.ModelUnavailableError, match="cannot be reached"):
            zoo.fetch(entry.name)


def test_hf_hub_offline_makes_no_request(hub, monkeypatch):
    repo = _repo()
    hub.add(repo, "onnx/model.onnx", tiny_image_net(seed=5))
    entry = _entry(repo)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(zoo.ModelUnavailableError, match="HF_HUB_OFFLINE"):
        zoo.fetch(entry.name)
    assert [p for _, p in hub.requests if "/resolve/" in p] == []
    monkeypatch.delenv("HF_HUB_OFFLINE")
    zoo.fetch(entry.name)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_ENDPOINT", _closed_port())
    assert lk.create([str(PHOTOS[0])], model=entry.name, verbose=False, cache=False).dim == 16


def test_default_model_never_touches_the_network(monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", _closed_port())
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = lk.create([str(p) for p in PHOTOS[:2]], verbose=False, cache=False)
    assert model.model_name == DEFAULT_MODEL == "efficientnet_lite0" and model.dim == 1280


def test_cli_lists_and_fetches(hub, capsys):
    repo, data = _repo(), tiny_image_net(seed=6)
    entry = _entry(repo, sha256=hub.add(repo, "onnx/model.onnx", data), size=len(data))
    assert cli.main(["models", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert {"resnet-50", "mobilenet_v3", "dinov2-small", "clip-vit-b-32", "squeezenet_v1.1", DEFAULT_MODEL} <= set(rows)
    # "available": usable now (a zoo model once fetched, a built-in one with its weights installed); else how.
    assert rows[entry.name]["available"] is False and rows["squeezenet_v1.1"]["available"] is True
    assert rows[entry.name]["install"] == f"lookalike models fetch {entry.name}"
    assert cli.main(["models", "fetch", entry.name]) == 0
    assert entry.name in capsys.readouterr().out
    assert cli.main(["models", "--json"]) == 0
    assert {r["name"]: r for r in json.loads(capsys.readouterr().out)}[entry.name]["available"] is True
    assert cli.main(["models"]) == 0
    table = capsys.readouterr().out
    assert "clip-vit-b-32" in table and "text" in table
    assert cli.main(["models", "fetch", "no-such-model"]) == 1
    assert "not a zoo model" in capsys.readouterr().err


def test_zoo_table_rows_are_complete():
    for name in ("resnet-50", "mobilenet_v3", "dinov2-small", "clip-vit-b-32"):
        entry = zoo.get_entry(name)
        spec = get_spec(name)
        assert spec.dim == entry.dim > 0 and entry.license and entry.size
        for f in entry.files:
            assert len(f.revision) == 40 and (f.sha256 is None or len(f.sha256) == 64)
    assert zoo.get_entry("clip-vit-b-32").text is not None
    docs = (REPO / "docs" / "models.md").read_text()
    unverified = [
        f"{n}" for n, e in zoo.ZOO.items() if not n.startswith("test-") and any(f.sha256 is None for f in e.files)
    ]
    assert unverified and all(name in docs for name in unverified)
    assert "unverified" in docs.lower()
