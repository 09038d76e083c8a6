# Over 400 lines: schema v1 has one owner; its writer, its NumPy reader and its tf.data parser agree field by field.
"""TFRecord schema v1: one face as RGB + depth + validity mask + surface normals + labels.

Every dataset in expr3d (procedural faces, prepared AffectNet/RaFD) is stored as `tf.train.Example`s with these
features. Geometry follows one convention (see README "Conventions"): camera space x right, y up, z toward the camera;
`depth` is the positive distance along the optical axis (smaller = nearer); normals are unit vectors in camera space
facing the camera.

| feature | type | meaning |
|---|---|---|
| schema/version | int64 | 1 |
| image/encoded, image/format | bytes, bytes | RGB PNG or JPEG; "png" or "jpeg" |
| image/height, image/width | int64 | size shared by image, depth, mask and normals |
| depth/encoded, depth/format | bytes, bytes | "png16": 16-bit PNG, depth = offset + scale * v, v = 0 invalid; "float16": raw little-endian H*W float16 |
| depth/scale, depth/offset | float | the png16 mapping (1, 0 for float16) |
| mask/encoded | bytes | 8-bit PNG, 255 where depth and normals are valid |
| normals/encoded | bytes | 8-bit RGB PNG of (n + 1) * 127.5 (x, y, z in R, G, B) |
| label/expression | int64 | 0-7 in `expr3d.labels.EXPRESSIONS` order |
| label/action_units | float list | empty, or one intensity in [0, 1] per `expr3d.labels.ACTION_UNITS` |
| label/action_units_valid | int64 list | optional: absent or empty = every stored intensity was measured; else 17 flags, 0 = that AU is missing (its intensity is stored as 0) |
| identity | int64 | subject id (-1 unknown) |
| pair_id | int64 | renders sharing identity, pose and light under different expressions share it (-1 none) |
| key | bytes | source key (file stem, dataset-specific id) |
| transfer/source_key | bytes | optional: the key of the render whose identity, pose, light, background it keeps |
| transfer/exemplar_key | bytes | optional: the key of the render whose action units and label it takes |

The two `transfer/*` features are written only on the procedural transfer ground truth (`--transfer_pairs`, split
"transfer", `expr3d.data.transfer`); every other record lacks them, so records written before they existed read
unchanged (both readers give "" when absent) and the schema version stays 1.
"""
import dataclasses

import cv2
import numpy as np

from expr3d.imaging.pixels import from_uint8, to_uint8
from expr3d.labels import NUM_ACTION_UNITS, NUM_EXPRESSIONS

SCHEMA_VERSION = 1
IMAGE_FORMATS = ("png", "jpeg")
DEPTH_FORMATS = ("png16", "float16")
_PNG16_MAX = 65535
# Optional features of the transfer ground truth (absent elsewhere; both readers default them to "").
TRANSFER_FEATURES = ("transfer/source_key", "transfer/exemplar_key")


class RecordError(ValueError):
    """A stored example is malformed; the message names the shard, the record and the field."""


class MissingShardError(RecordError, FileNotFoundError):
    """A shard the dataset card lists is not there; the message names it."""


