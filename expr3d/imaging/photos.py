"""Photo files: reading (formats by header, EXIF orientation, bounded memory), writing, listing; the one list of
image extensions.

Two readers share `decode`: `read_image` (lite, synthesize: 8-bit RGB as OpenCV's colour mode converts it) and
`load_image` (prepare: decoded as stored, then grayscale, alpha, palette, CMYK, 16-bit and float input converted
explicitly and noted). They stay two functions because they convert 16-bit photos differently (OpenCV's
colour mode vs prepare's rounded 255/65535 scaling). A photo is read with bounded memory: the header's size is
checked before decoding, huge photos are decoded reduced and downscaled, a JPEG's EXIF orientation is applied in
every mode.

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

The header is read by `expr3d.imaging.headers`; a file whose header is none of `READABLE_FORMATS`, or is damaged, is
refused as unreadable without decoding it.
"""
import dataclasses
import math
import os

import cv2
import numpy as np

from expr3d import storage
from expr3d.imaging.headers import READABLE_FORMATS, Header, apply_orientation, exif_orientation, read_header

MAX_WORKING_PIXELS = 4096 * 4096
MAX_DECODE_PIXELS = 8192 * 8192
MAX_FILE_BYTES = 512 * 2**20

# The files read as photos (folders of photos are listed by extension) and the names written (cv2.imencode: the
# output format follows the extension).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


class ImageFileError(ValueError):
    """A photo that cannot be used; `reason` is a report code ("missing_path", "unreadable_image",
    "oversized_image"), the message names the file."""

    def __init__(self, reason, message):
        super().__init__(message)
        self.reason = reason


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
    return str(path).lower().endswith(IMAGE_EXTENSIONS)


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
            f"file (expr3d.imaging.photos.MAX_DECODE_PIXELS); refused before decoding - downscale it first"))
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
                     f"(expr3d.imaging.photos.MAX_WORKING_PIXELS = {_megapixels(max_pixels)})")
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

# --- the two readers and the writer ------------------------------------------------------------------------------

