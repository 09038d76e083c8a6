# Over 400 lines: the signatures' contract (this docstring) beside the in-graph checks that enforce it, used only here.
"""The serving graph of an exported run: named TF Serving signatures with resizing, normalisation and validation inside.

Signatures (inputs -> outputs; N images of one size H x W per request, any H, W >= 1):

    serving_default     images uint8 [N,H,W,3], expressions int32 [N] (or one id for all)   -> images uint8 [N,H,W,3]
    translate_encoded   image_bytes string [N] (JPEG/PNG), expressions string [N] (or one)   -> image_bytes string [N] (PNG)
                        (REST: {"b64": ...} in, {"b64": ...} out because the output key ends in "_bytes"; images of
                        different sizes may share a request: each comes back at its own size)
    estimate_depth      images uint8 [N,H,W,3]  -> depth float32 [N,H,W,1] in [-1,1] (+1 nearest),
                                                   normals float32 [N,H,W,3] unit camera-space (x right, y up, z to camera)
    translate_all       images uint8 [N,H,W,3]  -> images uint8 [N,8,H,W,3] (expressions in labels.EXPRESSIONS order),
                                                   expressions string [N,8] (the names, for reading the output)
    generator           image float32 [N,S,S,3] in [-1,1], condition float32 [N,8] (one-hot or probabilities)
                                                -> image float32 [N,S,S,3] in [-1,1]   (S = training size; the raw
                                                   network, the signature TFLite is converted from)

Image and id inputs are declared with unknown rank so that a wrong rank reaches the graph's own checks (the same
INVALID_ARGUMENT message in Python, saved_model_cli and TF Serving) instead of a client-side shape error.

Bounds checked in the graph, each an INVALID_ARGUMENT naming the input:
- `translate_encoded` reads every image's header before decoding anything (PNG: IHDR width/height; JPEG:
  `tf.image.extract_jpeg_shape`, which parses only the header) and refuses an image declaring more than
  `max_encoded_pixels` pixels (default MAX_ENCODED_PIXELS = 4096 x 4096; export's --max_encoded_pixels), naming its
  index and size, so one request cannot exhaust the server's memory. Images are then decoded and encoded one at a
  time (parallel_iterations=1), so a request holds at most one full-size image in flight.
- `generator` checks its condition (rank 2, 8 columns, one row per image, values in [0, 1] summing to 1 within
  CONDITION_TOLERANCE: one-hot or probabilities) and its size (height and width multiples of the generator's stride,
  GENERATOR_STRIDE = 4, and S x S as declared). The checks are asserts, which the TFLite converter drops: the TFLite
  models are unchanged.
"""
import numpy as np

from expr3d.labels import _ALIASES, EXPRESSIONS, NUM_EXPRESSIONS

SIGNATURE_KEYS = ("serving_default", "translate_encoded", "estimate_depth", "translate_all", "generator")
GENERATOR_SIGNATURE = "generator"

# translate_encoded: the most pixels (height x width, as the image's header declares them) one encoded image may have.
# At this bound a request peaks about 0.3 GB above the loaded model (measured: 312 MB for one 4096 x 4096 JPEG, 408 MB
# for three in one request: images are decoded and encoded one at a time; docs/reliability.md).
MAX_ENCODED_PIXELS = 4096 * 4096
# generator: how far a condition row's sum may be from 1 (float32 probabilities, e.g. a softmax, sum to 1 +- 1e-6).
CONDITION_TOLERANCE = 1e-3
# generator: its two stride-2 down-sampling stages (expr3d.models.ModelConfig.GENERATOR_DOWNSAMPLING).
GENERATOR_STRIDE = 4

# How far the face's depth range ([-1, 1] after the pipeline's per-face normalisation) extends relative to the image
# width ([-1, 1] across the crop): a face about 10 cm deep in a crop about 20 cm wide. Only the normals' tilt depends
# on it; the pipeline's min-max normalisation discards the true scale.
DEPTH_RELIEF = 0.5
_MIN_NZ = 0.1  # normals flatter than this are clipped before integrating them to depth
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"  # a PNG file's last 12 bytes: the empty IEND chunk
_JPEG_END = b"\xff\xd9"  # end-of-image marker
_JPEG_END_SLACK = 64  # bytes allowed after a JPEG's end marker (padding some writers append)


def _tf():
    import tensorflow as tf

    return tf