@dataclasses.dataclass
class FaceExample:
    """One face in numpy form, as written to and read from shards.

    Args:
        image: uint8 [H, W, 3] RGB.
        depth: float [H, W] positive distance along the optical axis; ignored where `mask` is False.
        mask: bool [H, W], True where depth and normals are valid.
        normals: float [H, W, 3] unit camera-space normals; ignored where `mask` is False.
        expression: class id 0-7.
        identity: subject id (-1 unknown).
        key: a source key, unique within the dataset.
        action_units: float [17] intensities in `ACTION_UNITS` order, or None.
        action_units_valid: bool [17], False where an AU is missing (not measured: e.g. AU16, which OpenFace does
            not estimate), or None when every intensity is measured. Missing intensities are stored as 0, so
            readers older than this field see 0 (never NaN); `action_units_mask` gives the validity as 0/1.
        pair_id: renders of one identity, pose and light under different expressions share it; -1 for none.
        transfer_source_key, transfer_exemplar_key: on transfer ground truth only (both or neither), the keys of
            the render it keeps identity, pose, light and background of, and of the render whose AUs it takes.
        image_format: "png" (lossless) or "jpeg".
        depth_format: "png16" (16-bit, per-example scale/offset) or "float16".

    Example:
        ex = FaceExample(image=rgb, depth=z, mask=z > 0, normals=n, expression=1, identity=7, key="id7_happy")
        serialized = encode_example(ex)
    """

    image: np.ndarray
    depth: np.ndarray
    mask: np.ndarray
    normals: np.ndarray
    expression: int
    identity: int = -1
    key: str = ""
    action_units: np.ndarray | None = None
    pair_id: int = -1
    image_format: str = "png"
    depth_format: str = "png16"
    action_units_valid: np.ndarray | None = None
    transfer_source_key: str = ""
    transfer_exemplar_key: str = ""

    def action_units_mask(self):
        """float32 [17]: 1 where an intensity is stored and measured, 0 where it is missing or there are none."""
        if self.action_units is None:
            return np.zeros(NUM_ACTION_UNITS, np.float32)
        if self.action_units_valid is None:
            return np.ones(NUM_ACTION_UNITS, np.float32)
        return np.asarray(self.action_units_valid, bool).astype(np.float32)

    def validate(self, where="example"):
        """Raise RecordError naming `where` and the field if anything is inconsistent."""
        def fail(field, message):
            raise RecordError(f"{where}: field '{field}': {message}")

        image = np.asarray(self.image)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            fail("image", f"expected uint8 [H, W, 3] RGB, got {image.dtype} {image.shape}")
        height, width = image.shape[:2]
        if height < 1 or width < 1:
            fail("image", f"empty image {image.shape}")
        for name, value, shape in (("depth", self.depth, (height, width)), ("mask", self.mask, (height, width)),
                                   ("normals", self.normals, (height, width, 3))):
            if np.shape(value) != shape:
                fail(name, f"expected shape {shape} to match the image, got {np.shape(value)}")
        mask = np.asarray(self.mask, bool)
        depth = np.asarray(self.depth, np.float64)
        if mask.any():
            valid = depth[mask]
            if not np.all(np.isfinite(valid)):
                fail("depth", "non-finite depth inside the mask")
            if np.any(valid <= 0):
                fail("depth", "depth must be > 0 inside the mask (distance along the optical axis)")
            if not np.all(np.isfinite(np.asarray(self.normals)[mask])):
                fail("normals", "non-finite normals inside the mask")
        if not 0 <= int(self.expression) < NUM_EXPRESSIONS:
            fail("label/expression", f"{self.expression} is outside 0-{NUM_EXPRESSIONS - 1}")
        if self.action_units is not None:
            aus = np.asarray(self.action_units, np.float32)
            if aus.shape != (NUM_ACTION_UNITS,):
                fail("label/action_units", f"expected {NUM_ACTION_UNITS} intensities, got shape {aus.shape}")
            if not np.all(np.isfinite(aus)):
                fail("label/action_units", "non-finite intensity")
        if self.action_units_valid is not None:
            valid = np.asarray(self.action_units_valid)
            if self.action_units is None:
                fail("label/action_units_valid", "given without label/action_units")
            if valid.shape != (NUM_ACTION_UNITS,) or not np.all((valid == 0) | (valid == 1)):
                fail("label/action_units_valid", f"expected {NUM_ACTION_UNITS} flags of 0/1, got {valid.dtype} "
                                                 f"{valid.shape}")
        if self.image_format not in IMAGE_FORMATS:
            fail("image/format", f"{self.image_format!r} is not one of {IMAGE_FORMATS}")
        if self.depth_format not in DEPTH_FORMATS:
            fail("depth/format", f"{self.depth_format!r} is not one of {DEPTH_FORMATS}")
        if bool(self.transfer_source_key) != bool(self.transfer_exemplar_key):
            fail("transfer/source_key" if not self.transfer_source_key else "transfer/exemplar_key",
                 "transfer ground truth needs both transfer/source_key and transfer/exemplar_key")


