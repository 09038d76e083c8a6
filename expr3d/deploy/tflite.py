"""TFLite variants of an export (converted from the SavedModel's `generator` signature, or for a transfer run its
`transfer_generator` signature), the LiteRT runners and parity reports.

Variants (all builtin ops only, no Flex delegate; float32 input/output [N,S,S,3] in [-1, 1], with a one-hot [N,8]
condition for the expression generator and a second face for the transfer, so a phone app treats them alike):
    fp32       plain conversion
    fp16       float16 weights (XNNPACK dequantises them to float32 at load: half the file, fp32 speed)
    int8       dynamic-range quantisation: int8 weights, activations quantised on the fly per image (XNNPACK's
               dynamically quantised kernels); the fastest and, with 40+ dB parity, the one to ship
    int8_full  full-integer quantisation calibrated on a representative set from the training TFRecords
               (int8 kernels; float32 I/O through QUANTIZE/DEQUANTIZE at the edges). XNNPACK does not delegate the
               quantised instance-norm statistics (MEAN, SQUARED_DIFFERENCE, RSQRT on int8), so the graph splits
               into many partitions and it is slower and less exact (~32 dB) than int8

The SavedModel's `generator` signature is the export's inference clone (expr3d.deploy.inference), so every variant
is converted from 4-D instance norms and sub-pixel up-sampling, which XNNPACK delegates.
"""
import dataclasses
import math
import os

import numpy as np

from expr3d.deploy.action_unit_signatures import AU_GENERATOR_SIGNATURE, AU_READER_SIGNATURE
from expr3d.deploy.signatures import GENERATOR_SIGNATURE
from expr3d.deploy.transfer_signatures import TRANSFER_GENERATOR_SIGNATURE
from expr3d.imaging.pixels import from_uint8, to_uint8
from expr3d.labels import NUM_ACTION_UNITS, NUM_EXPRESSIONS

VARIANTS = ("fp32", "fp16", "int8", "int8_full")


def parse_variants(text):
    """"fp32,fp16" -> ("fp32", "fp16"); "all" -> every variant; "" -> (). ValueError naming an unknown variant."""
    names = [name.strip() for name in (text or "").split(",") if name.strip()]
    if names == ["all"]:
        return VARIANTS
    unknown = [name for name in names if name not in VARIANTS]
    if unknown:
        raise ValueError(f"--tflite: unknown variant(s) {unknown}; choose from {', '.join(VARIANTS)} (or 'all')")
    return tuple(dict.fromkeys(names))


# --- inputs -------------------------------------------------------------------------------------------------------

def conditions_for(count):
    """One-hot conditions [count, 8] cycling through every expression."""
    return np.eye(NUM_EXPRESSIONS, dtype=np.float32)[np.arange(count) % NUM_EXPRESSIONS]


def images_from_records(data_dir, split, image_size, count, skip_corrupt=False, stats=None, log=None):
    """Up to `count` faces of `split` as float32 [n, S, S, 3] in [-1, 1] (resized like the serving graph).

    Every record read is fully checked (`records.iterate_examples`): a bad one raises a one-line RecordError naming
    its shard and index, or with `skip_corrupt` is skipped and counted in `stats["skipped"]` (`log` gets a line).
    """
    import tensorflow as tf

    from expr3d.data import records

    images = []
    for example in records.iterate_examples(data_dir, split, skip_corrupt=skip_corrupt, stats=stats, log=log):
        images.append(example.image)
        if len(images) >= count:
            break
    if not images:
        raise ValueError(f"{data_dir}: split {split!r} holds no examples")
    out = []
    for image in images:  # one at a time: records may differ in size
        x = tf.image.resize(tf.cast(image[None], tf.float32), [image_size, image_size], antialias=True)
        out.append(np.clip(from_uint8(x.numpy()[0]), -1.0, 1.0))
    return np.stack(out).astype(np.float32)


def parity_images(data_dir, image_size, count, skip_corrupt=False, stats=None, log=None):
    """(images, description): real test faces (else train faces) of `data_dir`, or seeded noise without data."""
    if data_dir:
        for split in ("test", "train"):
            if _has_split(data_dir, split):
                images = images_from_records(data_dir, split, image_size, count, skip_corrupt, stats, log)
                return images, f"{len(images)} '{split}' faces of {data_dir}"
        raise FileNotFoundError(f"--data_dir={data_dir!r} has no test or train shards")
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (count, image_size, image_size, 3)).astype(np.float32)
    return images, f"{count} uniform-noise images (no data directory given: NOT real faces)"


