"""Photo files read with bounded memory: the header's size is checked before decoding, huge photos are decoded
reduced and downscaled, a JPEG's EXIF orientation is applied in every mode. Shared by `lite`, `synthesize` (expr3d.deploy.pipeline) and
`prepare` (expr3d.data.prepare.faces).

The bounds, per photo:

- `MAX_WORKING_PIXELS` (4096 x 4096 = 16.8 MP, 50 MB as 8-bit RGB): the largest image face detection, cropping and
  paste-back work on. A larger photo is downscaled to it (area averaging) right after decoding; the tools report the
  scale (`Decoded.scale`), and `lite`/`synthesize` write their results at the downscaled size.
- `MAX_DECODE_PIXELS` (8192 x 8192 = 67.1 MP: 201 MB as 8-bit RGB, 403 MB at 16 bits): the most pixels ever decoded
  from one file. JPEGs larger than `MAX_WORKING_PIXELS` are decoded at 1/2, 1/4 or 1/8 scale inside libjpeg
  (`cv2.IMREAD_REDUCED_*`), never at full size, so any JPEG (at most 65535 x 65535) fits; other formats (PNG, WebP,
  BMP, TIFF) are decoded at full size, so a header declaring more than `MAX_DECODE_PIXELS` (a decompression bomb:
  a few kB of PNG can declare 100000 x 100000) is refused BEFORE decoding.
- `MAX_FILE_BYTES` (512 MiB): larger files are refused before they are read.

The header is read here (PNG IHDR, JPEG SOF, WebP VP8/VP8L/VP8X, BMP, TIFF IFD0): OpenCV has no header-only call. A
file whose header is none of those, or is damaged, is refused as unreadable without decoding it.
"""
import dataclasses
import math
import os
import struct

import numpy as np

MAX_WORKING_PIXELS = 4096 * 4096
MAX_DECODE_PIXELS = 8192 * 8192
MAX_FILE_BYTES = 512 * 2**20

READABLE_FORMATS = ("JPEG", "PNG", "BMP", "WebP", "TIFF")
# Extensions cv2.imencode writes (the output format follows the extension).
WRITABLE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


class ImageFileError(ValueError):
    """A photo that cannot be used; `reason` is a report code ("missing_path", "unreadable_image",
    "oversized_image"), the message names the file."""

    def __init__(self, reason, message):
        super().__init__(message)
        self.reason = reason


@dataclasses.dataclass
class Header:
    format: str  # one of READABLE_FORMATS
    width: int  # as stored (before EXIF orientation)
    height: int
    components: int = None  # JPEG: colour components of the frame (4 = CMYK/YCCK); None otherwise


@dataclasses.dataclass
class Decoded:
    """A decoded photo and how it relates to the file.

    image: the decoded array (uint8 BGR [H, W, 3] in colour mode; as stored in `unchanged` mode), EXIF-oriented,
        at most MAX_WORKING_PIXELS.
    width, height: the photo's size in the file, after EXIF orientation (the coordinates annotations refer to).
    scale: (sx, sy) = decoded size / file size (1.0 unless the photo was reduced).
    notes: what was done, e.g. ["decoded at 1/4 scale (JPEG of 12000x9000)"].
    """

    image: np.ndarray
    width: int
    height: int
    scale: tuple
    notes: list
    header: Header = None