def read_image(path, max_pixels=MAX_WORKING_PIXELS):
    """RGB uint8 [H, W, 3] of an image file, EXIF-oriented and downscaled to at most `max_pixels` (a huge JPEG is
    decoded reduced; a header declaring more than MAX_DECODE_PIXELS is refused before decoding).
    FileNotFoundError / ValueError (ImageFileError) naming the file when it cannot be read."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"image {path!r} does not exist")
    decoded = read(path, max_pixels=max_pixels)
    return cv2.cvtColor(decoded.image, cv2.COLOR_BGR2RGB)


@dataclasses.dataclass
class LoadedImage:
    """A source image as prepare works on it.

    rgb: uint8 [h, w, 3], EXIF-oriented, at most MAX_WORKING_PIXELS (a larger photo is downscaled).
    notes: conversions applied, e.g. ["grayscale converted to RGB"].
    source_size: (width, height) of the photo in its file, after EXIF orientation: the coordinates of annotation
        boxes, landmarks, depth maps and meshes.
    scale: (sx, sy) = rgb's size / source_size (1.0 unless downscaled); `to_working` turns a source crop matrix into
        one for `rgb`.
    """

    rgb: np.ndarray
    notes: list
    source_size: tuple = None
    scale: tuple = (1.0, 1.0)

    @property
    def source_shape(self):
        """(height, width) of the source image (what the depth sources expect)."""
        return (self.source_size[1], self.source_size[0]) if self.source_size else self.rgb.shape[:2]

    def to_working(self, matrix):
        """A 2x3 source-pixel -> crop matrix as a `rgb`-pixel -> crop matrix (index convention)."""
        sx, sy = self.scale
        if sx == 1.0 and sy == 1.0:
            return matrix
        # i_working = (i_source + 0.5) * s - 0.5, so i_source = (i_working + 0.5) / s - 0.5.
        back = np.array([[1.0 / sx, 0.0, 0.5 / sx - 0.5], [0.0, 1.0 / sy, 0.5 / sy - 0.5], [0.0, 0.0, 1.0]])
        return (np.vstack([matrix, [0.0, 0.0, 1.0]]) @ back)[:2]

    def to_source_box(self, box):
        """A (x, y, w, h) box in `rgb` pixels (continuous coordinates) in source pixels."""
        sx, sy = self.scale
        return (box[0] / sx, box[1] / sy, box[2] / sx, box[3] / sy)


def load_image(path, min_size=32, max_pixels=MAX_WORKING_PIXELS):
    """Read any common image as uint8 RGB, converting (and noting) grayscale, alpha, palette, CMYK and 16-bit input;
    EXIF orientation applied (as lite and synthesize do), huge photos decoded reduced or downscaled to `max_pixels`
    and decompression bombs refused before decoding.

    Raises ImageFileError("missing_path" | "unreadable_image" | "oversized_image" | "tiny_image", ...) naming the file.
    """
    decoded = read(path, unchanged=True, max_pixels=max_pixels)
    raw = decoded.image
    notes = list(decoded.notes)
    if decoded.header.components == 4:
        # libjpeg already converted CMYK/YCCK to 3-channel BGR; say so, colours of Adobe CMYK files may be off.
        notes.append("CMYK JPEG converted to RGB")
    if raw.dtype == np.uint16:
        raw = (raw.astype(np.uint32) * 255 + 32767) // 65535
        raw = raw.astype(np.uint8)
        notes.append("16-bit image converted to 8-bit")
    elif raw.dtype in (np.float32, np.float64):
        finite = np.nan_to_num(raw.astype(np.float64), nan=0.0, posinf=1.0, neginf=0.0)
        scale = 255.0 if finite.max() <= 1.0 else 1.0
        raw = np.clip(finite * scale, 0, 255).astype(np.uint8)
        notes.append(f"floating-point image ({raw.dtype}) converted to 8-bit")
    elif raw.dtype != np.uint8:
        raise ImageFileError("unreadable_image", f"{path}: unsupported pixel type {raw.dtype}")
    if raw.ndim == 2 or (raw.ndim == 3 and raw.shape[2] == 1):
        bgr = cv2.cvtColor(raw.reshape(raw.shape[:2]), cv2.COLOR_GRAY2BGR)
        notes.append("grayscale converted to RGB")
    elif raw.shape[2] == 2:
        bgr = cv2.cvtColor(raw[..., 0], cv2.COLOR_GRAY2BGR)
        notes.append("grayscale+alpha converted to RGB (alpha dropped)")
    elif raw.shape[2] == 4:
        bgr = raw[..., :3]
        notes.append("alpha channel dropped")
    elif raw.shape[2] == 3:
        bgr = raw
    else:
        raise ImageFileError("unreadable_image", f"{path}: {raw.shape[2]} channels")
    width, height = decoded.width, decoded.height
    if min(height, width) < min_size:
        raise ImageFileError("tiny_image", f"{path}: {width}x{height} is smaller than {min_size} px")
    return LoadedImage(rgb=np.ascontiguousarray(bgr[..., ::-1]), notes=notes, source_size=(width, height),
                       scale=decoded.scale)


def write_image(path, image):
    """Write an RGB uint8 image atomically (temp file beside it + os.replace); the format follows the extension."""
    extension = os.path.splitext(path)[1].lower() or ".png"
    ok, data = cv2.imencode(extension, cv2.cvtColor(np.asarray(image), cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError(f"cannot encode an image as {extension!r} for {path}")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    storage.atomic_write_bytes(path, data.tobytes())


def list_images(path):
    """Image files of a directory (sorted, by extension) or [path] for a file."""
    if os.path.isdir(path):
        return sorted(os.path.join(path, name) for name in os.listdir(path)
                      if name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith("."))
    if os.path.isfile(path):
        return [path]
    raise FileNotFoundError(f"--images={path!r} is neither an image file nor a directory")
