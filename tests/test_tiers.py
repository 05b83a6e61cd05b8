"""Tiers of sameness: exact, same-pixels, resized, edited, similar, measured on real photos and their copies."""

from __future__ import annotations

import gc
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageFilter

import lookalike as lk
from conftest import SAMPLES, generation
from lookalike.dedup.tiers import COPY_TIERS, RESIZED_PSNR, Sameness, Verdict, resized_psnr
from lookalike.ingest.decode import load_rgb

ORIGINAL = sorted((SAMPLES / "shoes").glob("*.jpg"))[0]
LOOKALIKE = sorted((SAMPLES / "shoes").glob("*.jpg"))[1]


@pytest.fixture()
def copies(tmp_path) -> Path:
    """An original, one copy of each kind, and a distinct photo of the same class."""
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copyfile(ORIGINAL, folder / "original.jpg")
    shutil.copyfile(ORIGINAL, folder / "exact.jpg")
    pixels = load_rgb(ORIGINAL)
    pixels.save(folder / "same-pixels.png")
    pixels.resize((pixels.width // 2, pixels.height // 2), Image.Resampling.LANCZOS).save(
        folder / "resized.jpg", quality=85
    )
    w, h = pixels.size
    pixels.crop((w // 8, h // 10, w - w // 5, h - h // 6)).save(folder / "edited.jpg", quality=90)
    shutil.copyfile(LOOKALIKE, folder / "lookalike.jpg")
    return folder


def test_each_kind_of_copy_gets_its_tier(copies):
    sameness = Sameness(edits=True)
    original = str(copies / "original.jpg")
    found = {name: sameness.tier(original, str(copies / name)) for name in os.listdir(copies)}
    assert found == {
        "original.jpg": "exact",
        "exact.jpg": "exact",
        "same-pixels.png": "same-pixels",
        "resized.jpg": "resized",
        "edited.jpg": "edited",
        "lookalike.jpg": "similar",
    }
    no_edits = Sameness(edits=False).verdict(original, str(copies / "edited.jpg"))  # without OpenCV, no edited
    assert no_edits.tier == "similar" and "pip install 'lookalike[verify]'" in no_edits.reason
    assert sameness.tier(None, original) == "similar"  # no file, no pixels
    assert (
        resized_psnr(load_rgb(ORIGINAL), load_rgb(LOOKALIKE))
        < RESIZED_PSNR
        <= resized_psnr(load_rgb(ORIGINAL), load_rgb(copies / "resized.jpg"))
    )


def test_dedup_labels_rows_with_tiers_and_acts_only_on_copies(copies, tmp_path, lookalike_cache):
    model = lk.create(copies, metric="cosine", verbose=False)
    groups = model.find_duplicates(threshold=0.6)
    tiers = dict(zip(groups["path"].map(lambda p: Path(p).name), groups["tier"], strict=True))
    keeper = groups[groups["keeper"]]["path"].map(lambda p: Path(p).name).tolist()
    # Three files with the same pixels tie on resolution: the original (the earliest written) is kept, not the PNG.
    assert keeper == ["original.jpg"] and tiers["original.jpg"] == "exact"  # the group's strongest
    assert tiers["exact.jpg"] == "exact" and tiers["same-pixels.png"] == "same-pixels"
    assert tiers["resized.jpg"] == "resized"
    assert tiers["edited.jpg"] == "edited" and tiers["lookalike.jpg"] == "similar"
    actions = dict(zip(groups["path"].map(lambda p: Path(p).name), groups["action"], strict=True))
    assert (
        actions["lookalike.jpg"] == "none" and groups.loc[groups["tier"] == "similar", "similar_to_group"].notna().all()
    )
    only_copies = model.find_duplicates(threshold=0.6, tiers=COPY_TIERS)
    assert set(only_copies["tier"][~only_copies["keeper"]]) <= set(COPY_TIERS)
    with pytest.raises(ValueError, match="tiers must be some of"):
        model.find_duplicates(tiers="copies")

    moved = tmp_path / "moved"
    command = [sys.executable, "-m", "lookalike.cli", "dedup", str(copies), "--threshold", "0.6", "--metric", "cosine"]
    command.append("-q")  # the threshold is the model's above: cosine (a folder's default metric is euclidean)
    listed = subprocess.run([*command, "--json"], capture_output=True, text=True, timeout=300)
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert all(row["tier"] in ("exact", "same-pixels", "resized", "edited", "similar") for row in rows)
    done = subprocess.run([*command, "--move-to", str(moved)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    moved_names = {p.name for p in moved.rglob("*") if p.is_file() and not p.name.startswith("lookalike-moves-")}
    copies_found = {Path(r["path"]).name for r in rows if not r["keeper"] and r["tier"] in COPY_TIERS}
    assert moved_names == copies_found and "edited.jpg" in copies_found  # an edited copy is a copy
    assert (copies / "lookalike.jpg").exists()  # a similar one never is, by default


def test_calibration_measures_copies_of_the_collection_and_false_links(lookalike_cache, sample_model):
    model = lk.create(SAMPLES, metric="cosine", verbose=False)
    calibration = model.calibrate_duplicates(sample=12)
    table = calibration.table()
    recalls = [c for c in table.columns if c.startswith("recall ")]
    gentle = ["re-saved", "resized", "cropped", "mirrored", "overlaid"]
    assert recalls == [f"recall {kind}" for kind in [*gentle, "heavy crop", "rotated", "pasted"]]
    for column in [*recalls, "look-alikes per pair", "false links per pair"]:  # more found and listed as it grows
        assert table[column].is_monotonic_increasing
    # The grid reaches the farthest copy: every copy the pixels confirm is found there (the gentle kinds all are).
    assert table[[f"recall {kind}" for kind in gentle]].iloc[-1].tolist() == [1.0] * 5
    assert (table["false links per pair"] == 0).all()  # 80 distinct garments: no pair is taken for a copy
    assert len(calibration.pair_distances) == 80 * 79 // 2  # a small collection: every pair measured
    at_zero = calibration.at(0.0)
    assert at_zero["look-alikes per pair"] == 0.0 and at_zero["recall heavy crop"] == 0.0
    # Found by their fingerprints (a crop by its original's centre window), wherever their embeddings lie.
    assert at_zero["recall re-saved"] == 1.0 and at_zero["recall cropped"] >= 0.9
    assert "copies of 12 of these photos" in calibration.summary(0.15) and "no false copies" in calibration.summary(
        0.15
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "lookalike.cli",
            "dedup",
            str(SAMPLES),
            "--calibrate",
            "--json",
            "-q",
            "--metric",
            "cosine",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    table_json, summary = done.stdout.strip().splitlines()
    assert len(json.loads(table_json)) == 20 and summary.startswith("at threshold 0.15: finds ")


def test_decisions_stick_across_save_reindex_and_a_change_of_network(copies, tmp_path, lookalike_cache):
    model = lk.create(copies, metric="cosine", verbose=False)
    names = lambda table: [Path(p).name for p in table["path"]]  # noqa: E731
    groups = model.find_duplicates(threshold=0.6)
    assert names(groups)[0] == "original.jpg"  # the policy's keeper
    label_of = {Path(p).name: label for label, p in zip(model.labels, model.references["path"], strict=True)}
    model.mark_keeper(label_of["resized.jpg"])
    model.mark_not_duplicate(label_of["lookalike.jpg"], label_of["same-pixels.png"])
    after = model.find_duplicates(threshold=0.6)
    assert names(after)[0] == "resized.jpg" and after["keeper"].iloc[0]
    # A pair a person says are not copies is never linked: the crop, kept apart from every other file, leaves.
    for other in ("original.jpg", "exact.jpg", "same-pixels.png", "resized.jpg"):
        model.mark_not_duplicate(label_of["edited.jpg"], label_of[other])
    assert "edited.jpg" not in names(model.find_duplicates(threshold=0.6))
    path = tmp_path / "m.lookalike"
    model.save(path)
    before = generation(path)
    model.mark_not_duplicate(label_of["lookalike.jpg"], label_of["edited.jpg"])
    model.save_decisions(path)  # on its own: no new generation, the embeddings untouched
    assert generation(path) == before
    loaded = lk.load_model(path)
    assert len(loaded.decisions) == 7
    pd.testing.assert_frame_equal(loaded.find_duplicates(threshold=0.6), model.find_duplicates(threshold=0.6))
    # A re-index with another network, saved over the model: the decisions, kept by file, still apply.
    other = lk.create(copies, model="squeezenet_v1.1", metric="cosine", verbose=False)
    other.save(path)
    again = lk.load_model(path)
    assert again.model_name == "squeezenet_v1.1" and len(again.decisions) == 7
    assert names(again.find_duplicates(threshold=0.6))[0] == "resized.jpg"
    # A file changed since: its decision is reported, not applied.
    load_rgb(copies / "resized.jpg").save(copies / "resized.jpg", quality=50)
    with pytest.warns(RuntimeWarning, match="2 duplicate decisions are not applied"):  # its keep, its not-copy
        assert names(lk.load_model(path).find_duplicates(threshold=0.6))[0] != "resized.jpg"


def test_decisions_recorded_from_the_cli_are_honoured_by_dedup(copies, tmp_path, lookalike_cache):
    saved = tmp_path / "m.lookalike"
    model = lk.create(copies, metric="cosine", verbose=False)
    model.save(saved)
    label_of = {Path(p).name: str(label) for label, p in zip(model.labels, model.references["path"], strict=True)}
    cli = [sys.executable, "-m", "lookalike.cli"]
    done = subprocess.run(
        [*cli, "decide", str(saved), "--keep", label_of["resized.jpg"]], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0 and "1 decisions" in done.stdout, done.stderr
    listed = subprocess.run(
        [*cli, "dedup", str(saved), "--threshold", "0.6", "--json", "-q"], capture_output=True, text=True, timeout=300
    )
    rows = json.loads(listed.stdout)
    assert [Path(r["path"]).name for r in rows if r["keeper"]] == ["resized.jpg"]
    refused = subprocess.run([*cli, "decide", str(saved)], capture_output=True, text=True, timeout=300)
    assert refused.returncode == 1 and "nothing to record" in refused.stderr


@pytest.mark.needs_shared
def test_another_capture_of_one_scene_is_told_from_a_look_alike(needs_shared):
    # What an audit calls a near-copy leak: two visits to one building laid on each other by their local features
    # (not copies: much of the picture changed) are the same scene; garments photographed alike on one hanger, which
    # lie as close in embedding (the clothing benchmark's near-copy pairs), are not.
    buildings, clothing = needs_shared / "landmarks", needs_shared / "clothing"
    judge = Sameness()
    for a, b in (
        ("christ_church/christ_church_000179.jpg", "christ_church/christ_church_001001.jpg"),
        ("balliol/balliol_000156.jpg", "balliol/balliol_000161.jpg"),
    ):
        verdict = judge.verdict(str(buildings / a), str(buildings / b))
        assert verdict.tier == "similar" and verdict.aligned and verdict.same_scene, (a, b, verdict)
    for a, b in (
        (
            "validation/pants/17bebe65-17cc-42b3-885f-4e6c64a16f26.jpg",
            "train/pants/8c098167-44ea-4d37-86a9-5f5ad67aaddc.jpg",
        ),
        (
            "validation/t-shirt/164900f8-4d29-454b-97ba-5d7d22f5cfe2.jpg",
            "train/t-shirt/0fc3fbae-1ce6-47c3-b183-0d12bf11914f.jpg",
        ),
        # Two other jeans on that hanger, before the same socket: those fixtures alone must not lay them on it.
        (
            "validation/pants/17bebe65-17cc-42b3-885f-4e6c64a16f26.jpg",
            "train/pants/59ef7298-1528-4dfd-bacd-2d7d7786805d.jpg",
        ),
        (
            "validation/pants/17bebe65-17cc-42b3-885f-4e6c64a16f26.jpg",
            "train/pants/7a6e7ddb-ac03-4d78-9d71-75320e5913da.jpg",
        ),
    ):
        verdict = judge.verdict(str(clothing / a), str(clothing / b))
        assert not verdict.same_scene, (a, b, verdict)


def test_two_garments_laid_out_alike_are_not_copies_at_camera_size(needs_shared, tmp_path):
    # Two T-shirts photographed alike on one red cloth: at 3,000 px their fingerprints match (their layout of light
    # and dark), the shirts' tones map onto each other, and one's print passed for a mark added to the other.
    for name, photo in (
        ("a", "train/t-shirt/2bc86809-3b2e-484b-b623-4c5ca81cc606.jpg"),
        ("b", "validation/t-shirt/164900f8-4d29-454b-97ba-5d7d22f5cfe2.jpg"),
    ):
        pixels = load_rgb(needs_shared / "clothing" / photo)
        scale = 3000 / max(pixels.size)
        size = (round(pixels.width * scale), round(pixels.height * scale))
        pixels.resize(size, Image.Resampling.BICUBIC).save(tmp_path / f"{name}.jpg", quality=92)
    verdict = Sameness(edits=True).verdict(str(tmp_path / "a.jpg"), str(tmp_path / "b.jpg"))
    assert not verdict.is_copy and not verdict.same_scene, verdict


def test_a_thumbnail_of_part_of_a_photo_is_that_photo_edited(tmp_path):
    # Neardup's hardest crops: a third of a photo, shrunk to a thumbnail of about 100 px and saved at JPEG quality 40.
    # At that size ORB finds keypoints only in the thumbnail's middle unless it is enlarged first.
    found = []
    for kind in sorted(p for p in SAMPLES.iterdir() if p.is_dir()):
        for photo in sorted(kind.glob("*.jpg"))[:3]:
            pixels = load_rgb(photo)
            w, h = pixels.size
            part = pixels.crop((w // 5, h // 4, w * 3 // 4, h * 4 // 5))
            thumbnail = part.resize((part.width * 2 // 5, part.height * 2 // 5), Image.Resampling.LANCZOS)
            assert max(thumbnail.size) < 160
            thumbnail.save(tmp_path / f"{kind.name}-{photo.name}", quality=40)
            found.append(Sameness(edits=True).tier(str(photo), str(tmp_path / f"{kind.name}-{photo.name}")))
    assert len(found) == 30 and "resized" not in found
    assert found.count("edited") >= 24, found


def test_a_photo_shrunk_onto_a_plain_canvas_is_that_photo_and_is_never_kept_over_it(tmp_path):
    # A photo shrunk to a third (or a camera photo to a 1,080 px square) and padded with white or a blurred fill, as
    # "no crop" apps post it, lies wholly within the photo's scene at a third of its resolution: it was taken for a closer capture of
    # its canvas's "scene" (another capture), and its copies were missed.
    originals = []
    for kind in sorted(p for p in SAMPLES.iterdir() if p.is_dir())[:6]:
        folder = tmp_path / kind.name
        folder.mkdir()
        pixels = load_rgb(sorted(kind.glob("*.jpg"))[0])
        scale = 3000 / max(pixels.size)
        photo = pixels.resize((round(pixels.width * scale), round(pixels.height * scale)), Image.Resampling.BICUBIC)
        photo.save(folder / "photo.jpg", quality=92)
        os.utime(folder / "photo.jpg", (1.6e9, 1.6e9))
        originals.append(str(folder / "photo.jpg"))
        third = photo.resize((photo.width // 3, photo.height // 3), Image.Resampling.LANCZOS)
        padded = Image.new("RGB", (third.width + 160, third.height + 160), (255, 255, 255))
        padded.paste(third, (80, 80))
        padded.save(folder / "padded third.jpg", quality=85)
        square = Image.new("RGB", (1080, 1080), (255, 255, 255))
        inside = photo.copy()
        inside.thumbnail((1000, 1000), Image.Resampling.LANCZOS)
        square.paste(inside, ((1080 - inside.width) // 2, (1080 - inside.height) // 2))
        square.save(folder / "square.jpg", quality=85)
        # The same square filled with the photo's own blurred enlargement, as "no crop" apps pad it: fill, not scene.
        blurred = photo.resize((1080, 1080)).filter(ImageFilter.GaussianBlur(30))
        blurred.paste(inside, ((1080 - inside.width) // 2, (1080 - inside.height) // 2))
        blurred.save(folder / "blurred square.jpg", quality=85)
    judge = Sameness(edits=True)
    for original in originals:
        for copy in ("padded third.jpg", "square.jpg"):
            verdict = judge.verdict(original, str(Path(original).parent / copy))
            assert verdict.tier == "edited", (original, copy, verdict)
    # A garment alone on white keeps few local features once its backdrop is a blur (a hat: none that align).
    blurred = [judge.tier(original, str(Path(original).parent / "blurred square.jpg")) for original in originals]
    assert blurred.count("edited") >= 4, blurred
    dups = lk.create(str(tmp_path), verbose=False).find_duplicates()
    assert sorted(dups.loc[dups["keeper"], "path"]) == originals, dups[["path", "keeper", "tier", "reason"]]


def _verdicts_on_copies(root: Path, edit: Callable[[Image.Image], Image.Image], quality: int) -> list[Verdict]:
    """The verdict on each of 30 sample photos (3 of each class) beside its copy made by ``edit`` (saved at JPEG
    ``quality`` under ``root``)."""
    judge = Sameness(edits=True)
    found = []
    for kind in sorted(p for p in SAMPLES.iterdir() if p.is_dir()):
        for photo in sorted(kind.glob("*.jpg"))[:3]:
            copy = root / f"{kind.name}-{photo.name}"
            edit(load_rgb(photo)).save(copy, quality=quality)
            found.append(judge.verdict(str(photo), str(copy)))
    return found


def _meme(picture: Image.Image) -> Image.Image:
    """``picture`` with black caption bars over its top and bottom eighths, text on them."""
    from PIL import ImageDraw

    w, h = picture.size
    draw = ImageDraw.Draw(picture)
    draw.rectangle((0, 0, w, h // 8), fill="black")
    draw.rectangle((0, h - h // 8, w, h), fill="black")
    draw.text((w // 4, h // 32), "WHEN THE CODE WORKS", fill="white")
    draw.text((w // 4, h - h // 10), "THE FIRST TIME", fill="white")
    return picture


def test_a_photo_with_a_caption_above_and_below_is_that_photo_edited(tmp_path):
    # A meme: black bars with text over the top and bottom eighths. Each bar is a mark; with one set aside the other
    # was 12 % of the picture changed, "another capture" (29 of these 30 photos).
    found = [verdict.tier for verdict in _verdicts_on_copies(tmp_path, _meme, 85)]
    # A hat alone on white has too few local features left between the bars to lay the two on each other.
    assert len(found) == 30 and found.count("edited") >= 27, found


def _vignetted(picture: Image.Image) -> Image.Image:
    """``picture`` darkened towards its corners, to about half at each corner, as photo apps shade them."""
    w, h = picture.size
    rows, columns = np.ogrid[:h, :w]
    distance = np.hypot((columns + 0.5) / w * 2 - 1, (rows + 0.5) / h * 2 - 1)
    gain = 1 - 0.45 * np.clip(distance - 0.4, 0, None) ** 1.5
    return Image.fromarray((np.asarray(picture) * gain[..., None]).astype(np.uint8))


def _warm_filtered(picture: Image.Image) -> Image.Image:
    """A phone app's filter: more contrast and colour, warmer, then shaded towards the corners."""
    from PIL import ImageEnhance

    vivid = ImageEnhance.Color(ImageEnhance.Contrast(picture).enhance(1.2)).enhance(1.3)
    red, green, blue = vivid.split()
    warm = Image.merge(
        "RGB", (red.point(lambda v: min(255, int(v * 1.12))), green, blue.point(lambda v: int(v * 0.85)))
    )
    return _vignetted(warm)


def test_a_photo_shaded_towards_its_corners_is_that_photo_edited(tmp_path):
    # A vignette darkens the corners by up to a half: no tone mapping of the whole picture explains it, and the
    # shaded copy was "another capture" in 13 of these 30 photos (with a phone app's filter, 9). The shading,
    # a gain that depends on the distance from the picture's centre alone, is undone before the pixels are compared.
    for name, edit in (("vignette", _vignetted), ("filter", _warm_filtered)):
        (tmp_path / name).mkdir()
        verdicts = _verdicts_on_copies(tmp_path / name, edit, 88)
        found = [verdict.tier for verdict in verdicts]
        assert len(found) == 30 and found.count("edited") >= 27, (name, found)
        assert any("shaded towards the corners" in verdict.reason for verdict in verdicts), verdicts


def _reshaped(picture: Image.Image) -> Image.Image:
    """``picture`` cropped, then resized to two thirds of its width and of the crop's height."""
    w, h = picture.size
    cropped = picture.crop((w // 20, 0, w - w // 20, h - h // 12))
    return cropped.resize((w * 2 // 3, cropped.height * 2 // 3))


def test_a_crop_resized_to_another_shape_is_that_photo_edited(tmp_path):
    # Cropped, then resized to a size of another shape (a thumbnail of fixed size): its sides are scaled by 0.74 and
    # 0.67. Laid on the photo by one scale, it was "another capture" (in 29 of these 30 photos); each side may now
    # be scaled by its own factor, where that explains nearly all that differs.
    verdicts = _verdicts_on_copies(tmp_path, _reshaped, 60)
    found = [verdict.tier for verdict in verdicts]
    assert len(found) == 30 and found.count("edited") >= 27, found
    assert sum("resized to another shape" in verdict.reason for verdict in verdicts) >= 27, verdicts


def test_neardup_crops_are_their_originals_edited(needs_shared):
    groups = sorted((needs_shared / "neardup").iterdir())[:80]
    judge = Sameness(edits=True)
    tiers = [judge.tier(str(group / "original.jpg"), str(group / "crop.jpg")) for group in groups]
    assert "resized" not in tiers and tiers.count("edited") >= 0.9 * len(groups), tiers


def test_copies_of_camera_sized_photos_keep_their_tiers_though_read_reduced(tmp_path):
    # A camera's photo is read reduced (JPEG draft) for the tier checks, each file by the largest power of two that
    # keeps it above DECODE_SIDE: a 3,000 x 2,250 photo at a quarter, its crop of 2,520 x 1,890 at a half.
    found = {}
    for kind in ("shoes", "pants", "shirt"):
        pixels = load_rgb(sorted((SAMPLES / kind).glob("*.jpg"))[0])
        scale = 3000 / max(pixels.size)
        photo = pixels.resize((round(pixels.width * scale), round(pixels.height * scale)), Image.Resampling.BICUBIC)
        photo.save(tmp_path / f"{kind}.jpg", quality=92)
        whole = load_rgb(tmp_path / f"{kind}.jpg")
        whole.save(tmp_path / f"{kind}-resaved.png")  # the same pixels, in a format with no reduced reading
        w, h = whole.size
        whole.crop((w * 8 // 100, h * 8 // 100, w * 92 // 100, h * 92 // 100)).save(tmp_path / f"{kind}-crop.jpg")
        judge = Sameness(edits=True)
        original = str(tmp_path / f"{kind}.jpg")
        found[kind] = (
            judge.tier(original, str(tmp_path / f"{kind}-resaved.png")),
            judge.tier(original, str(tmp_path / f"{kind}-crop.jpg")),
        )
    # The PNG is told from a resized copy by reading both whole; the crop, read at twice the original's scale, is
    # not a closer capture: it has no more pixels per unit of scene than the file it was cut from.
    assert found == {kind: ("same-pixels", "edited") for kind in found}, found


def test_grey_levels_kept_for_comparisons_go_with_their_picture():
    from lookalike.dedup import tiers

    picture = load_rgb(ORIGINAL)
    first = tiers._gray(picture, (64, 48))
    first[:] = 0  # what a caller does with its array leaves the kept one alone
    again = tiers._gray(picture, (64, 48))
    fresh = np.asarray(picture.convert("L").resize((64, 48), Image.Resampling.BOX), np.float32)
    assert np.array_equal(again, fresh) and again.any()
    key = id(picture)
    assert key in tiers._GRAYS
    del picture
    gc.collect()
    assert key not in tiers._GRAYS


def test_tone_mapping_bands_agree_with_numpy_exactly_and_its_table_with_interpolation():
    # The tone mapping finds each level's band by arithmetic (not a search per pixel): it must give what np.digitize
    # gives, to the bit, on fractional, whole and clumped levels alike. The mapping is read off a table at every
    # sixteenth of a level: within the mapping's steepest slope over 32 of np.interp's value.
    from lookalike.dedup.tiers import _TONE_STEPS, _band_of, _mapped

    rng = np.random.default_rng(0)
    for trial in range(200):
        values = (rng.normal(128, rng.uniform(1, 80), rng.integers(2, 5000)) % 256).astype(np.float32)
        if trial % 3 == 0:
            values = np.round(values)
        bands = np.linspace(values.min(), values.max() + 1e-3, 33)
        which = _band_of(values, bands)
        assert np.array_equal(which, np.digitize(values, bands) - 1)
        kept = np.flatnonzero(np.bincount(which, minlength=32) >= 1)
        centres = np.array([np.median(values[which == band]) for band in kept], np.float64)
        if len(centres) < 2 or np.any(np.diff(centres) <= 0):
            continue
        levels = np.sort(rng.uniform(0, 255, len(centres)))
        slope = float(np.max(np.diff(levels) / np.diff(centres)))
        error = np.abs(_mapped(values, centres, levels) - np.interp(values, centres, levels))
        assert error.max() <= slope / (2 * _TONE_STEPS) + 1e-9
        if trial % 3 == 0:  # whole levels lie on the table: exact
            assert error.max() <= 1e-9
