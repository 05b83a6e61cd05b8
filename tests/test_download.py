"""Downloading image URLs from a real HTTP server on 127.0.0.1: good images, and every way a download goes wrong.

Every bad URL must end in the failure report with the right reason, every good
one in the index, the run must finish (each test runs under a hang guard), and
a re-run must not download again what it already has.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import lookalike as lk
from conftest import SAMPLES
from imageserver import ImageServer
from lookalike.ingest.download import DownloadCache, DownloadSettings, download

PHOTOS = sorted(SAMPLES.rglob("*.jpg"))
#: Short limits so the failure routes fail fast; the drip (a byte a second) never trips the read timeout.
FAST = {
    "connect_timeout": 5.0,
    "read_timeout": 10.0,
    "deadline": 3.0,
    "retries": 2,
    "backoff": 0.05,
    "max_backoff": 0.2,
    "max_bytes": 1_000_000,
    "concurrency": 8,
    "max_redirects": 3,
}
HANG_GUARD = 120  # seconds: far above what any run here needs, far below "forever"


def finishes(function, *args, **kwargs):
    """Run ``function`` in a thread and fail the test, instead of hanging it, if it does not return in time."""
    outcome: dict = {}

    def run():
        try:
            outcome["value"] = function(*args, **kwargs)
        except BaseException as exc:  # re-raised below, in the test's thread
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(HANG_GUARD)
    assert not thread.is_alive(), f"{function.__name__} still running after {HANG_GUARD} s: it hangs"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def photo_bytes(count: int) -> dict[str, bytes]:
    return {f"photo{i}.jpg": PHOTOS[i * 7].read_bytes() for i in range(count)}


@pytest.fixture
def server():
    files = photo_bytes(6)
    first = files["photo0.jpg"]
    files.update(
        {
            "page.jpg": b"<!DOCTYPE html><html><head><title>Not found</title></head><body>gone</body></html>",
            "notes.jpg": b"just some text, not a photo\n" * 10,
            "half.jpg": first[: len(first) // 2],  # served whole: a truncated JPEG file
            "empty.jpg": b"",
        }
    )
    with ImageServer(files, flaky_failures=1) as running:
        yield running


#: id -> (route, the failure kind expected, or None for an image that must be indexed)
CASES = {
    "001": ("img/photo0.jpg", None),
    "002": ("img/photo1.jpg", None),
    "003": ("img/photo2.jpg", None),
    "004": ("redirect/photo3.jpg", None),
    "005": ("flaky/photo4.jpg", None),
    "006": ("img/photo5.jpg", None),
    "007": ("status/404", "HTTP 404"),
    "008": ("status/503", "HTTP 503"),
    "009": ("drip", "timeout"),
    "010": ("drip-headers", "timeout"),
    "011": ("endless", "too large"),
    "012": ("huge-declared", "too large"),
    "013": ("loop", "too many redirects"),
    "014": ("to-file", "bad URL"),
    "015": ("reset", "connection failed"),
    "016": ("img/page.jpg", "not an image"),
    "017": ("img/notes.jpg", "not an image"),
    "018": ("cut/photo0.jpg", "truncated"),
    "019": ("img/half.jpg", "truncated"),
    "020": ("img/empty.jpg", "empty"),
}
GOOD = sorted(i for i, (_, kind) in CASES.items() if kind is None)


def write_csv(path: Path, server: ImageServer, cases: dict = CASES) -> Path:
    pd.DataFrame({"id": list(cases), "url": [server.url(route) for route, _ in cases.values()]}).to_csv(
        path, index=False
    )
    return path


def test_index_a_csv_of_urls_every_bad_one_reported_with_its_reason(tmp_path, server):
    table = write_csv(tmp_path / "urls.csv", server)
    model = finishes(lk.create, str(table), label="id", feature="url", download=FAST, verbose=False)

    assert sorted(model.labels.tolist()) == GOOD  # ids read as text: "001", not 1
    failures = model.failures
    assert list(failures.columns) == ["id", "source", "kind", "reason"]
    assert sorted(failures["id"]) == sorted(set(CASES) - set(GOOD))
    for row in failures.itertuples():
        route, expected = CASES[row.id]
        assert row.source == server.url(route)
        assert row.kind == expected, (route, row.reason)
    reasons = dict(zip(failures["id"], failures["reason"], strict=True))
    assert reasons["016"] == "not an image (an HTML page)"  # sniffed from the bytes, whatever the Content-Type
    assert reasons["008"].endswith("after 3 tries")  # 503 is transient: retried, then given up
    assert server.hits["/status/503"] == 3 and server.hits["/status/404"] == 1  # 404 is final: asked once
    assert server.hits["/flaky/photo4.jpg"] == 2  # the 500 was retried and the second try got the image
    assert server.hits["/loop"] == FAST["max_redirects"] + 1  # the first request and each redirect followed

    # The downloaded bytes are the photos themselves: their embeddings match the local files'.
    served = {"001": 0, "002": 7, "003": 14, "004": 21, "005": 28, "006": 35}
    local = model.extract_features([str(PHOTOS[served[i]]) for i in GOOD], verbose=False)
    downloaded = model.embeddings[[model.labels.tolist().index(i) for i in GOOD]]
    np.testing.assert_allclose(downloaded, local, rtol=1e-5, atol=1e-5)
    assert model.build_stats["downloaded"] == len(GOOD) + 1  # and half.jpg: it arrives whole, only decoding fails

    # A re-run fetches no image again; the failures are tried again (a server may have been fixed).
    before = {path: n for path, n in server.hits.items() if not path.startswith(("/status", "/drip", "/endless"))}
    again = finishes(lk.create, str(table), label="id", feature="url", download=FAST, verbose=False)
    assert sorted(again.labels.tolist()) == GOOD
    assert again.build_stats["downloads_cached"] == len(GOOD) + 1 and again.build_stats["downloaded"] == 0
    for path in ("/img/photo0.jpg", "/redirect/photo3.jpg", "/flaky/photo4.jpg", "/img/photo5.jpg"):
        assert server.hits[path] == before[path], path
    assert server.hits["/status/404"] == 2
    pd.testing.assert_frame_equal(again.failures.sort_values("id"), failures.sort_values("id"))


def test_load_images_of_urls_gives_ids_and_headers(tmp_path, server):
    cases = {k: CASES[k] for k in ("001", "004", "007", "016")}
    found = finishes(lk.load_images, str(write_csv(tmp_path / "u.csv", server, cases)), label="id", download=FAST)
    assert found["id"].tolist() == ["001", "004"]
    assert found["format"].tolist() == ["JPEG", "JPEG"]
    assert found["width"].min() > 100
    assert [(f["id"], f["kind"]) for f in found.attrs["failures"]] == [
        ("007", "HTTP 404"),
        ("016", "not an image"),
    ]


def test_download_twice_in_parallel_same_urls_both_complete_and_no_partial_files(tmp_path, server):
    urls = [server.url(f"img/photo{i}.jpg") for i in range(6)] * 2  # duplicates: fetched once, answered twice
    cache = DownloadCache(tmp_path / "downloads")
    results = []
    threads = [threading.Thread(target=lambda: results.append(download(urls, FAST, cache, False))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(HANG_GUARD)
    assert len(results) == 2
    for result in results:
        assert [r.url for r in result] == urls
        for r in result:
            assert r.path is not None and r.path.read_bytes() == server.files[r.url.rsplit("/", 1)[1]]
    assert server.hits_under("/img/") <= 12  # at most once per URL per run
    assert not list((tmp_path / "downloads").rglob("*.part"))


def test_urls_with_spaces_and_other_schemes(tmp_path, server):
    cache = DownloadCache(tmp_path / "downloads")
    url = server.url("img/photo0.jpg")
    results = download([f"  {url}\n", "ftp://example.com/a.jpg", "s3://bucket/a.jpg"], FAST, cache, False)
    assert results[0].path is not None and results[0].url == url
    assert results[1].reason == "unsupported URL scheme 'ftp' (only http and https URLs are downloaded)"
    assert results[2].kind == "bad URL"


def test_settings_are_validated():
    assert DownloadSettings.of({"deadline": 5}).deadline == 5
    with pytest.raises(ValueError, match="unknown download settings \\['timeout'\\]"):
        DownloadSettings.of({"timeout": 5})
    with pytest.raises(ValueError, match="concurrency must be a positive integer"):
        DownloadSettings(concurrency=0)
    with pytest.raises(ValueError, match="deadline must be a positive number of seconds"):
        DownloadSettings(deadline=-1)
    with pytest.raises(TypeError, match="download must be a dict or DownloadSettings"):
        DownloadSettings.of(5)


def _cli(*args: str, **popen) -> subprocess.Popen:
    # SIGINT at its default in the child, so Ctrl-C works even when this test runs in a background job.
    return subprocess.Popen(
        [sys.executable, "-m", "lookalike.cli", "index", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        **popen,
    )


def test_cli_ctrl_c_keeps_finished_downloads_then_rerun_reports_failures(tmp_path, server):
    cases = {**{k: CASES[k] for k in GOOD}, "009": CASES["009"], "007": CASES["007"]}
    table = write_csv(tmp_path / "urls.csv", server, cases)
    cache = DownloadCache()  # the session's cache folder, which the child inherits through $LOOKALIKE_CACHE
    good_files = [cache.path(server.url(cases[i][0])) for i in GOOD]
    common = [str(table), "--id-column", "id", "--url-column", "url", "-o", str(tmp_path / "urls.lookalike")]

    # Interrupted while the drip is still downloading: the finished downloads stay, no partial file does.
    process = _cli(*common, "--timeout", "600", "-q")
    waited = 0.0
    while not all(p.is_file() for p in good_files) or not server.hits["/drip"]:
        assert process.poll() is None, process.communicate()
        assert waited < HANG_GUARD, "the good downloads never finished"
        time.sleep(0.1)
        waited += 0.1
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=HANG_GUARD)
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr
    assert all(p.is_file() for p in good_files)
    assert not list(cache.root.rglob("*.part"))
    assert not (tmp_path / "urls.lookalike").exists()

    # The re-run downloads none of them again, indexes them, and reports the two failures.
    hits = server.hits_under("/img/") + server.hits_under("/redirect/") + server.hits_under("/flaky/")
    process = _cli(*common, "--timeout", "2", "--retries", "1", "--report")
    stdout, stderr = process.communicate(timeout=HANG_GUARD)
    assert process.returncode == 0, stderr
    assert server.hits_under("/img/") + server.hits_under("/redirect/") + server.hits_under("/flaky/") == hits
    assert f"indexed {len(GOOD)} images" in stdout
    assert f"skipped 2 of {len(cases)} inputs: 1 HTTP 404, 1 timeout" in stderr
    report = pd.read_csv(tmp_path / "urls.lookalike.failures.csv", dtype=str)
    assert list(report.columns) == ["id", "source", "kind", "reason"]
    assert sorted(report["id"]) == ["007", "009"]
    assert report.set_index("id").loc["009", "reason"] == "timeout (download took over 2 s)"
    assert lk.load_model(tmp_path / "urls.lookalike").labels.tolist() == GOOD


def test_cli_report_path_and_json(tmp_path, server):
    cases = {k: CASES[k] for k in ("001", "007", "016")}
    table = write_csv(tmp_path / "urls.csv", server, cases)
    report = tmp_path / "reports" / "failed.csv"
    process = _cli(str(table), "--id-column", "id", "-o", str(tmp_path / "m"), "--report", str(report), "--json")
    stdout, stderr = process.communicate(timeout=HANG_GUARD)
    assert process.returncode == 0, stderr
    assert '"report": "' + str(report) + '"' in stdout
    table = pd.read_csv(report, dtype=str)
    assert table["id"].tolist() == ["007", "016"]
    assert table["reason"].tolist() == ["HTTP 404 (Not Found)", "not an image (an HTML page)"]
    assert not [p for p in os.listdir(report.parent) if p.endswith(".part")]


def test_a_host_that_refuses_connections_is_given_up_after_a_few(tmp_path):
    import socket

    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    urls = [f"http://127.0.0.1:{port}/image-{i}.jpg" for i in range(200)]
    results = download(urls, settings={"retries": 3, "backoff": 0.05}, cache=DownloadCache(tmp_path), verbose=False)
    assert [r.kind for r in results] == ["connection failed"] * 200
    tried = [r for r in results if "not tried" not in r.reason]
    # Only the first wave (16 downloads in flight) met the refusals; every later URL was not tried at all.
    assert len(tried) <= DownloadSettings().concurrency, [r.reason for r in tried[:3]]
    assert all("refused 3 connections in a row" in r.reason for r in results if r not in tried)