def _encode_png(array):
    ok, buffer = cv2.imencode(".png", array)
    if not ok:
        raise RecordError(f"PNG encoding failed for an array of {array.dtype} {array.shape}")
    return buffer.tobytes()


def _encode_depth(depth, mask, depth_format):
    """Return (bytes, scale, offset). png16 maps the valid range onto 1..65535 so 0 can mean invalid."""
    depth = np.asarray(depth, np.float64)
    if depth_format == "float16":
        values = np.where(mask, depth, 0.0).astype("<f2")
        return values.tobytes(), 1.0, 0.0
    if not mask.any():
        return _encode_png(np.zeros(depth.shape, np.uint16)), 1.0, 0.0
    lo, hi = float(depth[mask].min()), float(depth[mask].max())
    span = max(hi - lo, 1e-6 * max(abs(hi), 1.0))
    scale = span / (_PNG16_MAX - 1)
    offset = lo - scale  # v = 1 is the nearest valid depth
    # Store the float32 values the reader will use, so decode(encode(z)) is exact to one quantisation step.
    scale, offset = float(np.float32(scale)), float(np.float32(offset))
    values = np.clip(np.rint((depth - offset) / scale), 1, _PNG16_MAX)
    return _encode_png(np.where(mask, values, 0).astype(np.uint16)), scale, offset


def encode_example(example):
    """Serialize a validated FaceExample to tf.train.Example bytes."""
    import tensorflow as tf

    example.validate(where=f"example {example.key!r}")
    image = np.asarray(example.image)
    mask = np.asarray(example.mask, bool)
    height, width = image.shape[:2]
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    if example.image_format == "png":
        image_bytes = _encode_png(bgr)
    else:
        ok, buffer = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 95])
        image_bytes = buffer.tobytes()
    depth_bytes, scale, offset = _encode_depth(example.depth, mask, example.depth_format)
    normals = np.where(mask[..., None], np.asarray(example.normals, np.float64), 0.0)
    normals_u8 = to_uint8(normals)
    aus = [] if example.action_units is None else np.asarray(example.action_units, np.float32).tolist()

    def b(value):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))

    def i(value):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))

    def f(values):
        return tf.train.Feature(float_list=tf.train.FloatList(value=list(values)))

    features = {
        "schema/version": i(SCHEMA_VERSION),
        "image/encoded": b(image_bytes),
        "image/format": b(example.image_format.encode()),
        "image/height": i(height),
        "image/width": i(width),
        "depth/encoded": b(depth_bytes),
        "depth/format": b(example.depth_format.encode()),
        "depth/scale": f([scale]),
        "depth/offset": f([offset]),
        "mask/encoded": b(_encode_png(mask.astype(np.uint8) * 255)),
        "normals/encoded": b(_encode_png(cv2.cvtColor(normals_u8, cv2.COLOR_RGB2BGR))),
        "label/expression": i(example.expression),
        "label/action_units": f(aus),
        "identity": i(example.identity),
        "pair_id": i(example.pair_id),
        "key": b(str(example.key).encode()),
    }
    if example.action_units_valid is not None:  # only then: examples without it keep their exact bytes
        features["label/action_units_valid"] = tf.train.Feature(int64_list=tf.train.Int64List(
            value=np.asarray(example.action_units_valid, bool).astype(int).tolist()))
    if example.transfer_source_key:
        # Only on transfer ground truth: every other record stays byte-identical to what earlier versions wrote.
        features["transfer/source_key"] = b(str(example.transfer_source_key).encode())
        features["transfer/exemplar_key"] = b(str(example.transfer_exemplar_key).encode())
    # deterministic=True: the same example gives the same bytes in every process, so shards are byte-reproducible.
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString(deterministic=True)


