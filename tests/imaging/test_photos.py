"""expr3d.imaging.photos (and .headers): damaged headers refused without decoding, bombs refused before decoding,
huge photos decoded reduced and downscaled, EXIF orientation as OpenCV applies it; prepare's reader `load_image`."""
import io
import struct
import zlib

import cv2
import numpy as np
import pytest

from expr3d.imaging import crops, headers, photos
from tests.imaging.fixtures import pattern


def png_bomb(width, height):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b""))


def test_unknown_or_damaged_headers_are_unreadable_without_decoding(monkeypatch):
    monkeypatch.setattr(cv2, "imdecode", lambda *a: pytest.fail("decoded"))
    for data in (b"GIF89a....", b"\xff\xd8\xff\xe0 this is not a jpeg", b"\x89PNG\r\n\x1a\n", b""):
        assert headers.read_header(data) is None
        with pytest.raises(photos.ImageFileError, match="not a readable image") as error:
            photos.decode(data, "x.png")
        assert error.value.reason == "unreadable_image" and "x.png" in str(error.value)


def test_a_decompression_bomb_is_refused_before_decoding(monkeypatch):
    monkeypatch.setattr(cv2, "imdecode", lambda *a: pytest.fail("a bomb must not reach the decoder"))
    with pytest.raises(photos.ImageFileError, match=r"bomb.png: its PNG header declares 100000x100000 pixels "
                                                         r"\(10000.0 MP\), more than the 67.1 MP") as error:
        photos.decode(png_bomb(100000, 100000), "bomb.png")
    assert error.value.reason == "oversized_image"


def test_a_huge_jpeg_is_decoded_reduced_and_a_large_png_downscaled():
    image = cv2.resize(pattern(), (400, 300), interpolation=cv2.INTER_NEAREST)
    jpeg = cv2.imencode(".jpg", image)[1].tobytes()
    # 120,000 pixels with a 10,000-pixel bound: libjpeg decodes at 1/4 (7,500 pixels), no full-size decode.
    decoded = photos.decode(jpeg, "big.jpg", max_pixels=10_000)
    assert decoded.image.shape == (75, 100, 3) and decoded.notes == ["decoded at 1/4 scale (400x300 JPEG)"]
    assert (decoded.width, decoded.height) == (400, 300) and decoded.scale == (0.25, 0.25)
    png = cv2.imencode(".png", image)[1].tobytes()
    decoded = photos.decode(png, "big.png", max_pixels=10_000)
    assert decoded.image.shape[0] * decoded.image.shape[1] <= 10_000 and decoded.image.shape[:2] == (86, 115)
    assert "downscaled from 400x300 to 115x86" in decoded.notes[0]
    assert decoded.scale == (115 / 400, 86 / 300)
    # Within the bound nothing changes.
    assert np.array_equal(photos.decode(png, "ok.png").image, image)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_as_opencv_applies_it(orientation, tmp_path):
    image_module = pytest.importorskip("PIL.Image")
    exif = image_module.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    image_module.fromarray(pattern()).save(buffer, "JPEG", exif=exif.tobytes(), quality=95)
    data = buffer.getvalue()
    assert headers.exif_orientation(data) == orientation
    reference = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)  # OpenCV applies EXIF orientation
    for unchanged in (False, True):  # IMREAD_UNCHANGED ignores it in OpenCV: applied here all the same
        decoded = photos.decode(data, "x.jpg", unchanged=unchanged)
        assert np.array_equal(decoded.image, reference), (orientation, unchanged)
    assert (decoded.width, decoded.height) == ((40, 60) if orientation >= 5 else (60, 40))


def test_file_size_bound_and_missing_files(tmp_path, monkeypatch):
    path = tmp_path / "photo.png"
    path.write_bytes(cv2.imencode(".png", pattern())[1].tobytes())
    monkeypatch.setattr(photos, "MAX_FILE_BYTES", 100)
    with pytest.raises(photos.ImageFileError, match="MiB expr3d reads from one photo") as error:
        photos.read(str(path))
    assert error.value.reason == "oversized_image"
    with pytest.raises(photos.ImageFileError, match="no such file") as error:
        photos.read(str(tmp_path / "nope.png"))
    assert error.value.reason == "missing_path"


