"""The serving graph of an exported AU-conditioned run (`expr3d.train --condition=action_units`): a face and 17
action-unit intensities in, the face showing those AUs out (continuous AU control, issue #13).

Signatures (inputs -> outputs):

    serving_default,         images uint8 [N,H,W,3], action_units float32 [N,17] or [17] (one vector for every face;
    translate_action_units   intensities in [0, 1] in `expr3d.labels.ACTION_UNITS` order: AU1, AU2, AU4, ... AU26)
                             -> images uint8 [N,H,W,3]
    estimate_depth           as the expression export (expr3d/deploy/signatures.py), when the run has G_depth
    au_generator             image float32 [N,S,S,3] in [-1,1], action_units float32 [N,17]
                             -> image float32 [N,S,S,3] (the raw network at the training size S; TFLite is converted
                             from it)

With an AU reader (`expr3d.export --au_reader`: by default the run's AU guide, a regressor of the 17 intensities
trained on the run's real training faces), two more, for a user's dial on a photo whose AUs nobody wrote down:

    read_action_units        images uint8 [N,H,W,3] -> action_units float32 [N,17] in [0, 1] (the face's AUs, as
                             the reader reads them)
    translate_action_unit_changes
                             images uint8 [N,H,W,3], changes float32 [N,17] or [17] in [-1, 1] -> images uint8
                             [N,H,W,3], action_units float32 [N,17] (what was asked: the read AUs plus the changes,
                             clipped to [0, 1]); a change of 0 keeps that AU as the face shows it
    au_reader                image float32 [N,S,S,3] in [-1,1] -> action_units float32 [N,17] (the raw reader;
                             its TFLite, tflite/au_reader_<variant>.tflite, is converted from it)
    transfer                 images_a uint8 [N,H,W,3], images_b uint8 [M,H2,W2,3] -> a_with_b, b_with_a uint8: the
                             exemplar transfer of a transfer export (expr3d/deploy/transfer_signatures.py: the same
                             inputs, outputs and pairing rule), made here by reading each face's AUs and drawing the
                             other face with them (on device: au_reader's TFLite, then au_generator's)
    transfer_encoded         image_bytes_a, image_bytes_b string -> a_with_b_bytes, b_with_a_bytes string (PNG), as
                             the transfer export's

Malformed requests fail with INVALID_ARGUMENT naming the input (`action_units must be [N, 17] or [17] ...`,
`action_units must be intensities in [0, 1] ...`), as the expression export's.
"""
from expr3d.deploy import signatures as base
from expr3d.deploy.transfer_signatures import PairSignatures
from expr3d.labels import ACTION_UNITS, NUM_ACTION_UNITS

SIGNATURE_KEYS = ("serving_default", "translate_action_units", "estimate_depth", "au_generator", "read_action_units",
                  "translate_action_unit_changes", "au_reader", "transfer", "transfer_encoded")
AU_READER_SIGNATURE = "au_reader"
INTENSITIES = (0.0, 1.0, "intensities in [0, 1] (0 = absent, 1 = strongest)")
CHANGES = (-1.0, 1.0, "changes in [-1, 1] (added to the face's own intensities)")
AU_GENERATOR_SIGNATURE = "au_generator"


def _tf():
    import tensorflow as tf

    return tf