def _feature(features, name, kind, where):
    if name not in features:
        raise RecordError(f"{where}: field '{name}' is missing")
    stored = features[name].WhichOneof("kind")
    if stored is not None and stored != kind:
        raise RecordError(f"{where}: field '{name}' is stored as {stored}, expected {kind}")
    values = getattr(features[name], kind).value
    return values


def _single(features, name, kind, where):
    values = _feature(features, name, kind, where)
    if len(values) != 1:
        raise RecordError(f"{where}: field '{name}' should hold one value, holds {len(values)}")
    return values[0]


def _decode_png(data, flags, where, field):
    array = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    if array is None:
        raise RecordError(f"{where}: field '{field}' is not a decodable image")
    return array


def decode_example(serialized, where="record", expected_size=None):
    """Parse and fully validate one serialized example in numpy; return a FaceExample.

    Raises RecordError naming `where` (e.g. "train-00003.tfrecord record 17") and the field. As a reader it also
    refuses what the writer allows but no consumer can use: an empty mask, and (with `expected_size`, the dataset
    card's image_size) a size other than the card's - the same checks as `parse_example`.
    """
    import tensorflow as tf

    try:
        proto = tf.train.Example.FromString(serialized)
    except Exception as error:  # protobuf raises DecodeError, a private class
        raise RecordError(f"{where}: not a tf.train.Example ({error})") from None
    features = proto.features.feature
    version = _single(features, "schema/version", "int64_list", where)
    if version != SCHEMA_VERSION:
        raise RecordError(f"{where}: field 'schema/version' is {version}; this expr3d reads version {SCHEMA_VERSION}")
    height = _single(features, "image/height", "int64_list", where)
    width = _single(features, "image/width", "int64_list", where)
    if expected_size is not None and (height, width) != (expected_size, expected_size):
        raise RecordError(f"{where}: image/height x image/width is {height}x{width}, the dataset card's image_size "
                          f"is {expected_size}")
    image_format = _single(features, "image/format", "bytes_list", where).decode()
    if image_format not in IMAGE_FORMATS:
        raise RecordError(f"{where}: field 'image/format' is {image_format!r}, not one of {IMAGE_FORMATS}")
    bgr = _decode_png(_single(features, "image/encoded", "bytes_list", where), cv2.IMREAD_COLOR, where,
                      "image/encoded")
    if bgr.shape[:2] != (height, width):
        raise RecordError(f"{where}: field 'image/encoded' is {bgr.shape[1]}x{bgr.shape[0]}, "
                          f"image/height and image/width say {width}x{height}")
    image = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    mask = _decode_png(_single(features, "mask/encoded", "bytes_list", where), cv2.IMREAD_UNCHANGED, where,
                       "mask/encoded")
    if mask.shape != (height, width):
        raise RecordError(f"{where}: field 'mask/encoded' has shape {mask.shape}, expected {(height, width)}")
    mask = mask > 127
    if not mask.any():
        raise RecordError(f"{where}: field 'mask/encoded' is empty (no valid depth or normals)")
    depth_format = _single(features, "depth/format", "bytes_list", where).decode()
    depth_bytes = _single(features, "depth/encoded", "bytes_list", where)
    scale = _single(features, "depth/scale", "float_list", where)
    offset = _single(features, "depth/offset", "float_list", where)
    if depth_format == "png16":
        raw = _decode_png(depth_bytes, cv2.IMREAD_UNCHANGED, where, "depth/encoded")
        if raw.dtype != np.uint16 or raw.shape != (height, width):
            raise RecordError(f"{where}: field 'depth/encoded' should be a {width}x{height} 16-bit PNG, "
                              f"got {raw.dtype} {raw.shape}")
        depth = np.where(raw > 0, np.float32(offset) + np.float32(scale) * raw.astype(np.float32), 0.0)
    elif depth_format == "float16":
        if len(depth_bytes) != 2 * height * width:
            raise RecordError(f"{where}: field 'depth/encoded' holds {len(depth_bytes)} bytes, "
                              f"expected {2 * height * width} for {width}x{height} float16")
        depth = np.frombuffer(depth_bytes, "<f2").reshape(height, width).astype(np.float32)
    else:
        raise RecordError(f"{where}: field 'depth/format' is {depth_format!r}, not one of {DEPTH_FORMATS}")
    normals_bgr = _decode_png(_single(features, "normals/encoded", "bytes_list", where), cv2.IMREAD_COLOR, where,
                              "normals/encoded")
    if normals_bgr.shape[:2] != (height, width):
        raise RecordError(f"{where}: field 'normals/encoded' has shape {normals_bgr.shape[:2]}, "
                          f"expected {(height, width)}")
    normals = from_uint8(cv2.cvtColor(normals_bgr, cv2.COLOR_BGR2RGB))
    normals[~mask] = 0.0
    aus = np.asarray(_feature(features, "label/action_units", "float_list", where), np.float32)
    valid = None
    if "label/action_units_valid" in features:
        flags = np.asarray(_feature(features, "label/action_units_valid", "int64_list", where), np.int64)
        if flags.size not in (0, NUM_ACTION_UNITS) or not np.all((flags == 0) | (flags == 1)):
            raise RecordError(f"{where}: field 'label/action_units_valid' must hold 0 or {NUM_ACTION_UNITS} flags "
                              f"of 0/1, holds {flags.tolist()[:NUM_ACTION_UNITS + 1]}")
        valid = flags.astype(bool) if flags.size else None
    transfer_keys = [_single(features, name, "bytes_list", where).decode() if name in features else ""
                     for name in TRANSFER_FEATURES]
    example = FaceExample(
        image=image, depth=depth.astype(np.float32), mask=mask, normals=normals,
        expression=int(_single(features, "label/expression", "int64_list", where)),
        identity=int(_single(features, "identity", "int64_list", where)),
        key=_single(features, "key", "bytes_list", where).decode(),
        action_units=aus if aus.size else None,
        pair_id=int(_single(features, "pair_id", "int64_list", where)),
        image_format=image_format, depth_format=depth_format, action_units_valid=valid,
        transfer_source_key=transfer_keys[0], transfer_exemplar_key=transfer_keys[1])
    example.validate(where=where)
    return example