def _has_split(data_dir, split):
    """Whether `data_dir` holds `split`: listed in its dataset card (the card's shards are then read, so one it lists
    but is missing is an error), else shards on disk."""
    from expr3d.data import dataset_card, records

    if os.path.exists(os.path.join(data_dir, dataset_card.CARD_NAME)):
        return bool(dataset_card.read_dataset_card(data_dir)["splits"].get(split, {}).get("num_examples"))
    return bool(records.list_shards(data_dir, split))


def read_data(data_dir, image_size, variants, parity_count=16, representative_count=64, skip_corrupt=False,
              log=print):
    """The faces `write_variants` needs, read (and checked) up front, before any conversion: {"parity": (images,
    description), "representative": (images, description) or None, "skipped_records": count (skip_corrupt)}."""
    from expr3d.data.schema import RecordError

    stats = {}
    line = (lambda message: log(f"--skip_corrupt: {message}")) if skip_corrupt else None
    try:
        parity = parity_images(data_dir, image_size, parity_count, skip_corrupt, stats, line)
        representative = None
        if "int8_full" in variants:
            if not data_dir or not _has_split(data_dir, "train"):
                raise ValueError("--tflite=int8_full calibrates on training faces: pass --data_dir with train shards "
                                 f"(got {data_dir!r})")
            images = images_from_records(data_dir, "train", image_size, representative_count, skip_corrupt, stats,
                                         line)
            representative = (images, f"{len(images)} 'train' faces of {data_dir}")
    except RecordError as error:
        if skip_corrupt:
            raise
        raise RecordError(f"{error}; pass --skip_corrupt to skip bad records") from None
    return {"parity": parity, "representative": representative, "skipped_records": stats.get("skipped", 0)}


# --- conversion ---------------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class LiteSignature:
    """A SavedModel signature converted to TFLite: its key, the .tflite file prefix, input and output names, and how
    to feed it a batch of faces (for the representative set and the parity check)."""
    key: str
    prefix: str
    inputs: tuple
    outputs: tuple
    feeds: object  # images float32 [n, S, S, 3] -> {input name: array}
    describe: object  # image_size -> ({input: text}, {output: text}) for the report


def _generator_feeds(images):
    return {"image": images, "condition": conditions_for(len(images))}


def _transfer_feeds(images):
    # Each face with the next one's expression (the batch rolled by one, as the transfer trainer's exemplars).
    return {"image_a": images, "image_b": np.roll(images, 1, axis=0)}


def _action_unit_feeds(images):
    # Seeded, sparse AU vectors (most AUs of a face are off), one per face.
    rng = np.random.default_rng(0)
    units = rng.uniform(0.0, 1.0, (len(images), NUM_ACTION_UNITS)) * (rng.uniform(size=(len(images), 1)) < 0.3)
    return {"image": images, "action_units": units.astype(np.float32)}


def _face(size):
    return f"float32 [N,{size},{size},3] in [-1,1]"


GENERATOR = LiteSignature(
    GENERATOR_SIGNATURE, "generator", ("image", "condition"), ("image",), _generator_feeds,
    lambda size: ({"image": _face(size), "condition": f"float32 [N,{NUM_EXPRESSIONS}] one-hot expression"},
                  {"image": _face(size)}))
TRANSFER = LiteSignature(
    TRANSFER_GENERATOR_SIGNATURE, "transfer", ("image_a", "image_b"), ("a_with_b", "b_with_a"), _transfer_feeds,
    lambda size: ({"image_a": _face(size), "image_b": _face(size)},
                  {"a_with_b": f"{_face(size)}: A with B's expression",
                   "b_with_a": f"{_face(size)}: B with A's expression"}))
ACTION_UNITS = LiteSignature(
    AU_GENERATOR_SIGNATURE, "au_generator", ("image", "action_units"), ("image",), _action_unit_feeds,
    lambda size: ({"image": _face(size), "action_units": f"float32 [N,{NUM_ACTION_UNITS}] AU intensities in [0,1]"},
                  {"image": _face(size)}))

AU_READER = LiteSignature(
    AU_READER_SIGNATURE, "au_reader", ("image",), ("action_units",), lambda images: {"image": images},
    lambda size: ({"image": _face(size)},
                  {"action_units": f"float32 [N,{NUM_ACTION_UNITS}] the face's AU intensities in [0,1]"}))


def file_name(variant, signature=GENERATOR):
    return f"{signature.prefix}_{variant}.tflite"