# --- graph pieces (pure TF, usable eagerly) -----------------------------------------------------------------------

def _padded_shape(x, rank):
    """tf.shape(x) padded with zeros to at least `rank` entries: indexing it never fails, whatever x's rank."""
    tf = _tf()
    return tf.concat([tf.shape(x), tf.zeros([rank], tf.int32)], axis=0)


def _guarded(x, checks):
    """x, computed only after `checks` (asserts) ran."""
    tf = _tf()
    with tf.control_dependencies(checks):
        return tf.identity(x)


def check_images(images, name="images"):
    """Validate a uint8 [N,H,W,3] batch in-graph (INVALID_ARGUMENT naming `name`); returns it as a rank-4 tensor.

    Every check reads only the rank and a zero-padded shape, so no check can itself fail on a malformed input, and
    each is conditioned on the earlier ones holding, so the error names the first thing that is wrong. The checked
    tensor is produced by a `tf.cond` on the same conditions (a dummy 1x1 image when they fail): a static shape
    assertion (`tf.ensure_shape`) on the input would let grappler assume the rank and fold the rank check away, and
    downstream ops could fail on a malformed input before the assert reports.
    """
    tf = _tf()
    rank = tf.rank(images)
    shape = _padded_shape(images, 4)
    rank_ok = tf.equal(rank, 4)
    channels_ok = tf.logical_or(tf.logical_not(rank_ok), tf.equal(shape[3], 3))
    size_ok = tf.logical_or(tf.logical_not(tf.logical_and(rank_ok, channels_ok)),
                            tf.reduce_all(shape[:3] > 0))
    checks = [
        tf.debugging.Assert(rank_ok, [f"{name} must be a batch of RGB images [N, H, W, 3] (rank 4); got shape",
                                      tf.shape(images)], summarize=8),
        tf.debugging.Assert(channels_ok, [f"{name} must have 3 channels (RGB) in the last axis; got shape",
                                          tf.shape(images)], summarize=8),
        tf.debugging.Assert(size_ok, [f"{name} must hold at least one image of non-zero height and width; got shape",
                                      tf.shape(images)], summarize=8),
    ]
    valid = tf.logical_and(rank_ok, tf.logical_and(channels_ok, size_ok))
    checked = tf.cond(valid,
                      lambda: tf.reshape(images, tf.concat([shape[:3], [3]], axis=0)),
                      lambda: tf.zeros([1, 1, 1, 3], images.dtype))
    checked = _guarded(checked, checks)
    checked.set_shape([None, None, None, 3])
    return checked


def _one_per_image(values, batch, name, what):
    """Flatten `values` (scalar or vector) and spread it over `batch` images, with in-graph checks.

    Returns (values [batch], checks, valid): the gather never fails, whatever the input, so only the asserts report.
    """
    tf = _tf()
    rank_ok = tf.rank(values) <= 1
    flat = tf.reshape(values, [-1])
    count = tf.size(flat)
    count_ok = tf.logical_or(tf.logical_not(rank_ok), tf.logical_or(tf.equal(count, 1), tf.equal(count, batch)))
    checks = [
        tf.debugging.Assert(rank_ok, [f"{name} must be a scalar or a vector of {what}s; got shape", tf.shape(values)]),
        tf.debugging.Assert(count_ok, [f"{name} must hold one {what} per image or a single {what} for all; got",
                                       count, f"{what}s for", batch, "images"]),
    ]
    padded = tf.concat([flat, tf.zeros([1], flat.dtype)], axis=0)
    index = tf.where(tf.equal(count, 1), tf.zeros([batch], tf.int32), tf.minimum(tf.range(batch), count))
    return tf.gather(padded, index), checks, tf.logical_and(rank_ok, count_ok)


def check_ids(ids, batch, name="expressions"):
    """Validate expression ids (scalar, or one per image) in-graph; returns int32 [batch]."""
    tf = _tf()
    ids, checks, shape_ok = _one_per_image(tf.cast(ids, tf.int32), batch, name, "expression id")
    bad = tf.logical_or(ids < 0, ids >= NUM_EXPRESSIONS)
    checks.append(tf.debugging.Assert(
        tf.logical_or(tf.logical_not(shape_ok), tf.logical_not(tf.reduce_any(bad))),
        [f"unknown expression id(s) in {name}:", tf.boolean_mask(ids, bad),
         f"; valid ids are 0-{NUM_EXPRESSIONS - 1} ({', '.join(EXPRESSIONS)})"], summarize=16))
    return _guarded(ids, checks)