def _example_features(serialized, where):
    """The feature map of one serialized tf.train.Example; RecordError naming `where` when it is not one."""
    import tensorflow as tf

    try:
        return tf.train.Example.FromString(serialized).features.feature
    except Exception as error:
        raise RecordError(f"{where}: not a tf.train.Example ({error})") from None


def read_labels(serialized, where="record"):
    """Return (expression, identity, pair_id, key) without decoding images: cheap, for counting."""
    features = _example_features(serialized, where)
    expression = int(_single(features, "label/expression", "int64_list", where))
    if not 0 <= expression < NUM_EXPRESSIONS:
        raise RecordError(f"{where}: field 'label/expression' is {expression}, outside 0-{NUM_EXPRESSIONS - 1}")
    return (expression, int(_single(features, "identity", "int64_list", where)),
            int(_single(features, "pair_id", "int64_list", where)),
            _single(features, "key", "bytes_list", where).decode())


def read_action_units(serialized, where="record"):
    """Return (expression, action_units float32 [17] or None, valid bool [17], key) without decoding images."""
    features = _example_features(serialized, where)
    expression = int(_single(features, "label/expression", "int64_list", where))
    aus = np.asarray(_feature(features, "label/action_units", "float_list", where), np.float32)
    key = _single(features, "key", "bytes_list", where).decode()
    if aus.size == 0:
        return expression, None, np.zeros(NUM_ACTION_UNITS, bool), key
    if aus.shape != (NUM_ACTION_UNITS,) or not np.all(np.isfinite(aus)):
        raise RecordError(f"{where}: field 'label/action_units' must hold {NUM_ACTION_UNITS} finite intensities")
    valid = np.ones(NUM_ACTION_UNITS, bool)
    if "label/action_units_valid" in features:
        flags = np.asarray(_feature(features, "label/action_units_valid", "int64_list", where), np.int64)
        if flags.size:
            valid = flags == 1
    return expression, aus, valid, key


