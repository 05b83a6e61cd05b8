"""Acting on duplicates: discard decisions, moving discarded files with an undo manifest, resuming and undoing,
the indexed folders that bound it all, two writers of one model's decisions, and judged pairs for evaluate."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest

import lookalike as lk
from conftest import SAMPLES
from lookalike.cli import main
from lookalike.dedup import moves
from lookalike.dedup.decisions import Decisions, read_saved
from lookalike.errors import InvalidArgument
from lookalike.ingest.sources import folder_roots
from lookalike.server.runner import start_in_thread
from test_dedup import digest, make_folder

PAIRS = {"p0.jpg": "sub/p0_half.jpg", "p1.jpg": "sub/p1_q30.jpg"}  # keeper -> its copy (make_folder's)


@pytest.fixture
def saved(tmp_path) -> tuple[Path, Path]:
    """(photo folder, saved model of it) with two copies in it."""
    photos = make_folder(tmp_path / "photos")
    model = lk.create(str(photos), metric="cosine", verbose=False)
    model.save(tmp_path / "model")
    return photos, tmp_path / "model"


def label_of(model: lk.ImageSimilarityModel, path: Path):
    return model.labels[[os.fspath(p) for p in model.references["path"]].index(os.fspath(path))]


def discard_copies(model: lk.ImageSimilarityModel, photos: Path) -> None:
    for keeper, copy in PAIRS.items():
        model.mark_discarded(label_of(model, photos / copy), label_of(model, photos / keeper))


def test_a_model_records_the_folders_it_was_indexed_from(tmp_path, saved):
    photos, path = saved
    assert lk.load_model(path).roots == (os.path.realpath(photos),)
    assert folder_roots([str(photos / "p0.jpg"), str(photos / "sub")]) == (str(photos), str(photos / "sub"))
    assert folder_roots(str(photos / "**" / "*.jpg")) == (str(photos),)
    assert folder_roots("https://example.com/a.jpg") == ()
    assert folder_roots(pd.DataFrame({"path": [str(photos / "p0.jpg")]})) == ()
    other = tmp_path / "more"
    other.mkdir()
    shutil.copyfile(SAMPLES / "dress" / sorted(os.listdir(SAMPLES / "dress"))[0], other / "new.jpg")
    model = lk.load_model(path)
    model.add(str(other), verbose=False)
    assert model.roots == tuple(sorted([os.path.realpath(photos), os.path.realpath(other)]))


def test_discarded_copies_are_moved_out_with_an_undo_manifest_and_undone_byte_for_byte(tmp_path, saved):
    photos, path = saved
    before = digest(photos)
    model = lk.load_model(path)
    discard_copies(model, photos)
    model.save_decisions(path)
    # A discarded file is never its group's keeper, whatever the policy says.
    dups = lk.load_model(path).find_duplicates(keep="size")
    assert not dups[dups["keeper"]]["path"].isin([str(photos / c) for c in PAIRS.values()]).any()

    report = model.apply_decisions(tmp_path / "discarded", path=path)
    assert sorted(report.moved) == sorted(str(photos / c) for c in PAIRS.values()) and report.skipped == []
    moved = digest(tmp_path / "discarded")
    assert {k: v for k, v in moved.items() if not k.startswith("lookalike-moves-")} == {
        c: before[c] for c in PAIRS.values()
    }
    assert digest(photos) == {k: v for k, v in before.items() if k not in PAIRS.values()}
    again = lk.load_model(path)
    assert len(again.labels) == len(before) - 2 and not set(PAIRS.values()) & {
        str(Path(p).relative_to(photos)) for p in again.references["path"]
    }
    assert sorted(r["moved_to"] for r in again.decisions.records) == sorted(
        str(tmp_path / "discarded" / c) for c in PAIRS.values()
    )
    pairs = again.decisions.pairs()
    assert pairs["duplicate"].all() and sorted(pairs["b"]) == sorted(str(photos / k) for k in PAIRS)

    assert main(["undo", str(report.manifest)]) == 0
    assert digest(photos) == before
    restored = lk.load_model(path)
    assert len(restored.labels) == len(before) and len(restored.decisions) == 0  # not moved again by a re-apply
    assert restored.apply_decisions(tmp_path / "discarded", path=path).moved == []


def test_moves_stay_inside_the_indexed_folders_and_out_of_them(tmp_path, saved):
    photos, path = saved
    model = lk.load_model(path)
    discard_copies(model, photos)
    with pytest.raises(InvalidArgument, match="inside the indexed folder"):
        model.apply_decisions(photos / "sub" / "discarded")
    with pytest.raises(InvalidArgument, match="holds the indexed folder"):
        model.apply_decisions(tmp_path)
    # A file changed since the decision is reported and left; a discard whose keeper is discarded too is left.
    (photos / "sub" / "p1_q30.jpg").write_bytes((photos / "sub" / "p1_q30.jpg").read_bytes() + b"\0")
    model.mark_discarded(label_of(model, photos / "p0.jpg"), label_of(model, photos / "p2.jpg"))
    with pytest.warns(RuntimeWarning, match="not applied"):
        report = model.apply_decisions(tmp_path / "discarded")
    # p0 goes (its keeper p2 stays); p0_half stays, since its keeper p0 goes: one of the two copies remains.
    assert report.moved == [str(photos / "p0.jpg")]
    assert "discarded too" in dict(report.skipped)[str(photos / "sub" / "p0_half.jpg")]
    assert (photos / "sub" / "p1_q30.jpg").exists() and (photos / "sub" / "p0_half.jpg").exists()


def test_models_of_tables_and_urls_have_no_folders_to_move_from(tmp_path, saved):
    photos, _ = saved
    table = pd.DataFrame({"path": [str(p) for p in sorted(photos.rglob("*.jpg"))]})
    model = lk.create(table, verbose=False)
    assert model.roots == ()
    model.mark_discarded(label_of(model, photos / "sub" / "p0_half.jpg"), label_of(model, photos / "p0.jpg"))
    with pytest.raises(InvalidArgument, match="came from URLs or a table"):
        model.apply_decisions(tmp_path / "discarded")
    assert (photos / "sub" / "p0_half.jpg").exists()


def test_an_apply_cut_short_is_resumed_or_rolled_back_from_its_manifest(tmp_path, saved):
    """The states a kill leaves: some files moved, one linked at its destination but not yet unlinked, some not."""
    photos, path = saved
    before = digest(photos)
    model = lk.load_model(path)
    discard_copies(model, photos)
    model.mark_discarded(label_of(model, photos / "sub" / "deeper" / "p1_crop.jpg"), label_of(model, photos / "p1.jpg"))
    model.save_decisions(path)
    planned, _ = moves.plan(model.core, model.decisions, tmp_path / "discarded")
    manifest = tmp_path / "discarded" / "lookalike-moves-cut.json"
    manifest.parent.mkdir()
    record = {"version": 1, "created": 0, "model": str(path), "roots": list(model.roots), "finished": False}
    manifest.write_text(json.dumps({**record, "moves": planned}))
    first, second = planned[0], planned[1]
    Path(first["destination"]).parent.mkdir(parents=True, exist_ok=True)
    os.rename(first["source"], first["destination"])  # moved
    Path(second["destination"]).parent.mkdir(parents=True, exist_ok=True)
    os.link(second["source"], second["destination"])  # linked, killed before the unlink

    assert main(["apply", str(path), "--resume", str(manifest)]) == 0
    assert all(not os.path.exists(m["source"]) and os.path.exists(m["destination"]) for m in planned)
    resumed = lk.load_model(path)
    assert len(resumed.labels) == len(before) - 3 and all("moved_to" in r for r in resumed.decisions.records)
    assert main(["undo", str(manifest)]) == 0
    assert digest(photos) == before and len(lk.load_model(path).labels) == len(before)


def _apply_in_a_child(path: str, destination: str) -> None:
    lk.load_model(path).apply_decisions(destination, path=path)


def test_an_apply_killed_at_any_moment_is_undone_completely(tmp_path, saved):
    photos, path = saved
    before = digest(photos)
    model = lk.load_model(path)
    discard_copies(model, photos)
    model.save_decisions(path)
    child = multiprocessing.get_context("spawn").Process(
        target=_apply_in_a_child, args=(str(path), str(tmp_path / "discarded"))
    )
    child.start()
    deadline = time.monotonic() + 60
    while not list((tmp_path / "discarded").glob("lookalike-moves-*.json")) and time.monotonic() < deadline:
        time.sleep(0.001)
    os.kill(child.pid, signal.SIGKILL)
    child.join()
    (manifest,) = (tmp_path / "discarded").glob("lookalike-moves-*.json")
    assert main(["undo", str(manifest)]) == 0
    assert digest(photos) == before
    restored = lk.load_model(path)
    assert sorted(restored.references["path"]) == sorted(str(photos / p) for p in before)  # each file once
    assert restored.find_duplicates()["path"].nunique() == 5  # both groups whole again


def _record_decisions(path: str, labels: list, start: int) -> None:
    for label in labels:
        model = lk.load_model(path)  # each writer holds its own stale copy, as a second explorer does
        file = model.references["path"][label]
        model.decisions.change_saved(path, lambda d, file=file: d.keep(file))


def test_two_writers_of_one_model_keep_each_others_decisions(saved):
    photos, path = saved
    model = lk.load_model(path)
    labels = list(model.labels)
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_record_decisions, args=(str(path), labels[i::2], i)) for i in range(2)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
        assert writer.exitcode == 0
    kept = {r["paths"][0] for r in read_saved(path).records}
    assert kept == set(model.references["path"])


def test_later_decisions_on_a_file_replace_earlier_ones_and_merge_keeps_the_latest(saved):
    photos, _ = saved
    decisions = Decisions()
    decisions.keep(photos / "p0.jpg")
    decisions.discard(photos / "p0.jpg", photos / "p1.jpg")
    assert decisions.state_of(str(photos / "p0.jpg")) == "discard" and len(decisions) == 1
    other = Decisions([dict(r) for r in decisions.records])
    other.keep(photos / "p0.jpg")
    decisions.merge(other)
    assert decisions.state_of(str(photos / "p0.jpg")) == "keep" and len(decisions) == 1
    decisions.forget(photos / "p0.jpg")
    assert decisions.state_of(str(photos / "p0.jpg")) is None
    # One judgement per pair: a discard replaces "not a duplicate", and the other way round.
    decisions.not_duplicate(photos / "p2.jpg", photos / "p3.jpg")
    decisions.discard(photos / "p3.jpg", photos / "p2.jpg")
    assert decisions.pairs()["duplicate"].tolist() == [True]
    decisions.not_duplicate(photos / "p3.jpg", photos / "p2.jpg")
    assert decisions.pairs()["duplicate"].tolist() == [False] and decisions.state_of(str(photos / "p3.jpg")) is None
    with pytest.raises(InvalidArgument, match="itself"):
        decisions.discard(photos / "p0.jpg", photos / "p0.jpg")


def test_judged_pairs_are_exported_and_scored_by_evaluate(tmp_path, saved, capsys):
    photos, path = saved
    model = lk.load_model(path)
    discard_copies(model, photos)
    model.mark_not_duplicate(label_of(model, photos / "p2.jpg"), label_of(model, photos / "p3.jpg"))
    model.mark_not_duplicate(label_of(model, photos / "p4.jpg"), label_of(model, photos / "p5.jpg"))
    model.save_decisions(path)
    assert main(["decide", str(path), "--export", str(tmp_path / "pairs.csv")]) == 0
    pairs = pd.read_csv(tmp_path / "pairs.csv")
    assert sorted(pairs["duplicate"].tolist()) == [False, False, True, True]
    capsys.readouterr()
    assert main(["evaluate", "--pairs", str(tmp_path / "pairs.csv"), "--json", "-q"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    # The copies are far closer than distinct garments: every duplicate ranks first, all linked at the default.
    assert metrics["pairs"] == 4 and metrics["average_precision"] == 1.0
    assert metrics["recall"] == 1.0 and metrics["precision"] == 1.0


def test_the_explorer_records_decisions_applies_and_undoes_them(tmp_path, saved):
    photos, path = saved
    before = digest(photos)
    running = start_in_thread(lk.load_model(path), model_path=path, move_to=tmp_path / "discarded")
    other = start_in_thread(lk.load_model(path), model_path=path)  # a second explorer on the same model
    try:
        api, api2 = running.url + "api", other.url + "api"
        groups = httpx.get(api + "/duplicates").json()["groups"]
        # p1 has more picture than its crop and is less compressed than its q30 re-save; p0 has more picture than
        # its half copy.
        assert [g["keeper_reason"].split(":")[0].split(" (")[0] for g in groups] == ["the most picture"] * 2
        assert "least degraded" in groups[0]["keeper_reason"]
        calibration = httpx.get(api + "/calibration", params={"threshold": 0.15}, timeout=120).json()
        assert calibration["recall"]["re-saved"] == 1.0 and calibration["summary"].startswith("at threshold 0.15")
        for group in groups:
            keeper = group["members"][0]["index"]
            for member in group["members"][1:]:
                body = {"action": "discard", "index": member["index"], "other": keeper}
                assert httpx.post(api + "/decisions", json=body).status_code == 200
        assert httpx.post(api2 + "/decisions", json={"action": "keep", "index": 0}).json()["decisions"] == 4
        status = httpx.get(api + "/decisions").json()
        assert status["pending_discards"] == 3 and status["can_apply"] and status["saved"]
        decided = httpx.get(api + "/duplicates").json()["groups"]
        assert [m["decision"] for g in decided for m in g["members"][1:]] == ["discard"] * 3
        assert httpx.post(api2 + "/apply", json={"confirm": True}).status_code == 409  # it has no discard folder
        assert httpx.post(api + "/apply", json={"confirm": False}).status_code == 422
        assert httpx.post(api + "/decisions", json={"action": "discard", "index": 1}).status_code == 422
        assert httpx.post(api + "/decisions", json={"action": "keep", "index": 10_000}).status_code == 404
        applied = httpx.post(api + "/apply", json={"confirm": True}).json()
        assert len(applied["moved"]) == 3 and applied["references"] == len(before) - 3
        assert httpx.get(api + "/duplicates").json()["total"] == 0
        assert len(read_saved(path)) == 4  # the other explorer's keep is still there
        assert httpx.post(api + "/undo", json={"manifest": "/etc/passwd"}).status_code == 404
        undone = httpx.post(api + "/undo", json={"manifest": applied["manifest"]}).json()
        assert undone["references"] == len(before) and digest(photos) == before
    finally:
        running.stop()
        other.stop()


def test_dedup_review_indexes_the_folder_beside_it_and_serves_the_review(tmp_path):
    photos = make_folder(tmp_path / "photos")
    command = [sys.executable, "-m", "lookalike.cli", "dedup", str(photos), "--review", "--port", "0", "-q"]
    env = {**os.environ, "BROWSER": "true"}  # no browser window from a test
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env) as process:
        try:
            line = ""
            deadline = time.monotonic() + 120
            while "explorer on" not in line and time.monotonic() < deadline:
                line = process.stdout.readline()
            url = line.split("explorer on ", 1)[1].split()[0]
            assert url.endswith("#view=duplicates")
            review = httpx.get(url.split("#")[0] + "api/duplicates").json()
            assert review["total"] == 2 and review["review"]["saved"]
            assert review["review"]["move_to"] == str(tmp_path / "photos.lookalike-discarded")
        finally:
            process.terminate()
    assert lk.load_model(tmp_path / "photos.lookalike").roots == (str(photos),)