def check_action_units(action_units, batch, name="action_units", bounds=INTENSITIES):
    """Validate AU vectors in-graph: `[batch, 17]`, or `[17]` / `[1, 17]` for every face, values within `bounds`
    (`(low, high, what they are)`: INTENSITIES, in [0, 1], or CHANGES, in [-1, 1]; NaN refused). Returns float32
    `[batch, 17]`; every check reads only the rank and a padded shape, so none can fail on a malformed input, and
    the error names the first thing that is wrong."""
    tf = _tf()
    action_units = tf.cast(action_units, tf.float32)
    rank = tf.rank(action_units)
    shape = base._padded_shape(action_units, 2)
    rank_ok = tf.logical_or(tf.equal(rank, 1), tf.equal(rank, 2))
    rows = tf.where(tf.equal(rank, 1), 1, shape[0])
    width = tf.where(tf.equal(rank, 1), shape[0], shape[1])
    shape_ok = tf.logical_and(rank_ok, tf.logical_and(tf.equal(width, NUM_ACTION_UNITS),
                                                      tf.logical_or(tf.equal(rows, 1), tf.equal(rows, batch))))
    flat = tf.reshape(action_units, [-1])
    padded = tf.reshape(tf.pad(flat, [[0, (-tf.size(flat)) % NUM_ACTION_UNITS]]), [-1, NUM_ACTION_UNITS])
    low, high, meaning = bounds
    values_ok = tf.reduce_all(tf.logical_and(padded >= low, padded <= high))  # NaN fails every comparison
    checks = [
        tf.debugging.Assert(shape_ok, [f"{name} must be [N, {NUM_ACTION_UNITS}] (one row per image) or "
                                       f"[{NUM_ACTION_UNITS}] (one vector for all), in the order AU"
                                       + ", AU".join(str(a) for a in ACTION_UNITS) + "; got shape",
                                       tf.shape(action_units), "for", batch, "images"], summarize=8),
        tf.debugging.Assert(tf.logical_or(tf.logical_not(shape_ok), values_ok), [
            f"{name} must be {meaning}; got values from",
            tf.reduce_min(flat), "to", tf.reduce_max(flat)]),
    ]
    index = tf.where(tf.equal(rows, 1), tf.zeros([batch], tf.int32), tf.minimum(tf.range(batch), rows - 1))
    safe = tf.cond(shape_ok, lambda: padded, lambda: tf.zeros([1, NUM_ACTION_UNITS]))
    index = tf.where(shape_ok, index, tf.zeros_like(index))
    return base._guarded(tf.gather(safe, index), checks)


