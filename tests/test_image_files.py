"""expr3d.image_files: headers read without decoding, bombs refused before decoding, huge photos decoded reduced
and downscaled, EXIF orientation as OpenCV applies it."""
import io
import struct
import zlib

import cv2
import numpy as np
import pytest

from expr3d import image_files


def png_bomb(width, height):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b""))


def pattern(height=40, width=60):
    image = np.zeros((height, width, 3), np.uint8)
    image[: height // 4, : width // 3] = 255
    image[3 * height // 4:, 5 * width // 6:, 1] = 200
    return image


@pytest.mark.parametrize("extension", [".png", ".jpg", ".bmp", ".webp", ".tif"])
def test_headers_of_every_readable_format(extension):
    data = cv2.imencode(extension, pattern())[1].tobytes()
    header = image_files.read_header(data)
    assert (header.width, header.height) == (60, 40)


def test_headers_of_pil_variants():
    image_module = pytest.importorskip("PIL.Image")
    for fmt, options in (("WEBP", {"lossless": True}), ("WEBP", {}), ("TIFF", {}), ("BMP", {}), ("JPEG", {}),
                         ("JPEG", {"progressive": True})):
        buffer = io.BytesIO()
        image_module.fromarray(pattern()).save(buffer, fmt, **options)
        header = image_files.read_header(buffer.getvalue())
        assert (header.width, header.height) == (60, 40), (fmt, options)


def test_unknown_or_damaged_headers_are_unreadable_without_decoding(monkeypatch):
    monkeypatch.setattr(cv2, "imdecode", lambda *a: pytest.fail("decoded"))
    for data in (b"GIF89a....", b"\xff\xd8\xff\xe0 this is not a jpeg", b"\x89PNG\r\n\x1a\n", b""):
        assert image_files.read_header(data) is None
        with pytest.raises(image_files.ImageFileError, match="not a readable image") as error:
            image_files.decode(data, "x.png")
        assert error.value.reason == "unreadable_image" and "x.png" in str(error.value)


def test_a_decompression_bomb_is_refused_before_decoding(monkeypatch):
    monkeypatch.setattr(cv2, "imdecode", lambda *a: pytest.fail("a bomb must not reach the decoder"))
    with pytest.raises(image_files.ImageFileError, match=r"bomb.png: its PNG header declares 100000x100000 pixels "
                                                         r"\(10000.0 MP\), more than the 67.1 MP") as error:
        image_files.decode(png_bomb(100000, 100000), "bomb.png")
    assert error.value.reason == "oversized_image"


def test_a_huge_jpeg_is_decoded_reduced_and_a_large_png_downscaled():
    image = cv2.resize(pattern(), (400, 300), interpolation=cv2.INTER_NEAREST)
    jpeg = cv2.imencode(".jpg", image)[1].tobytes()
    # 120,000 pixels with a 10,000-pixel bound: libjpeg decodes at 1/4 (7,500 pixels), no full-size decode.
    decoded = image_files.decode(jpeg, "big.jpg", max_pixels=10_000)
    assert decoded.image.shape == (75, 100, 3) and decoded.notes == ["decoded at 1/4 scale (400x300 JPEG)"]
    assert (decoded.width, decoded.height) == (400, 300) and decoded.scale == (0.25, 0.25)
    png = cv2.imencode(".png", image)[1].tobytes()
    decoded = image_files.decode(png, "big.png", max_pixels=10_000)
    assert decoded.image.shape[0] * decoded.image.shape[1] <= 10_000 and decoded.image.shape[:2] == (86, 115)
    assert "downscaled from 400x300 to 115x86" in decoded.notes[0]
    assert decoded.scale == (115 / 400, 86 / 300)
    # Within the bound nothing changes.
    assert np.array_equal(image_files.decode(png, "ok.png").image, image)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_as_opencv_applies_it(orientation, tmp_path):
    image_module = pytest.importorskip("PIL.Image")
    exif = image_module.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    image_module.fromarray(pattern()).save(buffer, "JPEG", exif=exif.tobytes(), quality=95)
    data = buffer.getvalue()
    assert image_files.exif_orientation(data) == orientation
    reference = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)  # OpenCV applies EXIF orientation
    for unchanged in (False, True):  # IMREAD_UNCHANGED ignores it in OpenCV: applied here all the same
        decoded = image_files.decode(data, "x.jpg", unchanged=unchanged)
        assert np.array_equal(decoded.image, reference), (orientation, unchanged)
    assert (decoded.width, decoded.height) == ((40, 60) if orientation >= 5 else (60, 40))


def test_file_size_bound_and_missing_files(tmp_path, monkeypatch):
    path = tmp_path / "photo.png"
    path.write_bytes(cv2.imencode(".png", pattern())[1].tobytes())
    monkeypatch.setattr(image_files, "MAX_FILE_BYTES", 100)
    with pytest.raises(image_files.ImageFileError, match="MiB expr3d reads from one photo") as error:
        image_files.read(str(path))
    assert error.value.reason == "oversized_image"
    with pytest.raises(image_files.ImageFileError, match="no such file") as error:
        image_files.read(str(tmp_path / "nope.png"))
    assert error.value.reason == "missing_path"


def test_non_utf8_names_are_read_and_printable(tmp_path):
    name = tmp_path.as_posix().encode() + b"/caf\xe9.png"
    with open(name, "wb") as handle:
        handle.write(cv2.imencode(".png", pattern())[1].tobytes())
    path = name.decode("utf-8", "surrogateescape")
    assert image_files.read(path).image.shape == (40, 60, 3)
    assert image_files.printable(path).endswith("caf\\xe9.png")
    assert image_files.printable(path).encode("utf-8")
