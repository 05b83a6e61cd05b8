"""The REST API against real uvicorn servers on 127.0.0.1: listings, thumbnails, neighbours, uploads, duplicates, map."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import webbrowser

import httpx
import networkx as nx
import numpy as np
import pytest
from PIL import Image, ImageOps

import lookalike as lk
from conftest import noise_rgb, write_png_header_bomb, write_truncated_jpeg
from lookalike import dedup
from lookalike.cli import main as lookalike_cli
from lookalike.embed.registry import DEFAULT_MODEL
from lookalike.explore import layout
from lookalike.server.collection import TSNE_ON_REQUEST
from lookalike.server.runner import start_in_thread
from lookalike.server.security import check_bind
from server_fixtures import *  # noqa: F403 - the server fixtures
from server_fixtures import SAMPLE_PHOTOS, cli_server, small_folder


@pytest.fixture(scope="module")
def api(server):
    with httpx.Client(base_url=server.api, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def small_model(tmp_path_factory, lookalike_cache):
    return lk.create(small_folder(tmp_path_factory.mktemp("small-model")), verbose=False)


@pytest.fixture(scope="module")
def small_server(small_model, tmp_path_factory):
    """The small model served straight from the object, with tight upload limits and one CORS origin (and so a token)."""
    thumbs = tmp_path_factory.mktemp("small-thumbnails")
    with (
        start_in_thread(
            small_model,
            thumbnail_dir=thumbs,
            max_upload_bytes=200_000,
            max_upload_pixels=1_000_000,
            cors=["http://example.org"],
            token="small-s3cret",
        ) as running,
        httpx.Client(base_url=running.api, timeout=60, headers={"Authorization": "Bearer small-s3cret"}) as client,
    ):
        yield client


def jpeg_bytes(image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90, **options)
    return buffer.getvalue()


def upload(client: httpx.Client, data: bytes, k: int = 5, name: str = "photo.jpg", content_type: str = "image/jpeg"):
    return client.post(f"/query?k={k}", files={"image": (name, data, content_type)})


# ---------------------------------------------------------------------------------------------- model and listings


def test_health_and_summary(api, sample_model):
    assert api.get("/health").json() == {"status": "ok", "references": 80}
    summary = api.get("/summary").json()
    assert summary["num_references"] == 80
    assert summary["model"] == DEFAULT_MODEL
    assert summary["metric"] == "euclidean"
    assert summary["has_images"] is True and summary["can_query_images"] is True


def test_references_are_paged_in_model_order(api, sample_model):
    paths = sample_model.references["path"].tolist()
    first = api.get("/references", params={"offset": 0, "limit": 50}).json()
    second = api.get("/references", params={"offset": 50, "limit": 50}).json()
    assert first["total"] == second["total"] == 80
    items = first["items"] + second["items"]
    assert [item["index"] for item in items] == list(range(80))
    assert [item["label"] for item in items] == sample_model.labels.tolist()
    assert [item["path"] for item in items] == paths
    with Image.open(paths[7]) as image:
        assert (items[7]["width"], items[7]["height"]) == image.size
    assert api.get("/references", params={"offset": 500}).json()["items"] == []


def test_one_reference_by_index_and_by_label(api, sample_model):
    assert api.get("/references/12").json()["path"] == sample_model.references["path"][12]
    assert api.get("/references/lookup", params={"label": "12"}).json()["index"] == 12
    missing = api.get("/references/80")
    assert missing.status_code == 404 and "the model has 80" in missing.json()["detail"]
    assert api.get("/references/lookup", params={"label": "nope"}).status_code == 404


def test_bad_parameters_are_422_with_a_message_naming_them(api):
    for path, name in [
        ("/references?limit=0", "limit"),
        ("/references/-1", "index"),
        ("/references/abc", "index"),
        ("/references/1/neighbours?k=0", "k"),
        ("/references/1/neighbours?radius=-1", "radius"),
        ("/references/1/neighbours?radius=nan", "radius"),
        ("/duplicates?threshold=inf", "threshold"),
    ]:
        response = api.get(path)
        assert response.status_code == 422, path
        assert response.json()["detail"].startswith(name), (path, response.json())


# ---------------------------------------------------------------------------------------------- thumbnails


def test_thumbnail_is_a_small_jpeg_made_once(api, server, sample_model):
    response = api.get("/references/5/thumbnail")
    assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
    thumb = Image.open(io.BytesIO(response.content))
    assert thumb.format == "JPEG" and max(thumb.size) == 256
    with Image.open(sample_model.references["path"][5]) as original:
        # Same aspect ratio as the upright photo.
        assert abs(thumb.size[0] / thumb.size[1] - original.size[0] / original.size[1]) < 0.02
    cached = list(server.thumbnail_dir.rglob("*.jpg"))
    assert len(cached) >= 1
    stamps = {p: p.stat().st_mtime_ns for p in cached}
    again = api.get("/references/5/thumbnail")
    assert again.content == response.content
    assert {p: p.stat().st_mtime_ns for p in server.thumbnail_dir.rglob("*.jpg")} == stamps  # served, not remade


def test_a_thumbnail_is_kept_for_good_only_at_an_address_naming_its_files_version(api):
    version = api.get("/references/5").json()["version"]
    kept = api.get("/references/5/thumbnail", params={"v": version})
    assert kept.status_code == 200 and "immutable" in kept.headers["cache-control"]
    plain = api.get("/references/5/thumbnail")  # the same address may show another file after an apply or a restart
    assert plain.headers["cache-control"] == "private, no-cache" and plain.content == kept.content
    stale = api.get("/references/5/thumbnail", params={"v": api.get("/references/6").json()["version"]})
    assert stale.status_code == 409 and "reload" in stale.json()["detail"]


def test_thumbnail_follows_exif_orientation(small_server, small_model):
    position = small_model.references["path"].str.endswith("rotated.jpg").to_numpy().nonzero()[0][0]
    response = small_server.get(f"/references/{position}/thumbnail")
    assert response.status_code == 200
    thumb = np.asarray(Image.open(io.BytesIO(response.content)).convert("RGB"), dtype=np.float32)
    upright = ImageOps.exif_transpose(Image.open(small_model.references["path"][position])).convert("RGB")
    assert thumb.shape == (120, 80, 3)  # stored 120x80 landscape, shown 80x120 portrait
    assert np.abs(thumb - np.asarray(upright, dtype=np.float32)).mean() < 6  # the same pixels, JPEG aside
    upside_down = np.asarray(upright.transpose(Image.Transpose.ROTATE_180), dtype=np.float32)
    assert np.abs(thumb - upside_down).mean() > 40  # and the card is asymmetric enough for this to mean something


# ---------------------------------------------------------------------------------------------- neighbours


def test_neighbours_of_a_reference_match_the_similarity_graph(api, sample_model):
    edges = sample_model.similarity_graph(k=5, output_type="table")
    expected = edges[edges["__src_id"] == sample_model.labels[9]]
    result = api.get("/references/9/neighbours", params={"k": 5}).json()
    assert result["query"]["index"] == 9
    got = result["neighbours"]
    assert [n["label"] for n in got] == expected["__dst_id"].tolist()
    np.testing.assert_allclose([n["distance"] for n in got], expected["distance"], rtol=1e-6)
    assert [n["rank"] for n in got] == [1, 2, 3, 4, 5]
    assert 9 not in [n["index"] for n in got]


def test_neighbours_within_a_radius(api):
    everything = api.get("/references/9/neighbours", params={"k": 79}).json()["neighbours"]
    radius = everything[4]["distance"]
    within = api.get("/references/9/neighbours", params={"k": 79, "radius": radius}).json()["neighbours"]
    assert within == [n for n in everything if n["distance"] <= radius]
    assert len(within) >= 5


def test_upload_finds_the_same_photo_first(api, sample_model):
    photo = SAMPLE_PHOTOS[20]
    result = upload(api, photo.read_bytes(), k=5).json()
    first = result["neighbours"][0]
    assert first["path"] == sample_model.references["path"][first["index"]]
    assert os.path.samefile(first["path"], photo) and first["distance"] < 1e-3
    expected = sample_model.query(str(photo), k=5, verbose=False)
    assert [n["label"] for n in result["neighbours"]] == expected["reference_label"].tolist()
    with Image.open(photo) as image:
        assert result["upload"] == {"width": image.size[0], "height": image.size[1], "format": "JPEG"}


def test_upload_type_comes_from_the_bytes_not_the_header(api):
    buffer = io.BytesIO()
    Image.open(SAMPLE_PHOTOS[20]).save(buffer, "PNG")
    response = upload(api, buffer.getvalue(), name="notes.txt", content_type="text/plain")
    assert response.status_code == 200 and response.json()["upload"]["format"] == "PNG"
    text = upload(api, b"<html><body>hello</body></html>" * 10, content_type="image/jpeg")
    assert text.status_code == 415 and "HTML" in text.json()["detail"]


def test_bad_uploads_get_clear_4xx(small_server, tmp_path):
    assert upload(small_server, b"").status_code == 422
    truncated = upload(small_server, write_truncated_jpeg(tmp_path / "cut.jpg").read_bytes())
    assert truncated.status_code == 422 and "truncated" in truncated.json()["detail"]
    bomb = upload(small_server, write_png_header_bomb(tmp_path / "bomb.png").read_bytes(), name="bomb.png")
    assert bomb.status_code == 413 and "decompression-bomb" in bomb.json()["detail"]
    big_flat = io.BytesIO()
    Image.new("RGB", (1200, 1000), (90, 120, 200)).save(big_flat, "PNG")  # 1.2 MP in a few KB
    assert len(big_flat.getvalue()) < 200_000
    too_many = upload(small_server, big_flat.getvalue(), name="flat.png")
    assert too_many.status_code == 413 and "1,000,000" in too_many.json()["detail"]
    heavy = upload(small_server, jpeg_bytes(noise_rgb(600, 500)))
    assert heavy.status_code == 413 and "too large" in heavy.json()["detail"]


def test_a_chunked_upload_is_cut_at_the_cap(small_server):
    def body():
        yield b'--b\r\nContent-Disposition: form-data; name="image"; filename="x.jpg"\r\n\r\n'
        for _ in range(100):
            yield bytes(64 * 1024)  # 6.4 MB in all, with no Content-Length

    response = small_server.post("/query", content=body(), headers={"content-type": "multipart/form-data; boundary=b"})
    assert response.status_code == 413 and "too large" in response.json()["detail"]


# ---------------------------------------------------------------------------------------------- duplicates and map


def test_duplicates_find_the_copied_photo(small_server, small_model):
    result = small_server.get("/duplicates", params={"threshold": 1e-3}).json()
    assert result["total"] == 1
    group = result["groups"][0]
    assert group["size"] == 2
    assert [m["keeper"] for m in group["members"]] == [True, False]
    assert [m["distance"] for m in group["members"]] == [0.0, pytest.approx(0.0, abs=1e-3)]
    assert sorted(os.path.basename(m["path"]) for m in group["members"]) == ["copy-a.jpg", "copy-b.jpg"]
    assert [m["tier"] for m in group["members"]] == ["exact", "exact"]  # the same bytes
    copies = small_server.get("/duplicates", params={"threshold": 1e-3, "tiers": ["exact", "resized"]}).json()
    assert copies["total"] == 1 and copies["tiers"] == ["exact", "resized"]
    assert small_server.get("/duplicates", params={"threshold": 1e-3, "tiers": "similar"}).json()["total"] == 0
    assert small_server.get("/duplicates", params={"tiers": "copies"}).status_code == 422


def test_duplicate_groups_are_the_components_of_close_pairs(api, sample_model):
    assert api.get("/duplicates").json()["threshold"] == pytest.approx(dedup.default_threshold(sample_model.core))
    threshold = api.get("/duplicates").json()["nearest"]["p5"]  # loose enough to group some of these photos
    result = api.get("/duplicates", params={"threshold": threshold, "k": 79, "limit": 200}).json()
    vectors = sample_model.embeddings.astype(np.float64)
    distances = np.sqrt(((vectors[:, None, :] - vectors[None, :, :]) ** 2).sum(-1))
    close = nx.Graph()
    pairs = zip(*np.nonzero(distances <= threshold * (1 + 1e-9)), strict=True)
    close.add_edges_from((i, j) for i, j in pairs if i < j)
    expected = sorted(sorted(c) for c in nx.connected_components(close))
    got = sorted(sorted(m["index"] for m in g["members"]) for g in result["groups"])
    assert got == expected and len(got) >= 1
    for group in result["groups"]:  # keeper first (most pixels), the others by distance to it
        keeper, *others = group["members"]
        assert keeper["keeper"] and not any(m["keeper"] for m in others)
        assert keeper["width"] * keeper["height"] == max(m["width"] * m["height"] for m in group["members"])
        assert [m["distance"] for m in others] == sorted(m["distance"] for m in others)
    assert api.get("/duplicates", params={"threshold": 0}).json()["total"] == 0


def test_map_is_the_pca_of_the_embeddings(api, sample_model):
    result = api.get("/map", params={"method": "pca"}).json()
    assert result["total"] == 80 and result["index"] == list(range(80))
    assert result["method"] == "pca" and result["note"] == ""
    centred = sample_model.embeddings.astype(np.float64) - sample_model.embeddings.mean(axis=0)
    _, singular, axes = np.linalg.svd(centred, full_matrices=False)
    expected = centred @ axes[:2].T
    got = np.column_stack([result["x"], result["y"]])
    np.testing.assert_allclose(np.abs(got), np.abs(expected), atol=1e-3 * np.abs(expected).max())
    np.testing.assert_allclose(result["explained_variance"], singular[:2] ** 2 / (singular**2).sum(), rtol=1e-4)
    sample = api.get("/map", params={"limit": 10}).json()
    assert len(sample["x"]) == 10 and sample["index"][0] == 0 and sample["index"][-1] == 79


def test_a_position_that_holds_another_file_after_an_apply_is_refused(tmp_path, lookalike_cache):
    # Pages address references by position, and an apply moves some out of the model: a page that listed them
    # before names the file it means, and a position holding another file now is a 409, never that other file.
    folder = small_folder(tmp_path)
    lk.create(str(folder), verbose=False).save(tmp_path / "model")
    model = lk.load_model(tmp_path / "model")
    with (
        start_in_thread(
            model, model_path=tmp_path / "model", move_to=tmp_path / "out", thumbnail_dir=tmp_path / "thumbs"
        ) as running,
        httpx.Client(base_url=running.api, timeout=60) as client,
    ):
        before = client.get("/references").json()["items"]
        where = {os.path.basename(item["path"]): item for item in before}
        copy, keeper = where["copy-b.jpg"], where["copy-a.jpg"]
        after_copy = before[copy["index"] + 1]  # the reference whose position the apply changes
        assert client.get(
            f"/references/{after_copy['index']}/thumbnail", params={"path": after_copy["path"]}
        ).is_success
        for wrong in (copy["path"], "/etc/passwd"):
            refused = client.get(f"/references/{after_copy['index']}/thumbnail", params={"path": wrong})
            assert refused.status_code == 409 and b"root:" not in refused.content
        decision = {"action": "discard", "index": copy["index"], "path": copy["path"]}
        decision.update(other=keeper["index"], other_path=keeper["path"])
        assert client.post("/decisions", json=decision).json()["pending_discards"] == 1
        assert client.post("/apply", json={"confirm": True}).json()["moved"] == [copy["path"]]

        stale = client.get(f"/references/{after_copy['index']}/thumbnail", params={"path": after_copy["path"]})
        assert stale.status_code == 409 and "reload" in stale.json()["detail"]
        keep = {"action": "keep", "index": after_copy["index"], "path": after_copy["path"]}
        assert client.post("/decisions", json=keep).status_code == 409
        keep["index"] -= 1  # where that file is now
        assert client.post("/decisions", json=keep).json()["decisions"] == 2
        assert model.decisions.state_of(after_copy["path"]) == "keep"


def test_map_is_a_tsne_layout_with_clusters(api, sample_model):
    result = api.get("/map").json()
    assert (result["method"], result["saved"], result["note"], result["explained_variance"]) == ("tsne", False, "", [])
    assert result["index"] == list(range(80)) and len(result["x"]) == len(result["y"]) == 80
    expected = layout.compute(sample_model.core, "tsne")  # the same references give the same map
    np.testing.assert_allclose(np.column_stack([result["x"], result["y"]]), expected.coordinates, rtol=1e-6)
    assert result["cluster"] == expected.clusters.tolist() and result["clusters"] == 6  # sqrt(80 / 2)
    counts = np.bincount(result["cluster"])
    assert result["color"] == {
        "column": "cluster",
        "kind": "category",
        "values": result["cluster"],
        "categories": [f"cluster {k}" for k in range(1, 7)],
        "counts": counts.tolist(),
        "min": None,
        "max": None,
    }
    facts = ["brightness", "contrast", "sharpness", "entropy", "colourfulness"]  # read off the pixels when indexed
    assert result["columns"] == [
        "cluster",
        "folder",
        "width",
        "height",
        "format",
        *facts,
    ]  # never paths or fingerprints
    assert api.get("/map", params={"limit": 100_000}).json()["index"] == list(range(80))
    assert api.get("/map", params={"limit": 100_001}).status_code == 422


def test_map_colours_by_folder_or_column(api, sample_model, sample_classes):
    folders = api.get("/map", params={"color": "folder"}).json()["color"]
    assert folders["kind"] == "category" and folders["categories"] == sorted(set(sample_classes))  # 8 of each
    assert folders["counts"] == [8] * 10
    assert [folders["categories"][v] for v in folders["values"]] == sample_classes.tolist()
    widths = api.get("/map", params={"color": "width", "limit": 10}).json()
    expected = sample_model.references["width"].to_numpy()
    assert widths["color"]["kind"] == "number" and len(widths["color"]["values"]) == 10
    assert widths["color"]["values"] == expected[widths["index"]].tolist()
    assert (widths["color"]["min"], widths["color"]["max"]) == (expected.min(), expected.max())
    formats = api.get("/map", params={"color": "format"}).json()["color"]
    assert formats["categories"] == ["JPEG"] and set(formats["values"]) == {0}
    for bad in ("path", "nothing"):
        response = api.get("/map", params={"color": bad})
        assert response.status_code == 422
        assert response.json()["detail"] == (
            f"the map cannot be coloured by {bad!r}: choose one of cluster, folder, width, height, format, "
            "brightness, contrast, sharpness, entropy, colourfulness"
        )
    assert api.get("/map", params={"method": "umap"}).status_code == 422
    spec = api.get("/openapi.json").json()  # the spec names this model's colourings
    color = next(p for p in spec["paths"]["/api/map"]["get"]["parameters"] if p["name"] == "color")
    facts = ["brightness", "contrast", "sharpness", "entropy", "colourfulness"]
    assert color["schema"]["enum"] == ["cluster", "folder", "width", "height", "format", *facts]


def test_map_saved_with_the_model_is_served(saved_model, tmp_path):
    folder = tmp_path / "with-map.lookalike"
    shutil.copytree(saved_model, folder)
    assert lookalike_cli(["map", str(folder), "--method", "pca", "-q"]) == 0
    with start_in_thread(lk.load_model(folder), thumbnail_dir=tmp_path / "thumbs") as running:
        result = httpx.get(f"{running.api}/map", timeout=60).json()
    # With openTSNE at hand, "auto" computes t-SNE rather than show a saved PCA map (saved without the extra, say).
    assert result["method"] == "tsne" and not result["saved"]
    assert lookalike_cli(["map", str(folder), "-q"]) == 0
    saved = lk.load_model(folder).map
    with start_in_thread(lk.load_model(folder), thumbnail_dir=tmp_path / "thumbs") as running:
        result = httpx.get(f"{running.api}/map", timeout=60).json()
        pca = httpx.get(f"{running.api}/map", params={"method": "pca"}, timeout=60).json()
    assert result["method"] == "tsne" and result["saved"] and result["seconds"] == saved.seconds
    np.testing.assert_array_equal(np.column_stack([result["x"], result["y"]]), saved.coordinates)
    assert pca["method"] == "pca" and not pca["saved"]


def test_a_large_collection_shows_pca_until_its_map_is_saved(tmp_path):
    vectors = np.random.default_rng(0).normal(size=(TSNE_ON_REQUEST + 1, 8)).astype(np.float32)
    with start_in_thread(lk.create(vectors, model=None, verbose=False), thumbnail_dir=tmp_path) as running:
        result = httpx.get(f"{running.api}/map", params={"limit": 100}, timeout=60).json()
    assert result["method"] == "pca" and len(result["explained_variance"]) == 2
    assert f"a t-SNE map of {TSNE_ON_REQUEST + 1:,} references takes minutes" in result["note"]
    assert "lookalike map MODEL" in result["note"]
    assert result["total"] == TSNE_ON_REQUEST + 1 and len(result["index"]) == 100 and result["clusters"] == 50


# ---------------------------------------------------------------------------------------------- security


def test_only_indexed_images_are_served(api, server):
    for path in [
        "/references/..%2F..%2F..%2Fetc%2Fpasswd/thumbnail",
        "/references/0%2F..%2F..%2Fetc%2Fpasswd/thumbnail",
        "/thumbnail?path=/etc/passwd",
        "/references/lookup/thumbnail?label=/etc/passwd",
    ]:
        response = api.get(path)
        assert response.status_code in (404, 405, 422), path
        assert b"root:" not in response.content
    static = httpx.get(server.url + "static/..%2F..%2F..%2F..%2Fetc%2Fpasswd")
    assert static.status_code == 404 and b"root:" not in static.content


def test_security_headers_and_no_cors_unless_asked(api, small_server):
    response = api.get("/health", headers={"Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in response.headers
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "default-src 'self'" in response.headers["content-security-policy"]
    allowed = small_server.get("/health", headers={"Origin": "http://example.org"})
    assert allowed.headers["access-control-allow-origin"] == "http://example.org"
    other = small_server.get("/health", headers={"Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in other.headers


def test_cross_origin_posts_are_refused(small_server):
    # A page on any site may send a form to the server without asking it first: only its Origin header tells.
    photo = SAMPLE_PHOTOS[0].read_bytes()
    own = f"{small_server.base_url.scheme}://{small_server.base_url.netloc.decode()}"

    def post(origin: str | None) -> httpx.Response:
        headers = {"Origin": origin} if origin else {}
        return small_server.post("/query?k=1", files={"image": ("p.jpg", photo, "image/jpeg")}, headers=headers)

    refused = post("http://evil.example")
    assert refused.status_code == 403 and "http://evil.example" in refused.json()["detail"]
    assert post("null").status_code == 403  # a sandboxed page or a local file
    assert post(own).status_code == 200  # the explorer's own page
    assert post("http://example.org").status_code == 200  # allowed by cors=
    assert post(None).status_code == 200  # not a browser: curl, scripts
    # Reads stay answerable: the browser itself keeps their answers from another origin's page.
    assert small_server.get("/health", headers={"Origin": "http://evil.example"}).status_code == 200


def test_foreign_host_headers_are_refused(api):
    # A page on another site cannot talk to the loopback server through a DNS name it controls.
    assert api.get("/health", headers={"Host": "evil.example"}).status_code == 400
    assert api.get("/health", headers={"Host": "localhost"}).status_code == 200


def test_bearer_token(saved_model, tmp_path):
    with start_in_thread(lk.load_model(saved_model), token="s3cret", thumbnail_dir=tmp_path) as running:
        assert running.url.endswith("/#token=s3cret")
        anonymous = httpx.get(running.api + "/health")
        assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"] == "Bearer"
        assert "bearer token" in anonymous.json()["detail"]
        wrong = httpx.get(running.api + "/health", headers={"Authorization": "Bearer guess"})
        assert wrong.status_code == 401
        good = httpx.get(running.api + "/references/0/thumbnail", headers={"Authorization": "Bearer s3cret"})
        assert good.status_code == 200
        assert httpx.get(running.url.split("#")[0]).status_code == 200  # the page itself holds no data


def test_binding_beyond_loopback_needs_a_token():
    check_bind("127.0.0.1", None)
    check_bind("localhost", None)
    check_bind("0.0.0.0", "t")
    with pytest.raises(ValueError, match="--token"):
        check_bind("0.0.0.0", None)
    with pytest.raises(ValueError, match="--token"):
        check_bind("192.168.1.20", None)


def test_errors_are_short_json_without_tracebacks(api):
    for response in [api.get("/references/999"), api.get("/references/x"), upload(api, b"GIF89a")]:
        assert 400 <= response.status_code < 500
        detail = response.json()["detail"]
        assert isinstance(detail, str) and "Traceback" not in detail and 'File "' not in detail


# ---------------------------------------------------------------------------------------------- openapi, CLI, explore


def test_openapi_documents_every_route(api):
    spec = api.get("/openapi.json").json()
    assert set(spec["paths"]) >= {
        "/api/health",
        "/api/summary",
        "/api/references",
        "/api/references/{index}",
        "/api/references/{index}/thumbnail",
        "/api/references/{index}/neighbours",
        "/api/query",
        "/api/duplicates",
        "/api/map",
    }
    assert "multipart/form-data" in spec["paths"]["/api/query"]["post"]["requestBody"]["content"]


def test_cli_serve_starts_and_answers(saved_model, lookalike_cache):
    with cli_server(saved_model) as (_, url):
        assert url.startswith("http://127.0.0.1:")
        assert httpx.get(url + "api/health", timeout=30).json() == {"status": "ok", "references": 80}


def test_cli_serve_refuses_other_hosts_without_token(saved_model):
    done = subprocess.run(
        [sys.executable, "-m", "lookalike.cli", "serve", str(saved_model), "--host", "0.0.0.0"],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k != "LOOKALIKE_TOKEN"},
    )
    assert done.returncode == 1
    assert "refusing to serve on 0.0.0.0 without a token" in done.stderr
    assert "Traceback" not in done.stderr


def test_explore_serves_in_the_background_and_opens_the_page(sample_model, monkeypatch):
    opened = []
    # The desktop browser is the one thing not started here; the page it would get is fetched instead.
    monkeypatch.setattr(webbrowser, "open", lambda url, *a, **k: opened.append(url) or True)
    running = sample_model.explore()
    try:
        assert opened == [running.url] and running.url.startswith("http://127.0.0.1:")
        page = httpx.get(running.url)
        assert page.status_code == 200 and "lookalike" in page.text
        assert httpx.get(running.api + "/health").json()["references"] == 80
    finally:
        running.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(running.api + "/health")