def test_non_utf8_names_are_read_and_printable(tmp_path):
    name = tmp_path.as_posix().encode() + b"/caf\xe9.png"
    with open(name, "wb") as handle:
        handle.write(cv2.imencode(".png", pattern())[1].tobytes())
    path = name.decode("utf-8", "surrogateescape")
    assert photos.read(path).image.shape == (40, 60, 3)
    assert photos.printable(path).endswith("caf\\xe9.png")
    assert photos.printable(path).encode("utf-8")


# --- prepare's reader: load_image ------------------------------------------------------------------------------------

def test_load_image_conversions(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "gray.png"), rgb[..., 0])
    cv2.imwrite(str(tmp_path / "deep.png"), rgb.astype(np.uint16) * 257)
    cv2.imwrite(str(tmp_path / "alpha.png"), np.dstack([rgb, np.full((40, 50), 255, np.uint8)]))
    cv2.imwrite(str(tmp_path / "tiny.png"), rgb[:10, :10])
    (tmp_path / "corrupt.jpg").write_bytes(b"\xff\xd8garbage")
    gray = photos.load_image(str(tmp_path / "gray.png"))
    assert gray.rgb.shape == (40, 50, 3) and "grayscale" in gray.notes[0]
    deep = photos.load_image(str(tmp_path / "deep.png"))
    assert "16-bit" in deep.notes[0] and np.abs(deep.rgb.astype(int) - rgb[..., ::-1]).max() <= 1
    assert "alpha" in photos.load_image(str(tmp_path / "alpha.png")).notes[0]
    for name, reason in (("tiny.png", "tiny_image"), ("corrupt.jpg", "unreadable_image"), ("nope.png", "missing_path")):
        with pytest.raises(photos.ImageFileError) as error:
            photos.load_image(str(tmp_path / name))
        assert error.value.reason == reason and name in str(error.value)


def test_cmyk_jpeg_is_converted_and_noted(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    Image.fromarray(np.full((40, 40, 3), (200, 50, 20), np.uint8)).convert("CMYK").save(tmp_path / "cmyk.jpg")
    loaded = photos.load_image(str(tmp_path / "cmyk.jpg"))
    assert "CMYK" in loaded.notes[0]
    assert np.abs(loaded.rgb[20, 20].astype(int) - [200, 50, 20]).max() < 12


def test_load_image_applies_exif_orientation_as_lite_and_synthesize(tmp_path):
    image_module = pytest.importorskip("PIL.Image")
    rgb = np.zeros((40, 60, 3), np.uint8)
    rgb[:10, :20] = 255
    exif = image_module.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    image_module.fromarray(rgb).save(tmp_path / "rotated.jpg", exif=exif.tobytes(), quality=95)
    loaded = photos.load_image(str(tmp_path / "rotated.jpg"))
    assert loaded.rgb.shape == (60, 40, 3) and loaded.source_size == (40, 60)
    assert "EXIF orientation 6 applied" in loaded.notes
    assert np.array_equal(loaded.rgb, photos.read_image(str(tmp_path / "rotated.jpg")))


def test_a_huge_photo_is_worked_on_downscaled_in_source_coordinates(tmp_path):
    # The crop of a downscaled photo, through LoadedImage.to_working, matches the crop of the full photo: boxes,
    # meshes and depth maps keep their source-pixel coordinates.
    rng = np.random.default_rng(0)
    full = cv2.resize(rng.integers(0, 255, (30, 40, 3), dtype=np.uint8), (400, 300), interpolation=cv2.INTER_CUBIC)
    cv2.imwrite(str(tmp_path / "big.png"), full[..., ::-1])
    whole = photos.load_image(str(tmp_path / "big.png"))
    small = photos.load_image(str(tmp_path / "big.png"), max_pixels=20_000)
    assert small.rgb.shape[0] * small.rgb.shape[1] <= 20_000 and small.source_size == (400, 300)
    assert small.source_shape == whole.source_shape == (300, 400)
    assert any("downscaled from 400x300" in note for note in small.notes)
    box = small.to_source_box((10.0, 8.0, 40.0, 40.0))
    assert box == pytest.approx((10 / small.scale[0], 8 / small.scale[1], 40 / small.scale[0], 40 / small.scale[1]))
    matrix = crops.crop_matrix((120, 80, 160, 160), 48, margin=0.25, angle_deg=10)
    reference = crops.warp_image(whole.rgb, whole.to_working(matrix), 48).astype(int)
    crop = crops.warp_image(small.rgb, small.to_working(matrix), 48).astype(int)
    assert np.abs(crop - reference).mean() < 6
