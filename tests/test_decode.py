"""Decoding: every Pillow mode becomes upright 8-bit RGB; every bad file is an ImageError naming file and cause."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from conftest import SAMPLES
from lookalike.ingest import decode
from lookalike.ingest.decode import ImageError, load_rgb, probe


def pixels(image: Image.Image) -> np.ndarray:
    assert image.mode == "RGB"
    array = np.asarray(image)
    assert array.dtype == np.uint8
    assert array.ndim == 3 and array.shape[2] == 3
    return array


# ------------------------------------------------------------------------------- good images


def test_real_photo_decodes_to_rgb_uint8():
    path = sorted(SAMPLES.rglob("*.jpg"))[0]
    with Image.open(path) as reference:
        size = reference.size
        expected = np.asarray(reference.convert("RGB"))
    image = load_rgb(path)
    assert image.size == size
    np.testing.assert_array_equal(pixels(image), expected)


def test_min_size_decodes_large_jpeg_at_reduced_scale_but_not_below_min_size(tmp_path, imagegen):
    path = imagegen.write_jpeg(tmp_path / "big.jpg", imagegen.pattern_rgb(1600, 1200))
    image = load_rgb(path, min_size=(224, 224))
    assert image.size[0] < 1600  # DCT-domain downscale happened
    assert min(image.size) >= 224
    assert image.size[0] * 1200 == image.size[1] * 1600  # aspect ratio kept
    full = load_rgb(path)
    assert full.size == (1600, 1200)
    # Same picture at the lower resolution.
    shrunk = np.asarray(full.resize(image.size, Image.BILINEAR), np.float32)
    assert np.abs(pixels(image).astype(np.float32) - shrunk).mean() < 6


def test_grayscale(tmp_path):
    path = tmp_path / "gray.png"
    Image.new("L", (40, 30), 77).save(path)
    array = pixels(load_rgb(path))
    assert array.shape == (30, 40, 3)
    assert (array == 77).all()
    assert probe(path) == decode.ImageInfo(40, 30, "PNG", "L")


def test_16_bit_grayscale_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 16384, 32768, 65535]], dtype=np.uint16).repeat(3, axis=0)
    path = tmp_path / "gray16.png"
    Image.fromarray(values).save(path)
    assert probe(path).mode in ("I;16", "I")  # really stored as 16-bit
    array = pixels(load_rgb(path))
    assert array.shape == (3, 4, 3)
    np.testing.assert_allclose(array[0, :, 0], [0, 64, 128, 255], atol=1)
    assert (array[..., 0] == array[..., 1]).all() and (array[..., 1] == array[..., 2]).all()


def test_16_bit_mid_gray_becomes_mid_gray(tmp_path):
    path = tmp_path / "mid16.png"
    Image.fromarray(np.full((10, 20), 32768, np.uint16)).save(path)
    array = pixels(load_rgb(path))
    assert array.shape == (10, 20, 3)
    assert np.abs(array.astype(int) - 128).max() <= 1  # not 255 (clipped)


def test_16_bit_array_is_scaled_like_a_16_bit_file():
    values = np.array([[0, 16384, 32768, 65535]], dtype=np.uint16)
    from_array = pixels(load_rgb(values))
    from_pil = pixels(load_rgb(Image.fromarray(values)))
    np.testing.assert_array_equal(from_array, from_pil)
    np.testing.assert_allclose(from_array[0, :, 0], [0, 64, 128, 255], atol=1)
    rgb16 = np.full((2, 3, 3), 32768, np.uint16)
    assert np.abs(pixels(load_rgb(rgb16)).astype(int) - 128).max() <= 1


def test_rgba_alpha_is_flattened_on_white(tmp_path):
    rgba = np.zeros((10, 30, 4), np.uint8)
    rgba[:, :10] = (255, 0, 0, 0)  # fully transparent red -> white
    rgba[:, 10:20] = (0, 0, 255, 255)  # opaque blue
    rgba[:, 20:] = (255, 0, 0, 128)  # half-transparent red over white -> pink
    path = tmp_path / "rgba.png"
    Image.fromarray(rgba, "RGBA").save(path)
    array = pixels(load_rgb(path))
    assert array.shape == (10, 30, 3)
    assert (array[:, :10] == 255).all()
    assert (array[:, 10:20] == (0, 0, 255)).all()
    np.testing.assert_allclose(array[0, 25], (255, 127, 127), atol=2)


def test_la_alpha_is_flattened_on_white(tmp_path):
    la = Image.merge("LA", (Image.new("L", (8, 8), 0), Image.new("L", (8, 8), 0)))
    path = tmp_path / "la.png"
    la.save(path)
    assert (pixels(load_rgb(path)) == 255).all()  # black but fully transparent


def test_palette_with_transparency_is_flattened_on_white(tmp_path):
    image = Image.new("P", (20, 10), 0)
    image.putpalette([0, 0, 0, 0, 200, 0] + [0] * (256 * 3 - 6))  # 0: black, 1: green
    image.paste(1, (10, 0, 20, 10))
    path = tmp_path / "palette.png"
    image.save(path, transparency=0)
    with Image.open(path) as reopened:
        assert reopened.mode == "P" and "transparency" in reopened.info
    array = pixels(load_rgb(path))
    assert (array[:, :10] == 255).all()  # transparent index -> white, not black
    assert (array[:, 10:] == (0, 200, 0)).all()


def test_palette_gif_without_transparency(tmp_path):
    path = tmp_path / "pattern.gif"
    Image.new("RGB", (16, 8), (0, 0, 255)).convert("P").save(path)
    array = pixels(load_rgb(path))
    assert array.shape == (8, 16, 3)
    assert (array == (0, 0, 255)).all()


def test_cmyk_jpeg(tmp_path):
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (30, 20), (0, 255, 255, 0)).save(path, "JPEG", quality=95)  # pure red ink
    assert probe(path).mode == "CMYK"
    array = pixels(load_rgb(path))
    assert array.shape == (20, 30, 3)
    np.testing.assert_allclose(array.reshape(-1, 3).mean(axis=0), (255, 0, 0), atol=8)


@pytest.mark.parametrize("orientation, transpose", [(6, Image.Transpose.ROTATE_270), (3, Image.Transpose.ROTATE_180)])
def test_exif_orientation_is_applied(tmp_path, imagegen, orientation, transpose):
    stored = imagegen.pattern_rgb(120, 80)
    path = imagegen.write_exif_rotated_jpeg(tmp_path / "rotated.jpg", stored, orientation)
    assert probe(path).width == 120  # the header still says the stored size
    expected = np.asarray(stored.transpose(transpose), np.float32)
    for image in (load_rgb(path), load_rgb(path.read_bytes()), load_rgb(Image.open(path))):
        array = pixels(image).astype(np.float32)
        assert array.shape == expected.shape
        assert np.abs(array - expected).mean() < 4
        # ... and it is not the unrotated (or wrongly rotated) picture.
        wrong = np.asarray(
            stored.transpose(Image.Transpose.ROTATE_90 if orientation == 6 else Image.Transpose.FLIP_TOP_BOTTOM),
            np.float32,
        )
        assert np.abs(array - wrong).mean() > 40


def test_exif_rotated_jpeg_with_min_size_is_big_enough_both_ways(tmp_path, imagegen):
    path = imagegen.write_exif_rotated_jpeg(tmp_path / "portrait.jpg", imagegen.pattern_rgb(1600, 1200), 6)
    image = load_rgb(path, min_size=(224, 224))
    assert image.size[0] < image.size[1]  # upright portrait
    assert min(image.size) >= 224


def test_bytes_pil_and_array_sources(tmp_path):
    photo = sorted(SAMPLES.rglob("*.jpg"))[3]
    from_path = pixels(load_rgb(photo))
    np.testing.assert_array_equal(pixels(load_rgb(photo.read_bytes())), from_path)
    np.testing.assert_array_equal(pixels(load_rgb(Image.open(photo))), from_path)
    np.testing.assert_array_equal(pixels(load_rgb(from_path)), from_path)
    # float arrays in [0, 1], HxWx1, HxW and RGBA arrays
    np.testing.assert_array_equal(pixels(load_rgb(np.full((4, 5), 0.5))), np.full((4, 5, 3), 127, np.uint8))
    np.testing.assert_array_equal(pixels(load_rgb(np.full((4, 5, 1), 9, np.uint8))), np.full((4, 5, 3), 9, np.uint8))
    rgba = np.zeros((4, 5, 4), np.uint8)
    assert (pixels(load_rgb(rgba)) == 255).all()


def test_odd_sources_are_image_errors():
    with pytest.raises(ImageError, match="HxW"):
        load_rgb(np.zeros((4, 5, 2), np.uint8))
    with pytest.raises(ImageError, match="unsupported image type"):
        load_rgb(12345)
    with pytest.raises(ImageError, match="0 bytes"):
        load_rgb(b"")


def test_probe_does_not_decode(tmp_path, imagegen, request):
    path = imagegen.write_jpeg(tmp_path / "photo.jpg", imagegen.noise_rgb(64, 48))
    png = tmp_path / "photo.png"
    imagegen.noise_rgb(30, 20).save(png)
    forbidden = request.getfixturevalue("forbid_decoding")
    with pytest.raises(forbidden):
        load_rgb(path)
    assert probe(path) == decode.ImageInfo(64, 48, "JPEG", "RGB")
    assert probe(png) == decode.ImageInfo(30, 20, "PNG", "RGB")


# -------------------------------------------------------------------------------- bad images


def check_error(excinfo, path, *fragments):
    error = excinfo.value
    assert error.source == str(path)
    assert str(path) in str(error)
    for fragment in fragments:
        assert fragment in error.reason, error.reason


def test_zero_byte_file(bad_files):
    path = bad_files["zero"]
    for call in (load_rgb, probe):
        with pytest.raises(ImageError) as excinfo:
            call(path)
        check_error(excinfo, path, "0 bytes")


def test_truncated_jpeg(bad_files):
    path = bad_files["truncated"]
    assert probe(path).format == "JPEG"  # the header is intact...
    with pytest.raises(ImageError) as excinfo:
        load_rgb(path)  # ...the pixels are not
    check_error(excinfo, path, "truncated")
    with pytest.raises(ImageError, match="truncated"):
        load_rgb(path, min_size=(224, 224))


def test_text_file_named_jpg(bad_files):
    path = bad_files["text"]
    for call in (load_rgb, probe):
        with pytest.raises(ImageError) as excinfo:
            call(path)
        check_error(excinfo, path, "not an image")


def test_header_only_decompression_bomb(bad_files):
    path = bad_files["bomb"]
    assert path.stat().st_size < 200  # 900 megapixels declared in a tiny file
    for call in (load_rgb, probe):
        with pytest.raises(ImageError) as excinfo:
            call(path)
        check_error(excinfo, path, "decompression-bomb")


def test_decompression_bomb_limit_is_lookalikes_own(tmp_path, monkeypatch):
    path = tmp_path / "small.png"
    Image.new("RGB", (100, 100), (1, 2, 3)).save(path)
    assert load_rgb(path).size == (100, 100)
    monkeypatch.setattr(decode, "MAX_IMAGE_PIXELS", 5000)
    for source in (path, path.read_bytes(), Image.open(path), np.zeros((100, 100, 3), np.uint8)):
        with pytest.raises(ImageError) as excinfo:
            load_rgb(source)
        assert "decompression-bomb" in excinfo.value.reason
        assert "10,000 pixels" in excinfo.value.reason
    with pytest.raises(ImageError) as excinfo:
        probe(path)
    check_error(excinfo, path, "decompression-bomb")


def test_pillow_warning_size_bomb_is_refused(tmp_path):
    # Between Pillow's warning limit and twice it Pillow only warns: lookalike must still refuse.
    side = int((Image.MAX_IMAGE_PIXELS * 1.5) ** 0.5)
    from conftest import write_png_header_bomb

    path = write_png_header_bomb(tmp_path / "warn.png", side, side)
    with pytest.raises(ImageError) as excinfo:
        probe(path)
    check_error(excinfo, path, "decompression-bomb")


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(ImageError) as excinfo:
        load_rgb(tmp_path / "nope.jpg")
    check_error(excinfo, tmp_path / "nope.jpg", "not found")
    with pytest.raises(ImageError) as excinfo:
        load_rgb(tmp_path)
    check_error(excinfo, tmp_path, "directory")


def test_truncated_bytes_name_the_data():
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (100, 100, 3), dtype=np.uint8)).save(buffer, "JPEG")
    data = buffer.getvalue()[:2000]
    with pytest.raises(ImageError) as excinfo:
        load_rgb(data)
    assert excinfo.value.source == "<2000 bytes>"
    assert "truncated" in excinfo.value.reason


def test_unreadable_file_permission_denied(tmp_path, imagegen):
    path = imagegen.write_jpeg(tmp_path / "secret.jpg")
    with imagegen.unreadable(path):
        for call in (load_rgb, probe):
            with pytest.raises(ImageError) as excinfo:
                call(path)
            check_error(excinfo, path, "permission denied")
