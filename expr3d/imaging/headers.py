"""Image file headers read without decoding (PNG IHDR, JPEG SOF, WebP VP8/VP8L/VP8X, BMP, TIFF IFD0) and a JPEG's
EXIF orientation: what `expr3d.imaging.photos` checks before it lets OpenCV decode a file (OpenCV has no header-only
call). Pure Python and numpy.
"""
import dataclasses
import struct

import numpy as np

READABLE_FORMATS = ("JPEG", "PNG", "BMP", "WebP", "TIFF")


@dataclasses.dataclass
class Header:
    format: str  # one of READABLE_FORMATS
    width: int  # as stored (before EXIF orientation)
    height: int
    components: int = None  # JPEG: colour components of the frame (4 = CMYK/YCCK); None otherwise


def _jpeg_size(data):
    """(width, height, components) from a JPEG's first SOF marker, or None."""
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # standalone markers
            pos += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image / start of scan before any frame header
            return None
        length = int.from_bytes(data[pos + 2:pos + 4], "big")
        if length < 2:
            return None
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if pos + 10 > len(data):
                return None
            height, width = struct.unpack(">HH", data[pos + 5:pos + 9])
            return width, height, data[pos + 9]
        pos += 2 + length
    return None


def _webp_size(data):
    chunk = data[12:16]
    if chunk == b"VP8X" and len(data) >= 30:
        return 1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(data[27:30], "little")
    if chunk == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:
        bits = int.from_bytes(data[21:25], "little")
        return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    if chunk == b"VP8 " and len(data) >= 30 and data[23:26] == b"\x9d\x01\x2a":
        return (int.from_bytes(data[26:28], "little") & 0x3FFF), (int.from_bytes(data[28:30], "little") & 0x3FFF)
    return None


def _tiff_size(data):
    order = {b"II": "<", b"MM": ">"}.get(data[:2])
    if order is None or len(data) < 8 or struct.unpack(order + "H", data[2:4])[0] != 42:
        return None  # (BigTIFF, magic 43, is refused: it exists for images beyond any bound here)
    ifd = struct.unpack(order + "I", data[4:8])[0]
    if ifd + 2 > len(data):
        return None
    count = struct.unpack(order + "H", data[ifd:ifd + 2])[0]
    size = {}
    for i in range(count):
        entry = ifd + 2 + 12 * i
        if entry + 12 > len(data):
            break
        tag, kind = struct.unpack(order + "HH", data[entry:entry + 4])
        if tag in (256, 257):
            size[tag] = (struct.unpack(order + "H", data[entry + 8:entry + 10])[0] if kind == 3 else
                         struct.unpack(order + "I", data[entry + 8:entry + 12])[0])
    return (size[256], size[257]) if len(size) == 2 else None


def read_header(data):
    """The format and stored size of an encoded image from its first bytes (a `Header`), or None when it is none of
    READABLE_FORMATS or its header is damaged. Never decodes pixels."""
    data = bytes(data)
    size, kind = None, None
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR" and len(data) >= 24:
        kind, size = "PNG", struct.unpack(">II", data[16:24])
    elif data[:3] == b"\xff\xd8\xff":
        kind, size = "JPEG", _jpeg_size(data)
    elif data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        kind, size = "WebP", _webp_size(data)
    elif data[:2] == b"BM" and len(data) >= 26:
        kind = "BMP"
        if int.from_bytes(data[14:18], "little") == 12:  # BITMAPCOREHEADER
            size = struct.unpack("<HH", data[18:22])
        else:
            width, height = struct.unpack("<ii", data[18:26])
            size = (abs(width), abs(height))  # a negative height is a top-down bitmap
    elif data[:2] in (b"II", b"MM"):
        kind, size = "TIFF", _tiff_size(data)
    if size is None or min(size[:2]) <= 0:
        return None
    return Header(format=kind, width=int(size[0]), height=int(size[1]),
                  components=int(size[2]) if len(size) > 2 else None)


def exif_orientation(data):
    """The EXIF orientation (1-8; 1 = as stored) of a JPEG's APP1 Exif segment; 1 when there is none."""
    pos = 2
    data = bytes(data)
    while data[:2] == b"\xff\xd8" and pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker in (0xD9, 0xDA) or 0xC0 <= marker <= 0xCF:
            break  # the Exif segment comes before the frame header
        length = int.from_bytes(data[pos + 2:pos + 4], "big")
        segment = data[pos + 4:pos + 2 + length]
        if marker == 0xE1 and segment[:6] == b"Exif\x00\x00":
            tiff = segment[6:]
            order = {b"II": "<", b"MM": ">"}.get(tiff[:2])
            if order is None or len(tiff) < 8:
                return 1
            ifd = struct.unpack(order + "I", tiff[4:8])[0]
            if ifd + 2 > len(tiff):
                return 1
            for i in range(struct.unpack(order + "H", tiff[ifd:ifd + 2])[0]):
                entry = ifd + 2 + 12 * i
                if entry + 12 > len(tiff):
                    break
                if struct.unpack(order + "H", tiff[entry:entry + 2])[0] == 0x0112:
                    value = struct.unpack(order + "H", tiff[entry + 8:entry + 10])[0]
                    return value if 1 <= value <= 8 else 1
            return 1
        pos += 2 + length
    return 1


def apply_orientation(image, orientation):
    """`image` as displayed under EXIF `orientation` (the same flips and transposes as OpenCV's)."""
    if orientation in (5, 6, 7, 8):
        image = np.swapaxes(image, 0, 1)
    flips = {2: (slice(None), slice(None, None, -1)), 3: (slice(None, None, -1), slice(None, None, -1)),
             4: (slice(None, None, -1),), 6: (slice(None), slice(None, None, -1)),
             7: (slice(None, None, -1), slice(None, None, -1)), 8: (slice(None, None, -1),)}
    if orientation in flips:
        image = image[flips[orientation]]
    return np.ascontiguousarray(image)