def convert(saved_model_dir, variant, representative=None, signature=GENERATOR):
    """TFLite flatbuffer bytes of the SavedModel's `signature` (GENERATOR: `generator`; TRANSFER:
    `transfer_generator`).

    Args:
        saved_model_dir: a SavedModel written by `expr3d.export`.
        variant: one of VARIANTS.
        representative: float32 [n, S, S, 3] images in [-1, 1] (needed for "int8_full").
        signature: a LiteSignature.
    """
    import tensorflow as tf

    if variant not in VARIANTS:
        raise ValueError(f"unknown TFLite variant {variant!r}; choose from {VARIANTS}")
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir, signature_keys=[signature.key])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if variant == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif variant == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif variant == "int8_full":
        if representative is None or len(representative) == 0:
            raise ValueError("int8_full needs a representative set of training images (pass --data_dir)")
        feeds = signature.feeds(np.asarray(representative, np.float32))

        def dataset():
            for index in range(len(representative)):
                yield {name: value[index:index + 1] for name, value in feeds.items()}

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = dataset
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return converter.convert()


class LiteRunner:
    """One signature of a TFLite model run through the LiteRT interpreter (`ai_edge_litert`).

    Args:
        model: path of a .tflite file or its bytes.
        signature: the LiteSignature the model was converted from.
        num_threads: interpreter threads (None: LiteRT's default).

    Example:
        runner = LiteRunner("transfer_int8.tflite", TRANSFER)
        out = runner(image_a=a, image_b=b)  # {"a_with_b": ..., "b_with_a": ...}
    """

    def __init__(self, model, signature, num_threads=None):
        from ai_edge_litert.interpreter import Interpreter

        kwargs = {"num_threads": num_threads} if num_threads else {}
        if isinstance(model, (bytes, bytearray)):
            self.interpreter = Interpreter(model_content=bytes(model), **kwargs)
            self.path = None
        else:
            if not os.path.isfile(model):
                raise FileNotFoundError(f"TFLite model {model!r} does not exist")
            try:
                self.interpreter = Interpreter(model_path=model, **kwargs)
            except ValueError as e:
                raise ValueError(f"{model} is not a valid TFLite model: {e}") from e
            self.path = model
        signatures = self.interpreter.get_signature_list()
        if signature.key not in signatures:
            raise ValueError(f"{self.path or 'the model'} has no {signature.key!r} signature (found "
                             f"{sorted(signatures)}); convert it with `python -m expr3d.export --tflite=...`")
        self.signature = signature
        self.runner = self.interpreter.get_signature_runner(signature.key)
        details = self.runner.get_input_details()[signature.inputs[0]]
        self.image_size = int(details["shape"][1])
        self._quiet_first_run = True

    def _run(self, inputs):
        if not self._quiet_first_run:
            return self.runner(**inputs)
        from expr3d import quiet

        # The first run allocates the tensors, where LiteRT applies XNNPACK and says so on stderr.
        with quiet.litert_info_dropped():
            out = self.runner(**inputs)
        self._quiet_first_run = False
        return out

    def run(self, **inputs):
        """{output name: float32 array} for `inputs` ({input name: array}, batched)."""
        return self._run({name: np.asarray(value, np.float32) for name, value in inputs.items()})

    def op_names(self):
        """Sorted op names of the model (delegated ops show as DELEGATE)."""
        return sorted({op["op_name"] for op in self.interpreter._get_ops_details()})


class LiteGenerator(LiteRunner):
    """The TFLite expression generator (`generator` signature).

    Example:
        generator = LiteGenerator("generator_int8.tflite")
        out = generator(images, conditions)  # float32 [N,S,S,3] in [-1,1], one-hot [N,8]
    """

    def __init__(self, model, num_threads=None):
        super().__init__(model, GENERATOR, num_threads)

    def __call__(self, images, conditions):
        return self.run(image=images, condition=conditions)["image"]


class LiteTransfer(LiteRunner):
    """The TFLite expression transfer (`transfer_generator` signature).

    Example:
        transfer = LiteTransfer("transfer_int8.tflite")
        a_with_b, b_with_a = transfer(faces_a, faces_b)  # float32 [N,S,S,3] in [-1,1] each
    """

    def __init__(self, model, num_threads=None):
        super().__init__(model, TRANSFER, num_threads)

    def __call__(self, images_a, images_b):
        out = self.run(image_a=images_a, image_b=images_b)
        return out["a_with_b"], out["b_with_a"]


