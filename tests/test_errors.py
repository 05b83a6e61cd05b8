"""Errors with a kind, and skipped inputs whose kind is set where they failed, through to the report and the CLI.

Nothing downstream reads the English of a reason: these tests give reasons
that do not start with their kind wherever that could hide a parser.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from pyarrow import fs

import lookalike as lk
from conftest import SAMPLES, generation, reseal
from imageserver import ImageServer
from lookalike import cli
from lookalike.distributed.shards import read_shards, to_embedded, to_table
from lookalike.embed.batch import Embedded
from lookalike.errors import Failure, ImageError, InvalidArgument, LookalikeError
from lookalike.ingest.decode import load_rgb, probe
from lookalike.ingest.download import DownloadCache, download
from lookalike.ingest.report import failure_table, summarize_failures

#: bad_files' names -> the kind each one's failure must carry.
BAD_KINDS = {"zero": "empty", "truncated": "truncated", "text": "not an image", "bomb": "too large"}
SHOES = SAMPLES / "shoes"


def test_image_errors_carry_the_kind_set_where_they_are_raised(bad_files, tmp_path):
    for name, kind in BAD_KINDS.items():
        with pytest.raises(ImageError) as excinfo:
            load_rgb(bad_files[name])
        assert excinfo.value.kind == kind, excinfo.value.reason
    page = tmp_path / "page.jpg"
    page.write_bytes(b"<!DOCTYPE html><html><body>moved</body></html>")
    heic = tmp_path / "photo.jpg"
    heic.write_bytes(b"\x00\x00\x00\x18ftypheic" + bytes(64))
    for source, kind in (
        (page, "not an image"),
        (heic, "unsupported format"),
        (tmp_path / "missing.jpg", "file not found"),
        (tmp_path, "is a directory"),
        (12345, "unsupported image type"),
        (np.zeros((4, 4, 2), np.uint8), "unsupported image type"),
    ):
        with pytest.raises(ImageError) as excinfo:
            load_rgb(source)
        assert excinfo.value.kind == kind, excinfo.value.reason
    with pytest.raises(ImageError) as excinfo:
        probe(bad_files["bomb"])
    error = excinfo.value
    assert error.kind == "too large" and isinstance(error, LookalikeError) and isinstance(error, ValueError)


def test_create_records_each_kind_where_the_image_failed(bad_files, imagegen):
    folder = bad_files["zero"].parent
    imagegen.copy_sample(folder / "good.jpg", 3)
    expected = {str(bad_files[name]): kind for name, kind in BAD_KINDS.items()}
    # A folder is decoded without probing: every failure comes from the extractor.
    model = lk.create(folder, verbose=False)
    assert dict(zip(model.failures["source"], model.failures["kind"], strict=True)) == expected
    # Through load_images three fail at the header, in its table; the truncated one while decoding.
    refs = lk.load_images(folder)
    assert {f["path"]: f["kind"] for f in refs.attrs["failures"]} == {
        path: kind for path, kind in expected.items() if kind != "truncated"
    }
    via_table = lk.create(refs, verbose=False)
    assert dict(zip(via_table.failures["source"], via_table.failures["kind"], strict=True)) == expected


def test_a_404_has_the_kind_http_404_and_strict_mode_raises_it(tmp_path):
    photo = sorted(SHOES.glob("*.jpg"))[0].read_bytes()
    with ImageServer({"a.jpg": photo}) as server:
        missing = server.url("status/404")
        [result] = download([missing], {"retries": 0}, DownloadCache(tmp_path / "downloads"), verbose=False)
        with pytest.raises(ImageError) as excinfo:
            lk.load_images([server.url("img/a.jpg"), missing], ignore_failure=False, verbose=False)
    assert (result.kind, result.reason) == ("HTTP 404", "HTTP 404 (Not Found)")
    assert (excinfo.value.source, excinfo.value.kind) == (missing, "HTTP 404")


def test_the_summary_counts_kinds_not_reasons():
    table = failure_table(
        [
            Failure(0, "a.jpg", "HTTP 404", "the server answered 404 (Not Found)"),
            Failure(1, "b.jpg", "HTTP 404", "gone: HTTP 404"),
            Failure(2, "c.jpg", "timeout", "no data for 30 s"),
        ],
        with_id=False,
    )
    assert table.columns.tolist() == ["source", "kind", "reason"]
    assert summarize_failures(table, 10) == "skipped 3 of 10 inputs: 2 HTTP 404, 1 timeout"
    labelled = failure_table([Failure(4, "d.jpg", "truncated", "cut short", id="d")], with_id=True)
    assert labelled.to_dict("records") == [{"id": "d", "source": "d.jpg", "kind": "truncated", "reason": "cut short"}]


def test_a_model_saved_without_kinds_loads_with_kinds_derived_from_its_reasons(tmp_path, bad_files, imagegen):
    folder = bad_files["zero"].parent
    for i in range(2):
        imagegen.copy_sample(folder / f"good{i}.jpg", 20 * i)
    refs = lk.load_images(folder)
    refs["name"] = [Path(p).stem for p in refs["path"]]
    model = lk.create(refs, label="name", verbose=False)
    model.save(tmp_path / "m")
    failures_file = generation(tmp_path / "m") / "failures.parquet"
    # failures.parquet as lookalike wrote it before kinds: id, source, reason.
    pd.read_parquet(failures_file).drop(columns=["kind"]).to_parquet(failures_file, index=False)
    reseal(tmp_path / "m")
    assert pq.read_schema(failures_file).names == ["id", "source", "reason"]

    loaded = lk.load_model(tmp_path / "m")
    pd.testing.assert_frame_equal(loaded.failures, model.failures)
    assert summarize_failures(loaded.failures, 6) == (
        "skipped 4 of 6 inputs: 1 empty, 1 not an image, 1 too large, 1 truncated"
    )


def test_load_images_failures_survive_parquet_and_records_without_kinds_get_theirs(tmp_path, bad_files, imagegen):
    folder = bad_files["zero"].parent
    imagegen.copy_sample(folder / "good.jpg", 5)
    refs = lk.load_images(folder)
    refs.to_parquet(tmp_path / "refs.parquet")  # pandas keeps attrs in the file, as JSON
    again = pd.read_parquet(tmp_path / "refs.parquet")
    assert again.attrs["failures"] == refs.attrs["failures"]
    # As a lookalike from before kinds listed them.
    again.attrs["failures"] = [{k: v for k, v in f.items() if k != "kind"} for f in refs.attrs["failures"]]
    model = lk.create(again, verbose=False)
    expected = {str(bad_files[name]): kind for name, kind in BAD_KINDS.items()}
    assert dict(zip(model.failures["source"], model.failures["kind"], strict=True)) == expected


def test_shards_keep_kinds_and_shards_written_before_kinds_still_read(tmp_path):
    def shard(ids, paths, failure, fingerprint=None):
        headers = pd.DataFrame({"width": [5], "height": [6], "format": ["JPEG"]})
        if fingerprint is not None:
            headers["fingerprint"] = [fingerprint]
        return to_table(
            np.array(ids), paths, Embedded(np.ones((1, 4), np.float32), np.array([0]), [failure], headers), 4
        )

    new = shard([10, 11], ["a.jpg", "b.jpg"], Failure(1, "b.jpg", "truncated", "cut short"), fingerprint=-42)
    pq.write_table(new, tmp_path / "new.parquet")
    older = shard([12, 13], ["c.jpg", "d.jpg"], Failure(1, "d.jpg", "HTTP 404", "HTTP 404 (Not Found)"))
    before_facts = [c for c in older.column_names if c not in ("kind",) and c not in new.column_names[:8]]
    pq.write_table(older.drop_columns(["kind", *before_facts]), tmp_path / "old.parquet")

    embedded = to_embedded(read_shards(fs.LocalFileSystem(), str(tmp_path), 4), 4)
    assert embedded.positions.tolist() == [10, 12]
    # A shard's pixel facts are kept; one written before pixel facts existed has none (not zeros).
    assert embedded.headers["fingerprint"].tolist()[0] == -42 and pd.isna(embedded.headers["fingerprint"].tolist()[1])
    assert embedded.failures == [
        Failure(11, "b.jpg", "truncated", "cut short"),
        Failure(13, "d.jpg", "HTTP 404", "HTTP 404 (Not Found)"),
    ]


# ------------------------------------------------------------------------------------------- the CLI


@pytest.fixture(scope="module")
def saved_model(sample_model, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("errors") / "m.lookalike"
    sample_model.save(path)
    return path


def damaged_model(tmp_path: Path) -> Path:
    path = tmp_path / "damaged.lookalike"
    path.mkdir()
    (path / "manifest.json").write_text(json.dumps({"format": "lookalike-model", "format_version": 1}))
    return path


@pytest.mark.parametrize(
    "argv, message",
    [
        (lambda tmp, model: ["index", str(tmp / "nowhere"), "-o", str(tmp / "m")], "no such file or folder"),
        (lambda tmp, model: ["info", str(damaged_model(tmp))], "is damaged: missing embeddings.npy"),
        (lambda tmp, model: ["index", str(SHOES), "-o", str(tmp / "m"), "--method", "bogus"], "method must be"),
        (lambda tmp, model: ["index", str(SHOES), "-o", str(tmp / "m"), "--concurrency", "0"], "concurrency must"),
        (lambda tmp, model: ["query", str(model), "--text", "a hat"], "no text tower"),
        (lambda tmp, model: ["index", str(SHOES), "--descriptor", '{"scales": 2}'], "scales must be factors"),
        (
            lambda tmp, model: ["query", str(model), str(sorted(SHOES.glob("*.jpg"))[0]), "-k", "0"],
            "-k must be a positive integer",
        ),
        (  # nan compares false with everything: it used to run and silently return nothing
            lambda tmp, model: ["query", str(model), str(sorted(SHOES.glob("*.jpg"))[0]), "--radius", "nan"],
            "--radius must be a number (a distance in the euclidean metric), got nan",
        ),
        (
            lambda tmp, model: ["query", str(model), str(sorted(SHOES.glob("*.jpg"))[0]), "--threshold", "-1"],
            "--threshold must be a non-negative euclidean distance",
        ),
        (lambda tmp, model: ["dedup", str(model), "--threshold", "-1"], "--threshold must be a non-negative"),
    ],
)
def test_cli_user_errors_print_one_line_and_exit_1(argv, message, tmp_path, saved_model, capsys):
    assert cli.main(argv(tmp_path, saved_model)) == 1
    err = capsys.readouterr().err
    assert err.startswith("lookalike: error: ") and message in err, err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_cli_bad_choice_is_argparse_usage_error_as_before(capsys):
    with pytest.raises(SystemExit) as excinfo:
        cli.main(["index", str(SHOES), "--metric", "manhattan"])
    assert excinfo.value.code == 2 and "invalid choice: 'manhattan'" in capsys.readouterr().err


def test_cli_prints_a_bug_with_its_traceback_and_asks_for_a_report(tmp_path, saved_model, capsys):
    # No lookalike command has a known bug to trigger: this one brings its own, a TypeError as any slip raises.
    def info_with_a_bug(args):
        return len(lk.load_model(args.model).labels) + args.model

    args = cli.build_parser().parse_args(["info", str(saved_model)])
    args.run = info_with_a_bug
    assert cli.run(args) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "TypeError: unsupported operand" in err
    assert err.rstrip().splitlines()[-1].startswith("lookalike: internal error: this is a bug in lookalike")
    assert "lookalike: error:" not in err

    args.debug = True  # --debug: the exception itself, for a debugger or a bug report
    with pytest.raises(TypeError):
        cli.run(args)


def test_user_errors_are_lookalike_errors_that_keep_their_old_bases():
    with pytest.raises(InvalidArgument) as excinfo:
        lk.create(SHOES, metric="manhattan", verbose=False)
    assert isinstance(excinfo.value, ValueError) and excinfo.value.kind == "invalid argument"
    with pytest.raises(TypeError) as excinfo:
        lk.create({"a": 1}, verbose=False)
    assert isinstance(excinfo.value, LookalikeError) and excinfo.value.kind == "invalid argument"