def read_transfer_keys(serialized, where="record"):
    """Return (key, transfer/source_key, transfer/exemplar_key) without decoding images; "" for an absent one."""
    features = _example_features(serialized, where)
    return tuple(_single(features, name, "bytes_list", where).decode() if name in features else ""
                 for name in ("key",) + TRANSFER_FEATURES)


# --- TensorFlow side: parsing inside tf.data ---------------------------------------------------------------------

def feature_spec():
    """The tf.io feature spec of schema v1."""
    import tensorflow as tf

    return {
        "schema/version": tf.io.FixedLenFeature([], tf.int64),
        "image/encoded": tf.io.FixedLenFeature([], tf.string),
        "image/format": tf.io.FixedLenFeature([], tf.string),
        "image/height": tf.io.FixedLenFeature([], tf.int64),
        "image/width": tf.io.FixedLenFeature([], tf.int64),
        "depth/encoded": tf.io.FixedLenFeature([], tf.string),
        "depth/format": tf.io.FixedLenFeature([], tf.string),
        "depth/scale": tf.io.FixedLenFeature([], tf.float32),
        "depth/offset": tf.io.FixedLenFeature([], tf.float32),
        "mask/encoded": tf.io.FixedLenFeature([], tf.string),
        "normals/encoded": tf.io.FixedLenFeature([], tf.string),
        "label/expression": tf.io.FixedLenFeature([], tf.int64),
        "label/action_units": tf.io.VarLenFeature(tf.float32),
        "label/action_units_valid": tf.io.VarLenFeature(tf.int64),
        "identity": tf.io.FixedLenFeature([], tf.int64, default_value=-1),
        "pair_id": tf.io.FixedLenFeature([], tf.int64, default_value=-1),
        "key": tf.io.FixedLenFeature([], tf.string, default_value=""),
        "transfer/source_key": tf.io.FixedLenFeature([], tf.string, default_value=""),
        "transfer/exemplar_key": tf.io.FixedLenFeature([], tf.string, default_value=""),
    }


DATA_ERROR_PREFIX = "expr3d data error: "