def builtin_only(model_bytes):
    """(ok, op names): whether the model uses only builtin ops (no Flex, no custom ops), read without delegates."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(model_content=bytes(model_bytes),
                              experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    names = sorted({op["op_name"] for op in interpreter._get_ops_details()})
    return not any(name.startswith("Flex") or name == "CUSTOM" for name in names), names


# --- parity -------------------------------------------------------------------------------------------------------

def compare(reference, output):
    """Parity figures of two float images batches in [-1, 1]: max/mean abs error, error in uint8 levels, PSNR (dB).

    PSNR is over the [0, 1] intensity range, mean over all pixels of the batch.
    """
    reference = np.asarray(reference, np.float64)
    output = np.asarray(output, np.float64)
    if reference.shape != output.shape:
        raise ValueError(f"parity: shapes differ: {reference.shape} vs {output.shape}")
    diff = np.abs(reference - output)
    mse = float(np.mean((diff / 2.0) ** 2))
    ref_u8 = to_uint8(reference).astype(np.int64)
    out_u8 = to_uint8(output).astype(np.int64)
    return {
        "max_abs_error": float(diff.max()),
        "mean_abs_error": float(diff.mean()),
        "max_abs_error_uint8": int(np.abs(ref_u8 - out_u8).max()),
        "psnr_db": float("inf") if mse == 0 else float(10 * math.log10(1.0 / mse)),
    }


def saved_model_signature(saved_model_dir, signature=GENERATOR, batch_size=16):
    """The SavedModel's `signature` as a numpy function {input: array} -> {output: array}, run in batches."""
    import tensorflow as tf

    function = tf.saved_model.load(saved_model_dir).signatures[signature.key]

    def run(feeds):
        count = len(next(iter(feeds.values())))
        outputs = {name: [] for name in signature.outputs}
        for start in range(0, count, batch_size):
            out = function(**{name: tf.constant(value[start:start + batch_size], tf.float32)
                              for name, value in feeds.items()})
            for name in signature.outputs:
                outputs[name].append(out[name].numpy())
        return {name: np.concatenate(parts) for name, parts in outputs.items()}

    return run


def saved_model_generator(saved_model_dir):
    """The SavedModel's `generator` signature as a numpy function (images, conditions) -> images."""
    run = saved_model_signature(saved_model_dir, GENERATOR)
    return lambda images, conditions: run({"image": images, "condition": conditions})["image"]


def write_variants(saved_model_dir, output_dir, variants, image_size, data_dir=None, parity_count=16,
                   representative_count=64, log=print, data=None, signature=GENERATOR):
    """Convert `signature` of the SavedModel to `variants`, check builtin-only ops and parity against the SavedModel;
    write .tflite + .json beside.

    Returns {variant: report dict}. The representative set (int8_full) comes from `data_dir`'s train split; `data`:
    what `read_data` returned, when the caller read it up front. Parity is over every output of the signature.
    """
    from expr3d import storage

    os.makedirs(output_dir, exist_ok=True)
    data = data or read_data(data_dir, image_size, variants, parity_count, representative_count, log=log)
    images, source = data["parity"]
    feeds = signature.feeds(images)
    reference = saved_model_signature(saved_model_dir, signature)(feeds)
    reference = np.stack([reference[name] for name in signature.outputs])
    representative, representative_source = data["representative"] or (None, None)
    inputs, outputs = signature.describe(image_size)
    reports = {}
    for variant in variants:
        log(f"TFLite {variant}: converting {signature.key} ...")
        model = convert(saved_model_dir, variant, representative=representative, signature=signature)
        ok, ops = builtin_only(model)
        if not ok:
            raise RuntimeError(f"TFLite {variant}: non-builtin ops {ops}")
        name = file_name(variant, signature)
        path = os.path.join(output_dir, name)
        with storage.writing(path, len(model), what="write the TFLite model"):
            storage.atomic_write_bytes(path, model)
        got = LiteRunner(model, signature).run(**feeds)
        output = np.stack([got[name] for name in signature.outputs])
        report = {
            "variant": variant,
            "file": name,
            "size_bytes": len(model),
            "image_size": image_size,
            "signature": signature.key,
            "inputs": inputs,
            "outputs": outputs,
            "builtin_ops_only": ok,
            "ops": ops,
            "parity": dict(compare(reference, output), images=len(images), source=source,
                           reference=f"SavedModel signature {signature.key!r}",
                           skipped_corrupt_records=data.get("skipped_records", 0)),
            "representative_set": representative_source if variant == "int8_full" else None,
        }
        storage.atomic_write_json(os.path.join(output_dir, name[:-len(".tflite")] + ".json"), report)
        log(f"TFLite {variant}: {len(model) / 1e6:.2f} MB, max abs error {report['parity']['max_abs_error']:.4f}, "
            f"PSNR {report['parity']['psnr_db']:.1f} dB")
        reports[variant] = report
    return reports