def ids_from_names(names, batch, name="expressions"):
    """Expression names (case-insensitive, RaFD spellings accepted) -> int32 ids [batch], validated in-graph."""
    tf = _tf()
    vocabulary = list(EXPRESSIONS) + sorted(_ALIASES)
    vocabulary_ids = [EXPRESSIONS.index(v) if v in EXPRESSIONS else EXPRESSIONS.index(_ALIASES[v])
                      for v in vocabulary]
    names, checks, shape_ok = _one_per_image(names, batch, name, "expression name")
    keys = tf.strings.lower(tf.strings.strip(names))
    matches = tf.equal(keys[:, None], tf.constant(vocabulary)[None, :])
    known = tf.reduce_any(matches, axis=1)
    checks.append(tf.debugging.Assert(
        tf.logical_or(tf.logical_not(shape_ok), tf.reduce_all(known)),
        ["unknown expression name(s):", tf.boolean_mask(names, tf.logical_not(known)),
         f"; expected one of {', '.join(EXPRESSIONS)}"], summarize=16))
    ids = tf.gather(tf.constant(vocabulary_ids, tf.int32),
                    tf.argmax(tf.cast(matches, tf.int32), axis=1, output_type=tf.int32))
    return _guarded(ids, checks)


def check_generator_inputs(image, condition, size):
    """Validate the raw generator's inputs in-graph (INVALID_ARGUMENT naming the input); returns them, guarded.

    image: float32 [N, size, size, 3], its height and width multiples of GENERATOR_STRIDE. condition: float32 [N, 8],
    each row one-hot or probabilities (values in [0, 1], sum 1 +- CONDITION_TOLERANCE). Every check reads only ranks
    and zero-padded shapes, and each is conditioned on the earlier ones holding, so none can fail on a malformed input
    and the error names the first thing that is wrong.
    """
    tf = _tf()
    shape = _padded_shape(image, 4)
    c_shape = _padded_shape(condition, 2)
    rank_ok = tf.logical_and(tf.equal(tf.rank(image), 4), tf.equal(shape[3], 3))
    stride_ok = tf.logical_and(tf.logical_and(shape[1] > 0, shape[2] > 0),
                               tf.logical_and(tf.equal(shape[1] % GENERATOR_STRIDE, 0),
                                              tf.equal(shape[2] % GENERATOR_STRIDE, 0)))
    size_ok = tf.logical_and(tf.equal(shape[1], size), tf.equal(shape[2], size))
    c_shape_ok = tf.logical_and(tf.equal(tf.rank(condition), 2),
                                tf.logical_and(tf.equal(c_shape[1], NUM_EXPRESSIONS), tf.equal(c_shape[0], shape[0])))
    # Values, on a [-1, 8] view that exists whatever the shape (its checks only count when the shape is right).
    flat = tf.reshape(condition, [-1])
    rows = tf.reshape(tf.pad(flat, [[0, (-tf.size(flat)) % NUM_EXPRESSIONS]]), [-1, NUM_EXPRESSIONS])
    sums = tf.reduce_sum(rows, axis=1)
    row_ok = tf.logical_and(tf.reduce_all(tf.logical_and(rows >= 0.0, rows <= 1.0), axis=1),
                            tf.abs(sums - 1.0) <= CONDITION_TOLERANCE)  # NaN fails every comparison
    all_before = tf.logical_and(rank_ok, tf.logical_and(stride_ok, size_ok))
    checks = [
        tf.debugging.Assert(rank_ok, ["generator: image must be a batch of RGB images [N, H, W, 3]; got shape",
                                      tf.shape(image)], summarize=8),
        tf.debugging.Assert(tf.logical_or(tf.logical_not(rank_ok), stride_ok), [
            f"generator: image height and width must be positive multiples of {GENERATOR_STRIDE} (the generator "
            f"down-samples twice with stride 2) and equal {size} (the size it was trained and exported at); got "
            f"shape", tf.shape(image)], summarize=8),
        tf.debugging.Assert(tf.logical_or(tf.logical_not(tf.logical_and(rank_ok, stride_ok)), size_ok), [
            f"generator: image must be {size}x{size} (the size it was trained and exported at; resize first, or "
            f"use serving_default, which resizes in the graph); got shape", tf.shape(image)], summarize=8),
        tf.debugging.Assert(tf.logical_or(tf.logical_not(all_before), c_shape_ok), [
            f"generator: condition must be [N, {NUM_EXPRESSIONS}], one row per image (N =", shape[0], "); got shape",
            tf.shape(condition)], summarize=8),
        tf.debugging.Assert(
            tf.logical_or(tf.logical_not(tf.logical_and(all_before, c_shape_ok)), tf.reduce_all(row_ok)),
            [f"generator: condition rows must be one-hot or probabilities (values in [0, 1] summing to 1 within "
             f"{CONDITION_TOLERANCE}); bad row(s)", tf.where(tf.logical_not(row_ok))[:, 0], "with sums",
             tf.boolean_mask(sums, tf.logical_not(row_ok))], summarize=16),
    ]
    return _guarded(image, checks), _guarded(condition, checks)


