"""expr3d.imaging.headers: image sizes read from the header of every readable format, without decoding (damaged
headers and EXIF orientation are checked with the decoder in test_photos.py)."""
import io

import cv2
import pytest

from expr3d.imaging import headers
from tests.imaging.fixtures import pattern


@pytest.mark.parametrize("extension", [".png", ".jpg", ".bmp", ".webp", ".tif"])
def test_headers_of_every_readable_format(extension):
    data = cv2.imencode(extension, pattern())[1].tobytes()
    header = headers.read_header(data)
    assert (header.width, header.height) == (60, 40)


def test_headers_of_pil_variants():
    image_module = pytest.importorskip("PIL.Image")
    for fmt, options in (("WEBP", {"lossless": True}), ("WEBP", {}), ("TIFF", {}), ("BMP", {}), ("JPEG", {}),
                         ("JPEG", {"progressive": True})):
        buffer = io.BytesIO()
        image_module.fromarray(pattern()).save(buffer, fmt, **options)
        header = headers.read_header(buffer.getvalue())
        assert (header.width, header.height) == (60, 40), (fmt, options)