def parse_example(serialized, source=None, expected_size=None):
    """Parse one serialized example into tensors (graph-safe, for `tf.data.Dataset.map`), checking it on the way.

    Returns a dict: image uint8 [H,W,3], depth float32 [H,W,1] (distance, 0 where invalid), mask float32 [H,W,1],
    normals float32 [H,W,3] (0 outside the mask), expression int32, action_units float32 [17], has_action_units bool,
    action_units_mask float32 [17] (1 where an intensity is measured: `label/action_units_valid`, all 1 without
    it, all 0 without intensities; `action_units` is 0 wherever the mask is 0), identity int64, pair_id int64,
    key string, transfer_source_key and transfer_exemplar_key string ("" unless the record is transfer ground truth).

    A record failing a check stops with `tf.errors.InvalidArgumentError` whose message holds ONE line
    "expr3d data error: <source> (key <key>): <problem>" (`data_error_line` extracts it); `source` is a string
    tensor such as "data/x/train-00001.tfrecord record 7". The checks: schema version, label range, sizes (every
    decoded map matches image/height x image/width, and that is
    `expected_size` x `expected_size`, the dataset card's size, when given), action-unit count, a non-empty mask,
    and depth finite and > 0 inside the mask (normals are 8-bit, hence always finite). They are a few vectorised
    boolean reductions over maps that are decoded anyway, and the message is built only when one fails (see
    benchmarks/bench_pipeline.py for the cost). A field that is missing or of the wrong type, a format that is not
    one of the schema's, or bytes that do not decode fail in TensorFlow's own parser or decoders instead, with a
    message that names neither shard nor record (`expr3d.data.pipeline.describe_read_error` then finds the record).
    """
    import tensorflow as tf

    parsed = tf.io.parse_single_example(serialized, feature_spec())
    source = tf.constant("record") if source is None else tf.convert_to_tensor(source)
    key = parsed["key"]
    height = tf.cast(parsed["image/height"], tf.int32)
    width = tf.cast(parsed["image/width"], tf.int32)

    def gate(checks):
        """All (condition, message) of a group hold, else an error whose single data string names the first failure
        and the record. The message is built only on failure (a cond), so a sound record costs the conditions."""
        conditions = tf.stack([condition for condition, _ in checks])

        def fail():
            first = tf.argmin(tf.cast(conditions, tf.int32))
            message = tf.gather(tf.stack([message() if callable(message) else tf.constant(message)
                                          for _, message in checks]), first)
            where = tf.strings.join([source, tf.where(tf.equal(key, ""), "", tf.strings.join([" (key ", key, ")"]))])
            line = tf.strings.join([DATA_ERROR_PREFIX, where, ": ", message])
            with tf.control_dependencies([tf.debugging.Assert(False, [line])]):
                return tf.constant(False)

        return tf.cond(tf.reduce_all(conditions), lambda: tf.constant(True), fail)

    expression = parsed["label/expression"]
    num_aus = tf.size(parsed["label/action_units"].values)
    au_flags = parsed["label/action_units_valid"].values
    num_flags = tf.size(au_flags)
    header = [
        (tf.equal(parsed["schema/version"], SCHEMA_VERSION), f"field 'schema/version' is not {SCHEMA_VERSION}"),
        (tf.logical_and(expression >= 0, expression < NUM_EXPRESSIONS),
         f"field 'label/expression' is outside 0-{NUM_EXPRESSIONS - 1}"),
        (tf.logical_or(tf.equal(num_aus, 0), tf.equal(num_aus, NUM_ACTION_UNITS)),
         f"field 'label/action_units' must hold 0 or {NUM_ACTION_UNITS} values"),
        (tf.logical_and(tf.logical_or(tf.equal(num_flags, 0), tf.equal(num_flags, num_aus)),
                        tf.reduce_all(tf.logical_or(tf.equal(au_flags, 0), tf.equal(au_flags, 1)))),
         "field 'label/action_units_valid' must hold 0 flags, or one 0/1 flag per label/action_units value"),
    ]
    if expected_size is not None:
        header.append((tf.logical_and(tf.equal(height, expected_size), tf.equal(width, expected_size)),
                       lambda: tf.strings.join(["image/height x image/width is ", tf.strings.as_string(height), "x",
                                                tf.strings.as_string(width),
                                                f", the dataset card's image_size is {int(expected_size)}"])))
    with tf.control_dependencies([gate(header)]):
        image = tf.io.decode_image(parsed["image/encoded"], channels=3, expand_animations=False)
        mask_u8 = tf.io.decode_png(parsed["mask/encoded"], channels=1)
        normals_u8 = tf.io.decode_png(parsed["normals/encoded"], channels=3)

    def png16_depth():
        raw = tf.cast(tf.io.decode_png(parsed["depth/encoded"], channels=1, dtype=tf.uint16), tf.float32)
        return tf.where(raw > 0, parsed["depth/offset"] + parsed["depth/scale"] * raw, 0.0)

    def float16_depth():
        raw = tf.io.decode_raw(parsed["depth/encoded"], tf.float16, little_endian=True)
        return tf.reshape(tf.cast(raw, tf.float32), tf.stack([height, width, 1]))

    depth = tf.cond(tf.equal(parsed["depth/format"], "float16"), float16_depth, png16_depth)
    size = tf.stack([height, width])
    shapes = [(tf.reduce_all(tf.equal(tf.shape(tensor)[:2], size)),
               f"field '{name}' does not match image/height x image/width")
              for name, tensor in (("image/encoded", image), ("depth/encoded", depth), ("mask/encoded", mask_u8),
                                   ("normals/encoded", normals_u8))]
    with tf.control_dependencies([gate(shapes)]):
        valid = mask_u8 > 127
        # depth > 0 and < inf is False for NaN too: one comparison pair covers non-finite and non-positive depth.
        inside = tf.where(valid, depth, 1.0)
        values = [
            (tf.reduce_any(valid), "field 'mask/encoded' is empty (no valid depth or normals)"),
            (tf.reduce_all(tf.logical_and(inside > 0.0, inside < float("inf"))),
             "field 'depth/encoded': non-finite or non-positive depth inside the mask"),
        ]
    with tf.control_dependencies([gate(values)]):
        mask = tf.cast(valid, tf.float32)
    has_aus = tf.equal(num_aus, NUM_ACTION_UNITS)
    aus = parsed["label/action_units"].values
    au_mask = tf.cond(has_aus, lambda: tf.cond(tf.equal(num_flags, 0), lambda: tf.ones([NUM_ACTION_UNITS]),
                                               lambda: tf.reshape(tf.cast(au_flags, tf.float32), [NUM_ACTION_UNITS])),
                      lambda: tf.zeros([NUM_ACTION_UNITS], tf.float32))
    # tf.where, not a product: a missing AU reads 0 whatever was stored (even NaN from another writer).
    action_units = tf.cond(has_aus, lambda: tf.where(au_mask > 0, tf.reshape(aus, [NUM_ACTION_UNITS]), 0.0),
                           lambda: tf.zeros([NUM_ACTION_UNITS], tf.float32))
    normals = (tf.cast(normals_u8, tf.float32) / 127.5 - 1.0) * mask
    return {
        "image": image,
        # tf.where, not depth * mask: whatever lies outside the mask (even NaN in float16 depth) becomes 0.
        "depth": tf.where(valid, depth, 0.0),
        "mask": mask,
        "normals": normals,
        "expression": tf.cast(parsed["label/expression"], tf.int32),
        "action_units": action_units,
        "has_action_units": has_aus,
        "action_units_mask": au_mask,
        "identity": parsed["identity"],
        "pair_id": parsed["pair_id"],
        "key": parsed["key"],
        "transfer_source_key": parsed["transfer/source_key"],
        "transfer_exemplar_key": parsed["transfer/exemplar_key"],
    }


