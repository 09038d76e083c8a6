"""The serving graph of an exported expression-transfer run (`--model=transfer`): two faces in, expressions swapped out.

Signatures (inputs -> outputs):

    serving_default,    images_a uint8 [N,H,W,3], images_b uint8 [M,H2,W2,3]   (M = N, or either one is 1: that face
    transfer                                                                     goes with every face of the other)
                        -> a_with_b uint8 [max(N,M),H,W,3]: A's identity, pose and look with B's expression, at A's size
                           b_with_a uint8 [max(N,M),H2,W2,3]: B with A's expression, at B's size
    transfer_encoded    image_bytes_a string [N], image_bytes_b string [M] (JPEG/PNG; the same N/M rule)
                        -> a_with_b_bytes, b_with_a_bytes string (PNG, each at its own face's size; REST: {"b64": ...})
    estimate_depth      as the expression export (expr3d/deploy/signatures.py), when the run has G_depth
    transfer_generator  image_a, image_b float32 [N,S,S,3] in [-1,1] -> a_with_b, b_with_a float32 [N,S,S,3]
                        (S = training size; the raw networks, the signature TFLite is converted from)

The two faces of a pair may differ in size: each is resized to S for the networks and its result back to its own size.
Image inputs are declared with unknown rank so that a wrong rank reaches the graph's own checks (INVALID_ARGUMENT
naming the input), as in the expression export; the encoded inputs get the same header, truncation and pixel-bound
checks (`signatures.decode_requests`).
"""
from expr3d.deploy import signatures as base

SIGNATURE_KEYS = ("serving_default", "transfer", "transfer_encoded", "estimate_depth", "transfer_generator")
TRANSFER_GENERATOR_SIGNATURE = "transfer_generator"


def _tf():
    import tensorflow as tf

    return tf


def pair_index(count_a, count_b):
    """(index into A [n], index into B [n], checks): the rows of a request of `count_a` and `count_b` faces, where
    equal counts pair row by row and a single face on either side goes with every face of the other."""
    tf = _tf()
    ok = tf.logical_or(tf.equal(count_a, count_b), tf.logical_or(tf.equal(count_a, 1), tf.equal(count_b, 1)))
    checks = [tf.debugging.Assert(ok, ["transfer: images_a and images_b must hold the same number of faces, or one "
                                       "of them a single face (used with every face of the other); got", count_a,
                                       "and", count_b])]
    count = tf.maximum(count_a, count_b)
    rows = tf.range(count)
    index_a = tf.where(tf.equal(count_a, 1), tf.zeros_like(rows), tf.minimum(rows, count_a - 1))
    index_b = tf.where(tf.equal(count_b, 1), tf.zeros_like(rows), tf.minimum(rows, count_b - 1))
    return base._guarded(index_a, checks), base._guarded(index_b, checks)


class PairSignatures:
    """`transfer` and `transfer_encoded` over a `swap(x_a, x_b)` of float32 [N,S,S,3] faces in [-1, 1] -> (A with
    B's expression, B with A's): the transfer export's, and an AU export's with a reader (its swap reads AUs)."""

    def transfer(self, images_a, images_b):
        tf = _tf()
        images_a = base.check_images(images_a, "images_a")
        images_b = base.check_images(images_b, "images_b")
        shape_a, shape_b = tf.shape(images_a), tf.shape(images_b)
        index_a, index_b = pair_index(shape_a[0], shape_b[0])
        x_a = tf.gather(base.to_model_input(images_a, self.image_size), index_a)
        x_b = tf.gather(base.to_model_input(images_b, self.image_size), index_b)
        a_with_b, b_with_a = self.swap(x_a, x_b)
        return {"a_with_b": base.to_uint8(a_with_b, shape_a[1], shape_a[2]),
                "b_with_a": base.to_uint8(b_with_a, shape_b[1], shape_b[2])}

    def transfer_encoded(self, image_bytes_a, image_bytes_b):
        tf = _tf()
        x_a, sizes_a, count_a = base.decode_requests(image_bytes_a, self.image_size, self.max_encoded_pixels,
                                                     "image_bytes_a")
        x_b, sizes_b, count_b = base.decode_requests(image_bytes_b, self.image_size, self.max_encoded_pixels,
                                                     "image_bytes_b")
        index_a, index_b = pair_index(count_a, count_b)
        a_with_b, b_with_a = self.swap(tf.gather(x_a, index_a), tf.gather(x_b, index_b))
        return {"a_with_b_bytes": base.encode_results(a_with_b, tf.gather(sizes_a, index_a)),
                "b_with_a_bytes": base.encode_results(b_with_a, tf.gather(sizes_b, index_b))}