def encoded_sizes(image_bytes, usable):
    """(height, width) int64 [N, 2] each encoded image's header declares, read without decoding pixels.

    PNG: the IHDR chunk's width and height (big-endian, bytes 16-24). JPEG: `tf.image.extract_jpeg_shape` (parses the
    markers up to the frame header). Only entries where `usable` is true are read (the others give 1 x 1), so the
    ops cannot fail on bytes that are not a complete PNG or JPEG.
    """
    tf = _tf()
    padded = tf.strings.join([image_bytes, b"\x00" * 24])  # at least 24 bytes: the substr below always exists
    ihdr = tf.cast(tf.reshape(tf.io.decode_raw(tf.strings.substr(padded, 16, 8), tf.uint8), [-1, 8]), tf.int64)
    big_endian = tf.constant([[2 ** 24, 2 ** 16, 2 ** 8, 1]], tf.int64)
    png_hw = tf.stack([tf.reduce_sum(ihdr[:, 4:] * big_endian, axis=1),
                       tf.reduce_sum(ihdr[:, :4] * big_endian, axis=1)], axis=1)
    is_png = tf.logical_and(usable, tf.equal(tf.strings.substr(image_bytes, 0, len(_PNG_MAGIC)), _PNG_MAGIC))
    is_jpeg = tf.logical_and(usable, tf.logical_not(is_png))
    placeholder = tf.io.encode_jpeg(tf.zeros([1, 1, 3], tf.uint8))
    jpeg_hw = tf.map_fn(lambda data: tf.cast(tf.image.extract_jpeg_shape(data)[:2], tf.int64),
                        tf.where(is_jpeg, image_bytes, placeholder),
                        fn_output_signature=tf.TensorSpec([2], tf.int64))
    return tf.where(is_png[:, None], png_hw, tf.where(is_jpeg[:, None], jpeg_hw, tf.ones_like(png_hw)))


def to_model_input(images, size):
    """uint8 [N,H,W,3] -> float32 [N,size,size,3] in [-1, 1] (area-preserving resize when shrinking)."""
    tf = _tf()
    x = tf.cast(images, tf.float32)
    x = tf.image.resize(x, [size, size], method="bilinear", antialias=True)
    return tf.clip_by_value(x / 127.5 - 1.0, -1.0, 1.0)


def to_uint8(x, height, width):
    """float [N,S,S,3] in [-1, 1] -> uint8 [N,height,width,3] (resized back, rounded, clipped)."""
    tf = _tf()
    x = tf.image.resize(x, tf.stack([height, width]), method="bilinear", antialias=True)
    return tf.cast(tf.clip_by_value(tf.round((x + 1.0) * 127.5), 0.0, 255.0), tf.uint8)


def normals_from_depth(depth, relief=DEPTH_RELIEF):
    """Unit camera-space normals [N,S,S,3] of a depth map [N,S,S,1] in [-1, 1] (+1 nearest) by central differences.

    The height toward the camera is `relief * depth` in units where the image spans [-1, 1] horizontally; x runs
    right and y up (image rows run down), so n ~ (-dh/dx, -dh/dy, 1) with n_z > 0.
    """
    tf = _tf()
    size = tf.cast(tf.shape(depth)[2], tf.float32)
    step = 2.0 / size
    h = relief * tf.pad(depth, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="SYMMETRIC")
    dh_dcol = (h[:, 1:-1, 2:] - h[:, 1:-1, :-2]) / (2.0 * step)
    dh_drow = (h[:, 2:, 1:-1] - h[:, :-2, 1:-1]) / (2.0 * step)
    # y points up, rows down: dh/dy = -dh/drow.
    normals = tf.concat([-dh_dcol, dh_drow, tf.ones_like(dh_dcol)], axis=-1)
    return tf.math.l2_normalize(normals, axis=-1)