def data_error_line(message):
    """The one-line "<source>: <problem>" of a `parse_example` / pipeline check in a TensorFlow error message, or
    None when the message holds none (TensorFlow's own parse and decode errors)."""
    index = message.find(DATA_ERROR_PREFIX)
    if index < 0:
        return None
    line = message[index + len(DATA_ERROR_PREFIX):].splitlines()[0]
    opening = message[index - 1:index] if index > 0 else ""
    if opening in ("'", '"'):
        # Eager tf.debugging.Assert: the data is a bytes repr, b"..." or b'...'.
        end = line.rfind(opening)
    else:
        # In graphs it prints its data as "[...]", C-escaped; the line ends at the bracket that closes it.
        end = line.rfind("]")
    return _c_unescape(line[:end] if end >= 0 else line).strip()


def tf_error_text(error):
    """The first line of a TensorFlow error's message without its graph decorations ("{{function_node ...}}",
    " [Op:...]"), for a one-line message."""
    import re

    text = str(getattr(error, "message", "") or error).strip()
    line = text.splitlines()[0] if text else type(error).__name__
    line = re.sub(r"^\{\{function_node [^}]*\}\}\s*", "", line)
    cut = line.find(" [Op:")
    return (line[:cut] if cut >= 0 else line).strip()


def _c_unescape(text):
    """Undo the C escaping of TensorFlow's printed strings (\\', octal bytes of non-ASCII names); control
    characters stay escaped, so the text stays on one line."""
    import re

    simple = {b"n": b"\\n", b"t": b"\\t", b"r": b"\\r"}

    def replace(match):
        code = match.group(1)
        if code[:1] == b"x":
            return bytes([int(code[1:], 16)])
        if len(code) == 3:
            return bytes([int(code, 8) & 0xFF])
        return simple.get(code, code)

    raw = re.sub(rb"\\(x[0-9a-fA-F]{2}|[0-7]{3}|.)", replace, text.encode("utf-8", "surrogateescape"))
    return raw.decode("utf-8", "replace")