class TransferServingFunctions(PairSignatures):
    """The signature functions of one transfer run, as plain Python callables over TF tensors.

    Args:
        encoder: `TransferEncoder` (face -> code, AU-free map, AUs).
        decoder: `TransferDecoder` ([free, code, source] -> face).
        g_depth: the depth translator or None (then `estimate_depth` is not exported).
        image_size: the networks' input size S.
        geometry: "depth" or "normals" (how G_depth's output reads).
        max_encoded_pixels: `transfer_encoded`'s per-image pixel bound (default signatures.MAX_ENCODED_PIXELS).

    Example:
        functions = TransferServingFunctions(encoder, decoder, None, 64)
        out = functions.transfer(images_a=faces, images_b=exemplar)  # one exemplar for every face
    """

    def __init__(self, encoder, decoder, g_depth, image_size, geometry="depth", max_encoded_pixels=None):
        if geometry not in ("depth", "normals"):
            raise ValueError(f"geometry must be 'depth' or 'normals'; got {geometry!r}")
        max_encoded_pixels = base.MAX_ENCODED_PIXELS if max_encoded_pixels is None else int(max_encoded_pixels)
        if max_encoded_pixels < 1:
            raise ValueError(f"--max_encoded_pixels must be >= 1; got {max_encoded_pixels}")
        self.encoder = encoder
        self.decoder = decoder
        self.g_depth = g_depth
        self.image_size = int(image_size)
        self.geometry = geometry
        self.max_encoded_pixels = max_encoded_pixels

    def input_signatures(self):
        """{signature name: [tf.TensorSpec, ...]} (named inputs)."""
        tf = _tf()
        size = self.image_size
        images = [tf.TensorSpec(None, tf.uint8, name="images_a"), tf.TensorSpec(None, tf.uint8, name="images_b")]
        signatures = {
            "serving_default": images,
            "transfer": images,
            "transfer_encoded": [tf.TensorSpec(None, tf.string, name="image_bytes_a"),
                                 tf.TensorSpec(None, tf.string, name="image_bytes_b")],
            "estimate_depth": [tf.TensorSpec(None, tf.uint8, name="images")],
            TRANSFER_GENERATOR_SIGNATURE: [tf.TensorSpec([None, size, size, 3], tf.float32, name="image_a"),
                                           tf.TensorSpec([None, size, size, 3], tf.float32, name="image_b")],
        }
        if self.g_depth is None:
            del signatures["estimate_depth"]
        return signatures

    def swap(self, x_a, x_b):
        """(A with B's expression, B with A's) for float32 [N,S,S,3] faces in [-1, 1]: one encoder and one decoder
        pass over both halves."""
        tf = _tf()
        count = tf.shape(x_a)[0]
        faces = tf.concat([x_a, x_b], axis=0)
        code, free, _ = self.encoder(faces, training=False)
        swapped = tf.concat([code[count:], code[:count]], axis=0)
        out = self.decoder([free, swapped, faces], training=False)
        return out[:count], out[count:]

    def transfer_generator(self, image_a, image_b):
        tf = _tf()
        size = self.image_size
        shape_a = base._padded_shape(image_a, 4)
        shape_b = base._padded_shape(image_b, 4)
        checks = [tf.debugging.Assert(tf.equal(shape_a[0], shape_b[0]), [
            "transfer_generator: image_a and image_b must hold the same number of faces; got", shape_a[0], "and",
            shape_b[0]])]
        for name, image, shape in (("image_a", image_a, shape_a), ("image_b", image_b, shape_b)):
            checks.append(tf.debugging.Assert(tf.logical_and(tf.equal(shape[1], size), tf.equal(shape[2], size)), [
                f"transfer_generator: {name} must be {size}x{size} (the size it was trained and exported at; resize "
                f"first, or use serving_default, which resizes in the graph); got shape", tf.shape(image)],
                summarize=8))
        a_with_b, b_with_a = self.swap(base._guarded(image_a, checks), base._guarded(image_b, checks))
        return {"a_with_b": a_with_b, "b_with_a": b_with_a}

    def serving_default(self, images_a, images_b):
        return self.transfer(images_a, images_b)

    def estimate_depth(self, images):
        return base.depth_outputs(self.g_depth, self.geometry, self.image_size, images)


def build_archive(functions):
    """A `keras.export.ExportArchive` holding every signature of `functions` (a TransferServingFunctions)."""
    return base.build_archive(functions, SIGNATURE_KEYS)