def printable(path):
    """`path` for messages and JSON: bytes of a file name that are not UTF-8 (a Linux name from another locale,
    kept by Python as surrogate escapes) shown as \\xNN."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def writable_image_name(path):
    """True when `path` ends in an extension `cv2.imencode` writes."""
    return str(path).lower().endswith(WRITABLE_EXTENSIONS)


# --- headers ------------------------------------------------------------------------------------------------------

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


# --- decoding -----------------------------------------------------------------------------------------------------

def _megapixels(pixels):
    return f"{pixels / 1e6:.1f} MP"


def decode(data, name, unchanged=False, max_pixels=MAX_WORKING_PIXELS):
    """Decode an encoded photo within the bounds of this module.

    Args:
        data: the file's bytes.
        name: the file, for messages.
        unchanged: keep depth and channels as stored (cv2.IMREAD_UNCHANGED; prepare converts and notes them);
            otherwise 8-bit BGR.
        max_pixels: downscale the result to at most this many pixels.
    Returns a `Decoded`; raises ImageFileError("unreadable_image" | "oversized_image") naming the file.
    """
    import cv2

    header = read_header(data)
    if header is None:
        raise ImageFileError("unreadable_image", f"{name}: not a readable image (the header of a "
                                                 f"{', '.join(READABLE_FORMATS)} file was expected; corrupt, "
                                                 f"truncated or unsupported)")
    pixels = header.width * header.height
    notes = []
    factor = 1
    if header.format == "JPEG":
        while factor < 8 and pixels > max_pixels * factor ** 2:
            factor *= 2  # libjpeg decodes at 1/2, 1/4 or 1/8 scale directly
    if pixels > MAX_DECODE_PIXELS * factor ** 2:
        raise ImageFileError("oversized_image", (
            f"{name}: its {header.format} header declares {header.width}x{header.height} pixels "
            f"({_megapixels(pixels)}), more than the {_megapixels(MAX_DECODE_PIXELS)} expr3d decodes from one "
            f"file (expr3d.image_files.MAX_DECODE_PIXELS); refused before decoding - downscale it first"))
    orientation = exif_orientation(data) if header.format == "JPEG" else 1
    if factor > 1:
        flags = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}[factor]
        notes.append(f"decoded at 1/{factor} scale ({header.width}x{header.height} JPEG)")
    else:
        flags = cv2.IMREAD_UNCHANGED if unchanged else cv2.IMREAD_COLOR
    if header.format == "JPEG":
        # A JPEG's EXIF orientation is applied here, the same way in every mode (OpenCV skips it for
        # IMREAD_UNCHANGED); other formats keep OpenCV's own handling (colour mode only).
        flags |= cv2.IMREAD_IGNORE_ORIENTATION
    image = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    if image is None or image.size == 0:
        raise ImageFileError("unreadable_image", f"{name}: not a decodable image (corrupt or unsupported "
                                                 f"{header.format} data)")
    if orientation != 1:
        image = apply_orientation(image, orientation)
        notes.append(f"EXIF orientation {orientation} applied")
    width, height = (header.height, header.width) if orientation in (5, 6, 7, 8) else (header.width, header.height)
    if image.shape[0] * image.shape[1] > max_pixels:
        shrink = math.sqrt(max_pixels / (image.shape[0] * image.shape[1]))
        size = (max(1, int(image.shape[1] * shrink)), max(1, int(image.shape[0] * shrink)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        notes.append(f"downscaled from {width}x{height} to {size[0]}x{size[1]} "
                     f"(expr3d.image_files.MAX_WORKING_PIXELS = {_megapixels(max_pixels)})")
    return Decoded(image=image, width=width, height=height, scale=(image.shape[1] / width, image.shape[0] / height),
                   notes=notes, header=header)


def read(path, unchanged=False, max_pixels=MAX_WORKING_PIXELS):
    """`decode` of the file at `path` (ImageFileError "missing_path" when it is not a file, "oversized_image" when it
    holds more than MAX_FILE_BYTES, both before reading it)."""
    if not os.path.isfile(path):
        raise ImageFileError("missing_path", f"{path}: no such file")
    size = os.path.getsize(path)
    if size > MAX_FILE_BYTES:
        raise ImageFileError("oversized_image", f"{path}: {size / 2**20:.0f} MiB is more than the "
                                                f"{MAX_FILE_BYTES // 2**20} MiB expr3d reads from one photo")
    with open(path, "rb") as handle:
        data = handle.read()
    if not data:
        raise ImageFileError("unreadable_image", f"{path}: empty file")
    return decode(data, path, unchanged=unchanged, max_pixels=max_pixels)