class ActionUnitServingFunctions(PairSignatures):
    """The signature functions of one AU-conditioned run, as plain Python callables over TF tensors.

    Args:
        g_rgb: the generator conditioned on 17 AU intensities (`call([image, action_units])`, tanh output).
        g_depth: the depth translator or None (then `estimate_depth` is not exported).
        image_size: the generator's input size S.
        geometry: "depth" or "normals".
        max_encoded_pixels: `transfer_encoded`'s per-image pixel bound (default signatures.MAX_ENCODED_PIXELS).
        au_reader: a Keras model of 17 AU logits of a face in [-1, 1] at `image_size` (an AU regressor,
            `expr3d.metrics.au_judge`), or None (then `read_action_units`, `translate_action_unit_changes`,
            `au_reader`, `transfer` and `transfer_encoded` are not exported).
    """

    def __init__(self, g_rgb, g_depth, image_size, geometry="depth", max_encoded_pixels=None, au_reader=None):
        if geometry not in ("depth", "normals"):
            raise ValueError(f"geometry must be 'depth' or 'normals'; got {geometry!r}")
        self.g_rgb = g_rgb
        self.g_depth = g_depth
        self.image_size = int(image_size)
        self.geometry = geometry
        self.max_encoded_pixels = base.MAX_ENCODED_PIXELS if max_encoded_pixels is None else int(max_encoded_pixels)
        self.reader_model = au_reader  # not `au_reader`: that is the raw signature's method

    def input_signatures(self):
        """{signature name: [tf.TensorSpec, ...]} (named inputs)."""
        tf = _tf()
        size = self.image_size
        request = [tf.TensorSpec(None, tf.uint8, name="images"), tf.TensorSpec(None, tf.float32, name="action_units")]
        signatures = {
            "serving_default": request,
            "translate_action_units": request,
            "estimate_depth": [tf.TensorSpec(None, tf.uint8, name="images")],
            AU_GENERATOR_SIGNATURE: [tf.TensorSpec([None, size, size, 3], tf.float32, name="image"),
                                     tf.TensorSpec([None, NUM_ACTION_UNITS], tf.float32, name="action_units")],
        }
        if self.reader_model is not None:
            signatures["read_action_units"] = [tf.TensorSpec(None, tf.uint8, name="images")]
            signatures["translate_action_unit_changes"] = [tf.TensorSpec(None, tf.uint8, name="images"),
                                                           tf.TensorSpec(None, tf.float32, name="changes")]
            signatures[AU_READER_SIGNATURE] = [tf.TensorSpec([None, size, size, 3], tf.float32, name="image")]
            signatures["transfer"] = [tf.TensorSpec(None, tf.uint8, name="images_a"),
                                      tf.TensorSpec(None, tf.uint8, name="images_b")]
            signatures["transfer_encoded"] = [tf.TensorSpec(None, tf.string, name="image_bytes_a"),
                                              tf.TensorSpec(None, tf.string, name="image_bytes_b")]
        if self.g_depth is None:
            del signatures["estimate_depth"]
        return signatures

    def _raw_face(self, image, signature, instead):
        """`image` guarded to the training size S (the raw signatures take the network's own input)."""
        tf = _tf()
        size = self.image_size
        shape = base._padded_shape(image, 4)
        size_ok = tf.logical_and(tf.equal(shape[1], size), tf.equal(shape[2], size))
        checks = [tf.debugging.Assert(size_ok, [
            f"{signature}: image must be {size}x{size} (the size it was trained and exported at; resize first, or "
            f"use {instead}, which resizes in the graph); got shape", tf.shape(image)], summarize=8)]
        return base._guarded(image, checks), shape

    def au_generator(self, image, action_units):
        image, shape = self._raw_face(image, AU_GENERATOR_SIGNATURE, "serving_default")
        units = check_action_units(action_units, shape[0])
        return {"image": self.g_rgb([image, units], training=False)}

    def au_reader(self, image):
        image, _ = self._raw_face(image, AU_READER_SIGNATURE, "read_action_units")
        return {"action_units": self._logits_to_units(image)}

    def translate_action_units(self, images, action_units):
        tf = _tf()
        images = base.check_images(images, "images")
        shape = tf.shape(images)
        units = check_action_units(action_units, shape[0])
        out = self.g_rgb([base.to_model_input(images, self.image_size), units], training=False)
        return {"images": base.to_uint8(out, shape[1], shape[2])}

    def serving_default(self, images, action_units):
        return self.translate_action_units(images, action_units)

    def estimate_depth(self, images):
        return base.depth_outputs(self.g_depth, self.geometry, self.image_size, images)

    def _logits_to_units(self, x):
        tf = _tf()
        return tf.sigmoid(tf.cast(self.reader_model(x, training=False), tf.float32))

    def _read(self, images):
        return self._logits_to_units(base.to_model_input(images, self.image_size))

    def read_action_units(self, images):
        return {"action_units": self._read(base.check_images(images, "images"))}

    def translate_action_unit_changes(self, images, changes):
        tf = _tf()
        images = base.check_images(images, "images")
        shape = tf.shape(images)
        changes = check_action_units(changes, shape[0], name="changes", bounds=CHANGES)
        asked = tf.clip_by_value(self._read(images) + changes, 0.0, 1.0)
        out = self.g_rgb([base.to_model_input(images, self.image_size), asked], training=False)
        return {"images": base.to_uint8(out, shape[1], shape[2]), "action_units": asked}

    def swap(self, x_a, x_b):
        """(A drawn with B's AUs as read, B with A's) for float32 [N,S,S,3] faces: one reader and one G_rgb pass."""
        tf = _tf()
        count = tf.shape(x_a)[0]
        faces = tf.concat([x_a, x_b], axis=0)
        read = self._logits_to_units(faces)
        out = self.g_rgb([faces, tf.concat([read[count:], read[:count]], axis=0)], training=False)
        return out[:count], out[count:]


def build_archive(functions):
    """A `keras.export.ExportArchive` holding every signature of `functions` (an ActionUnitServingFunctions)."""
    return base.build_archive(functions, SIGNATURE_KEYS)