def depth_from_normals(normals):
    """Relative depth [N,S,S,1] in [-1, 1] (+1 nearest) integrated from unit normals (Frankot-Chellappa, FFT).

    Used for runs whose geometry map is normals; the absolute scale is lost, so the result is min-max normalised
    per image like the training depth.
    """
    tf = _tf()
    nz = tf.maximum(normals[..., 2], _MIN_NZ)
    g_col = -normals[..., 0] / nz  # dh/dcol
    g_row = normals[..., 1] / nz  # dh/drow (y up = -row)
    height = tf.shape(normals)[1]
    width = tf.shape(normals)[2]
    w_col = 2.0 * np.pi * tf.signal.fftshift(tf.range(width, dtype=tf.float32) - tf.cast(width // 2, tf.float32))
    w_row = 2.0 * np.pi * tf.signal.fftshift(tf.range(height, dtype=tf.float32) - tf.cast(height // 2, tf.float32))
    w_col = w_col / tf.cast(width, tf.float32)
    w_row = w_row / tf.cast(height, tf.float32)
    wc = w_col[None, None, :]
    wr = w_row[None, :, None]
    gc = tf.signal.fft2d(tf.complex(g_col, 0.0))
    gr = tf.signal.fft2d(tf.complex(g_row, 0.0))
    denominator = wc ** 2 + wr ** 2
    denominator = tf.where(denominator > 0, denominator, tf.ones_like(denominator))
    numerator = tf.complex(0.0, -1.0) * (tf.complex(wc, 0.0) * gc + tf.complex(wr, 0.0) * gr)
    spectrum = numerator / tf.complex(denominator, 0.0)
    h = tf.math.real(tf.signal.ifft2d(spectrum))
    low = tf.reduce_min(h, axis=[1, 2], keepdims=True)
    high = tf.reduce_max(h, axis=[1, 2], keepdims=True)
    depth = 2.0 * (h - low) / tf.maximum(high - low, 1e-6) - 1.0
    return depth[..., None]


def decode_requests(image_bytes, image_size, max_encoded_pixels, name="image_bytes"):
    """Encoded JPEG/PNG images (scalar or vector) -> (float32 [N,S,S,3] in [-1,1], their sizes int32 [N,2], N), checked
    in-graph (INVALID_ARGUMENT naming `name`): rank, at least one image, complete files, and each header's pixel count
    at most `max_encoded_pixels` before anything is decoded. Decoded one image at a time."""
    tf = _tf()
    rank_ok = tf.rank(image_bytes) <= 1
    image_bytes = tf.reshape(image_bytes, [-1])
    count = tf.size(image_bytes)
    is_png = tf.equal(tf.strings.substr(image_bytes, 0, len(_PNG_MAGIC)), _PNG_MAGIC)
    is_jpeg = tf.equal(tf.strings.substr(image_bytes, 0, len(_JPEG_MAGIC)), _JPEG_MAGIC)
    # Truncation (a partial upload, the common corruption) is caught here so the error can name the input: a PNG
    # ends with its IEND chunk, a JPEG with its end-of-image marker (up to _JPEG_END_SLACK padding bytes after it).
    # Corruption inside a complete file still surfaces as the decoder's own INVALID_ARGUMENT.
    # (Left-padded first: substr of a tail longer than the string would itself fail.)
    padded = tf.strings.join([b"\x00" * (_JPEG_END_SLACK + len(_PNG_END)), image_bytes])
    png_complete = tf.equal(tf.strings.substr(padded, -len(_PNG_END), len(_PNG_END)), _PNG_END)
    jpeg_complete = tf.reduce_any(tf.stack(
        [tf.equal(tf.strings.substr(padded, -(k + len(_JPEG_END)), len(_JPEG_END)), _JPEG_END)
         for k in range(_JPEG_END_SLACK + 1)], axis=0), axis=0)
    recognised = tf.logical_or(tf.logical_and(is_png, png_complete), tf.logical_and(is_jpeg, jpeg_complete))
    checks = [
        tf.debugging.Assert(rank_ok, [f"{name} must be a scalar or a vector of encoded JPEG/PNG images"]),
        tf.debugging.Assert(tf.logical_or(tf.logical_not(rank_ok), count > 0),
                            [f"{name} is empty: send at least one image"]),
        tf.debugging.Assert(
            tf.logical_or(tf.logical_not(rank_ok), tf.reduce_all(recognised)),
            [f"{name}: undecodable input at index(es)", tf.where(tf.logical_not(recognised))[:, 0],
             "- each element must be the bytes of a complete JPEG or PNG file (not truncated; over REST: "
             "{\"b64\": <base64 of the file>})"],
            summarize=16),
    ]
    # The pixel bound, from each header before anything is decoded (a few kB of PNG can declare 100000 x 100000).
    declared = encoded_sizes(image_bytes, recognised)
    too_big = tf.logical_and(recognised, declared[:, 0] * declared[:, 1] > max_encoded_pixels)
    checks.append(tf.debugging.Assert(
        tf.logical_or(tf.logical_not(rank_ok), tf.logical_not(tf.reduce_any(too_big))),
        [f"{name}: image(s) at index(es)", tf.where(too_big)[:, 0], "declare (height, width)",
         tf.boolean_mask(declared, too_big), f"- more than the {max_encoded_pixels} pixels this model "
         f"decodes per image (export's --max_encoded_pixels); send a smaller image"], summarize=16))
    # Refused entries are swapped for a 1x1 PNG so the decoder cannot fail (or allocate) before the asserts report.
    placeholder = tf.io.encode_png(tf.zeros([1, 1, 3], tf.uint8))
    image_bytes = _guarded(tf.where(tf.logical_and(recognised, tf.logical_not(too_big)), image_bytes, placeholder),
                           checks)

    def decode(data):
        image = tf.io.decode_image(data, channels=3, dtype=tf.uint8, expand_animations=False)
        return to_model_input(image[None], image_size)[0], tf.shape(image)[0:2]

    # One image at a time (map_fn's graph default runs 10 in parallel): a request holds one full-size image.
    x, sizes = tf.map_fn(decode, image_bytes, parallel_iterations=1, fn_output_signature=(
        tf.TensorSpec([image_size, image_size, 3], tf.float32), tf.TensorSpec([2], tf.int32)))
    return x, sizes, count


def encode_results(images, sizes):
    """float [N,S,S,3] in [-1,1] -> PNG bytes string [N], each resized back to its row of `sizes` (one at a time)."""
    tf = _tf()

    def encode(args):
        y, hw = args
        return tf.io.encode_png(to_uint8(y[None], hw[0], hw[1])[0])

    return tf.map_fn(encode, (images, sizes), parallel_iterations=1, fn_output_signature=tf.TensorSpec([], tf.string))


def depth_outputs(g_depth, geometry, image_size, images):
    """`estimate_depth`'s outputs for uint8 `images` [N,H,W,3]: {"depth": [N,H,W,1], "normals": [N,H,W,3]}."""
    tf = _tf()
    from expr3d.models import TO_GEOMETRY

    images = check_images(images, "images")
    shape = tf.shape(images)
    x = to_model_input(images, image_size)
    domain = tf.broadcast_to(tf.constant([TO_GEOMETRY], tf.float32), [shape[0], 2])
    result = g_depth([x, domain], training=False)
    if geometry == "depth":
        depth = tf.reduce_mean(result, axis=-1, keepdims=True)
        normals = normals_from_depth(depth)
    else:
        normals = tf.math.l2_normalize(result, axis=-1)
        depth = depth_from_normals(normals)
    size = tf.stack([shape[1], shape[2]])
    depth = tf.clip_by_value(tf.image.resize(depth, size, method="bilinear"), -1.0, 1.0)
    normals = tf.math.l2_normalize(tf.image.resize(normals, size, method="bilinear"), axis=-1)
    return {"depth": depth, "normals": normals}


# --- the export ---------------------------------------------------------------------------------------------------

class ServingFunctions:
    """The signature functions of one run, as plain Python callables over TF tensors.

    Args:
        g_rgb: the expression generator (`call([image, one_hot])`, tanh output).
        g_depth: the depth translator (`to_geometry`) or None (then `estimate_depth` is not exported).
        image_size: the generators' input size S.
        geometry: "depth" (geometry map = depth x3) or "normals".

    Example:
        functions = ServingFunctions(run.g_rgb, run.g_depth, run.image_size, run.geometry)
        out = functions.serving_default(images=uint8_batch, expressions=tf.constant([1, 2]))["images"]
    """

    def __init__(self, g_rgb, g_depth, image_size, geometry="depth", max_encoded_pixels=None):
        if geometry not in ("depth", "normals"):
            raise ValueError(f"geometry must be 'depth' or 'normals'; got {geometry!r}")
        max_encoded_pixels = MAX_ENCODED_PIXELS if max_encoded_pixels is None else int(max_encoded_pixels)
        if max_encoded_pixels < 1:
            raise ValueError(f"--max_encoded_pixels must be >= 1; got {max_encoded_pixels}")
        self.g_rgb = g_rgb
        self.g_depth = g_depth
        self.image_size = int(image_size)
        self.geometry = geometry
        self.max_encoded_pixels = max_encoded_pixels

    def input_signatures(self):
        """{signature name: [tf.TensorSpec, ...]} (named inputs)."""
        tf = _tf()
        size = self.image_size
        signatures = {
            "serving_default": [tf.TensorSpec(None, tf.uint8, name="images"),
                                tf.TensorSpec(None, tf.int32, name="expressions")],
            "translate_encoded": [tf.TensorSpec(None, tf.string, name="image_bytes"),
                                  tf.TensorSpec(None, tf.string, name="expressions")],
            "estimate_depth": [tf.TensorSpec(None, tf.uint8, name="images")],
            "translate_all": [tf.TensorSpec(None, tf.uint8, name="images")],
            "generator": [tf.TensorSpec([None, size, size, 3], tf.float32, name="image"),
                          tf.TensorSpec([None, NUM_EXPRESSIONS], tf.float32, name="condition")],
        }
        if self.g_depth is None:
            del signatures["estimate_depth"]
        return signatures

    def _translate(self, x, ids):
        tf = _tf()
        return self.g_rgb([x, tf.one_hot(ids, NUM_EXPRESSIONS, dtype=tf.float32)], training=False)

    def generator(self, image, condition):
        image, condition = check_generator_inputs(image, condition, self.image_size)
        return {"image": self.g_rgb([image, condition], training=False)}

    def serving_default(self, images, expressions):
        tf = _tf()
        images = check_images(images, "images")
        shape = tf.shape(images)
        ids = check_ids(expressions, shape[0], "expressions")
        out = self._translate(to_model_input(images, self.image_size), ids)
        return {"images": to_uint8(out, shape[1], shape[2])}

    def translate_encoded(self, image_bytes, expressions):
        x, sizes, count = decode_requests(image_bytes, self.image_size, self.max_encoded_pixels, "image_bytes")
        ids = ids_from_names(expressions, count, "expressions")
        return {"image_bytes": encode_results(self._translate(x, ids), sizes)}

    def estimate_depth(self, images):
        return depth_outputs(self.g_depth, self.geometry, self.image_size, images)

    def translate_all(self, images):
        tf = _tf()
        images = check_images(images, "images")
        shape = tf.shape(images)
        batch = shape[0]
        x = to_model_input(images, self.image_size)
        # [N*8] rows: image-major, expressions in label order.
        x_all = tf.repeat(x, NUM_EXPRESSIONS, axis=0)
        ids = tf.tile(tf.range(NUM_EXPRESSIONS, dtype=tf.int32), [batch])
        out = to_uint8(self._translate(x_all, ids), shape[1], shape[2])
        out = tf.reshape(out, tf.stack([batch, NUM_EXPRESSIONS, shape[1], shape[2], 3]))
        names = tf.tile(tf.constant(list(EXPRESSIONS))[None, :], tf.stack([batch, 1]))
        return {"images": out, "expressions": names}


def build_archive(functions, keys=SIGNATURE_KEYS):
    """A `keras.export.ExportArchive` holding every signature of `functions` (a ServingFunctions, or another
    family's functions with its `keys`) that its `input_signatures()` lists, in the order of `keys`."""
    import keras

    archive = keras.export.ExportArchive()
    # No archive.track(model): ExportArchive also saves every variable the endpoints use, as separate tf.Variables,
    # so tracking the models as well stored each weight twice (89 checkpoint keys for 44 variables, 2x the size).
    signatures = functions.input_signatures()
    for key in keys:  # serving_default first: TF Serving's default endpoint
        if key in signatures:
            archive.add_endpoint(key, getattr(functions, key), input_signature=signatures[key])
    return archive
