# Over 400 lines: it mirrors expr3d/data/pipeline.py (its tf.data stages and its bad-record scan).
"""Tests of expr3d.data.pipeline on tiny analytic datasets (hemispheres and tilted planes, 32 px) in real TFRecords."""
import collections
import itertools
import os

import numpy as np
import pytest
import tensorflow as tf

from expr3d.data import dataset_card, pipeline, records, schema
from expr3d.labels import NUM_ACTION_UNITS, NUM_EXPRESSIONS
from tests import forked_cli

SIZE = 32
RADIUS = 0.35  # of the image side
DISTANCE = 3.0


def _pixel_coords(size):
    v, u = np.mgrid[0:size, 0:size].astype(np.float64)
    return u, v, (u + 0.5) / size - 0.5, 0.5 - (v + 0.5) / size


def _position_image(size, seed):
    """R and G encode the source column and row (so a resampled image tells where each pixel came from)."""
    u, v, _, _ = _pixel_coords(size)
    image = np.zeros((size, size, 3), np.uint8)
    image[..., 0] = np.rint(255 * u / (size - 1))
    image[..., 1] = np.rint(255 * v / (size - 1))
    image[..., 2] = np.random.default_rng(seed).integers(0, 255, (size, size))
    return image


def hemisphere(index, expression, size=SIZE, identity=None, aus=True):
    """An orthographic hemisphere: depth = D - h, normals (x, y, h) / r, mask the disc."""
    _, _, x, y = _pixel_coords(size)
    r2 = x ** 2 + y ** 2
    mask = r2 < RADIUS ** 2
    h = np.sqrt(np.clip(RADIUS ** 2 - r2, 0, None))
    normals = np.where(mask[..., None], np.stack([x, y, h], -1) / RADIUS, 0.0)
    au = np.random.default_rng(index).uniform(0, 1, NUM_ACTION_UNITS).astype(np.float32) if aus else None
    return schema.FaceExample(image=_position_image(size, index), depth=np.where(mask, DISTANCE - h, 0.0),
                              mask=mask, normals=normals, expression=expression,
                              identity=index if identity is None else identity, key=f"hemi{index:04d}",
                              action_units=au, pair_id=index // 8)


def tilted_plane(index, expression, size=SIZE, slope=(0.6, -0.3)):
    """A plane z_depth = D + a x + b y seen inside a disc: constant normal (a, b, 1) / |.|."""
    _, _, x, y = _pixel_coords(size)
    mask = x ** 2 + y ** 2 < 0.4 ** 2
    a, b = slope
    normal = np.array([a, b, 1.0]) / np.sqrt(a * a + b * b + 1)
    normals = np.where(mask[..., None], normal, 0.0)
    return schema.FaceExample(image=_position_image(size, index), depth=np.where(mask, DISTANCE + a * x + b * y, 0),
                              mask=mask, normals=normals, expression=expression, identity=index,
                              key=f"plane{index:04d}", action_units=None, depth_format="float16")


def write_dataset(directory, labels, per_shard=8, make=hemisphere, split="train"):
    with records.ShardedWriter(str(directory), split, examples_per_shard=per_shard) as writer:
        for index, label in enumerate(labels):
            writer.write(make(index, label))
    dataset_card.write_dataset_card(str(directory), name="analytic", image_size=SIZE, splits=(split,))
    return str(directory)


@pytest.fixture(scope="module")
def hemispheres(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("hemispheres"), [i % NUM_EXPRESSIONS for i in range(32)])


def _first_record(data_dir, split="train"):
    path = records.split_files(data_dir, split)[0]
    return path, next(iter(tf.data.TFRecordDataset(path)))


def _collect(dataset, batches=None):
    out = collections.defaultdict(list)
    for batch in itertools.islice(dataset, batches):
        for name, value in batch.items():
            out[name].append(value.numpy())
    return {name: np.concatenate(values) for name, values in out.items()}


# --- eager per-example ops ----------------------------------------------------------------------------------------

def test_normalize_depth_by_hand():
    z = tf.constant([[2.0, 3.0], [4.0, 0.0]])[..., None]
    mask = tf.constant([[1.0, 1.0], [1.0, 0.0]])[..., None]
    np.testing.assert_allclose(pipeline.normalize_depth(z, mask).numpy()[..., 0], [[1.0, 0.0], [-1.0, -1.0]])
    flat = pipeline.normalize_depth(tf.fill([2, 2, 1], 5.0), tf.constant([[1.0, 0.0], [0.0, 0.0]])[..., None])
    np.testing.assert_allclose(flat.numpy()[..., 0], [[1.0, -1.0], [-1.0, -1.0]])


def test_unaugmented_preprocess_keeps_source(hemispheres):
    path, record = _first_record(hemispheres)
    source = schema.decode_example(record.numpy())
    out = pipeline.parse_and_preprocess(record, tf.constant(path), 0, SIZE, augment=False)
    np.testing.assert_array_equal(out["image"].numpy(), source.image.astype(np.float32) / np.float32(127.5) - 1)
    np.testing.assert_array_equal(out["mask"].numpy()[..., 0], source.mask.astype(np.float32))
    z = source.depth[source.mask]
    expected = np.where(source.mask, 1 - 2 * (source.depth - z.min()) / (z.max() - z.min()), -1.0)
    np.testing.assert_allclose(out["depth"].numpy()[..., 0], expected, atol=1e-5)
    # +1 exactly at the nearest point (the hemisphere's apex), -1 at the rim and the background.
    depth = out["depth"].numpy()[..., 0]
    assert depth.max() == 1.0 and np.unravel_index(depth.argmax(), depth.shape) == np.unravel_index(
        np.where(source.mask, source.depth, np.inf).argmin(), depth.shape)
    assert depth.min() == -1.0 and np.all(depth[~source.mask] == -1.0)
    normals = out["normals"].numpy()
    np.testing.assert_allclose(np.linalg.norm(normals[source.mask], axis=-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(normals[source.mask], source.normals[source.mask], atol=0.01)
    assert np.all(normals[~source.mask] == 0)
    assert out["expression"].dtype == tf.int32 and out["key"].numpy() == source.key.encode()


def _is_flipped(image):
    """The R channel encodes the source column: decreasing along a row means the image was mirrored."""
    red = image[..., 0]
    return float(np.mean(np.diff(red, axis=1))) < 0


def test_flip_mirrors_every_map_and_negates_normals_x(hemispheres):
    path, record = _first_record(hemispheres)
    features = schema.parse_example(record, source=tf.constant(path))
    reference = pipeline.preprocess(features, SIZE, augment=False)
    seen = set()
    for index in range(12):
        seed = pipeline.element_seeds(7, index)[0]
        out = pipeline.preprocess(features, SIZE, augment=True, seed=seed, crop=None)
        flipped = _is_flipped(out["image"].numpy())
        seen.add(flipped)
        mirror = (lambda a: a[:, ::-1]) if flipped else (lambda a: a)
        for name in ("image", "depth", "mask"):
            np.testing.assert_allclose(out[name].numpy(), mirror(reference[name].numpy()), atol=1e-5, err_msg=name)
        expected_normals = mirror(reference["normals"].numpy()) * ([-1.0, 1.0, 1.0] if flipped else 1.0)
        np.testing.assert_allclose(out["normals"].numpy(), expected_normals, atol=1e-5)
    assert seen == {True, False}


def _check_resampled_hemisphere(out, size_out, tol_normal=0.06):
    """Use the position-coded colour to find where each output pixel came from; compare geometry to the analytic."""
    image = (out["image"] + 1.0) * 127.5
    flipped = _is_flipped(image)
    u_src = image[..., 0] / 255.0 * (SIZE - 1)
    v_src = image[..., 1] / 255.0 * (SIZE - 1)
    x = (u_src + 0.5) / SIZE - 0.5
    y = 0.5 - (v_src + 0.5) / SIZE
    rho = np.sqrt(x ** 2 + y ** 2)
    h = np.sqrt(np.clip(RADIUS ** 2 - rho ** 2, 0, None))
    expected = np.stack([-x if flipped else x, y, h], -1) / RADIUS
    mask = out["mask"][..., 0] > 0.5
    pixel = SIZE / size_out / SIZE  # one output pixel in source units (the crop scales it further down)
    inside = rho < RADIUS - 1.5 * pixel
    outside = rho > RADIUS + 1.5 * pixel
    assert mask[inside].all() and not mask[outside].any()
    interior = rho < 0.8 * RADIUS
    assert interior.sum() > 50
    error = np.abs(out["normals"][interior] - expected[interior]).max()
    assert error < tol_normal, error
    # Normalised depth is an affine, decreasing function of z = D - h inside the mask.
    z = DISTANCE - h[interior]
    depth = out["depth"][..., 0][interior]
    slope, intercept = np.polyfit(z, depth, 1)
    assert slope < 0 and np.abs(depth - (slope * z + intercept)).max() < 0.03
    # The nearest point (+1) is the apex, not a rim pixel blended with the background's zeros.
    apex = np.unravel_index(np.argmax(np.where(mask, out["depth"][..., 0], -2)), mask.shape)
    assert rho[apex] < 0.3 * RADIUS
    assert out["depth"][..., 0][mask].max() == 1.0 and np.all(out["depth"][..., 0][~mask] == -1.0)
    return flipped


@pytest.mark.parametrize("size_out", [24, 48])
def test_crop_and_resize_keep_image_depth_normals_mask_aligned(hemispheres, size_out):
    path, record = _first_record(hemispheres)
    features = schema.parse_example(record, source=tf.constant(path))
    flips = set()
    for index in range(6):
        out = pipeline.preprocess(features, size_out, augment=True, seed=pipeline.element_seeds(3, index)[0],
                                  crop=(0.7, 0.9))
        out = {name: value.numpy() for name, value in out.items()}
        assert out["image"].shape == (size_out, size_out, 3)
        flips.add(_check_resampled_hemisphere(out, size_out))
    assert flips == {True, False}


@pytest.mark.slow  # 2 s in the full suite
def test_tilted_plane_normals_survive_resize(tmp_path):
    data_dir = write_dataset(tmp_path, [0, 1], make=tilted_plane)
    batch = _collect(pipeline.make_dataset(data_dir, "train", 2, image_size=20, training=False, crop=None))
    mask = batch["mask"][..., 0] > 0.5
    normal = np.array([0.6, -0.3, 1.0]) / np.linalg.norm([0.6, -0.3, 1.0])
    np.testing.assert_allclose(batch["normals"][mask], np.broadcast_to(normal, batch["normals"][mask].shape),
                               atol=0.01)
    # Depth stays a plane up to the rim: the mask-weighted resize never blends in the background's zeros.
    v, u = np.nonzero(mask[0])
    depth = batch["depth"][0, ..., 0][mask[0]]
    design = np.stack([u, v, np.ones_like(u)], -1).astype(np.float64)
    coefficients = np.linalg.lstsq(design, depth, rcond=None)[0]
    residual = np.abs(design @ coefficients - depth)
    assert residual.max() < 0.1, residual.max()
    # z = D + a x + b y grows to the right (a > 0) and downwards (b < 0, y up): depth falls along both, ratio a / -b.
    assert coefficients[0] < 0 and coefficients[1] < 0
    np.testing.assert_allclose(coefficients[0] / coefficients[1], 0.6 / 0.3, rtol=0.05)
    assert not batch["has_action_units"].any() and np.all(batch["action_units"] == 0)


# --- inside tf.data -----------------------------------------------------------------------------------------------

@pytest.mark.slow  # 3 s in the full suite
def test_batches_have_the_contracted_shapes_dtypes_and_ranges(hemispheres):
    dataset = pipeline.make_dataset(hemispheres, "train", batch_size=5, seed=1)
    batch = {name: value.numpy() for name, value in next(iter(dataset)).items()}
    shapes = {"image": (5, SIZE, SIZE, 3), "depth": (5, SIZE, SIZE, 1), "normals": (5, SIZE, SIZE, 3),
              "mask": (5, SIZE, SIZE, 1), "expression": (5,), "action_units": (5, NUM_ACTION_UNITS),
              "has_action_units": (5,), "action_units_mask": (5, NUM_ACTION_UNITS), "identity": (5,), "pair_id": (5,),
              "key": (5,)}
    dtypes = {"image": np.float32, "depth": np.float32, "normals": np.float32, "mask": np.float32,
              "expression": np.int32, "action_units": np.float32, "has_action_units": np.bool_,
              "action_units_mask": np.float32, "identity": np.int64, "pair_id": np.int64, "key": np.object_}
    assert {name: value.shape for name, value in batch.items()} == shapes
    assert {name: value.dtype.type for name, value in batch.items()} == dtypes
    assert batch["image"].min() >= -1 and batch["image"].max() <= 1
    assert set(np.unique(batch["mask"])) == {0.0, 1.0}
    mask = batch["mask"][..., 0] > 0.5
    for depth, face in zip(batch["depth"][..., 0], mask):
        assert depth[face].max() == 1.0 and depth[face].min() == -1.0 and np.all(depth[~face] == -1.0)
    np.testing.assert_allclose(np.linalg.norm(batch["normals"][mask], axis=-1), 1.0, atol=1e-5)
    assert np.all(batch["normals"][~mask] == 0) and np.all(batch["normals"][mask][:, 2] > 0)
    assert batch["has_action_units"].all() and batch["action_units"].min() >= 0
    assert np.all(batch["action_units_mask"] == 1)  # synthetic faces: every AU measured
    # Augmented in tf.data, geometry still matches the analytic hemisphere element by element.
    for i in range(5):
        _check_resampled_hemisphere({name: batch[name][i] for name in ("image", "depth", "normals", "mask")}, SIZE)


@pytest.mark.slow  # 3 s in the full suite
def test_flip_inside_tf_data_matches_an_unaugmented_pass(hemispheres):
    reference = _collect(pipeline.make_dataset(hemispheres, "train", 8, training=False))
    augmented = _collect(pipeline.make_dataset(hemispheres, "train", 8, crop=None, repeat=False, seed=5,
                                               deterministic=True))
    assert sorted(reference["key"]) == sorted(augmented["key"]) and len(reference["key"]) == 32
    row = {key: i for i, key in enumerate(reference["key"])}
    flips = []
    for i, key in enumerate(augmented["key"]):
        j = row[key]
        flipped = _is_flipped(augmented["image"][i])
        flips.append(flipped)
        mirror = (lambda a: a[:, ::-1]) if flipped else (lambda a: a)
        np.testing.assert_allclose(augmented["depth"][i], mirror(reference["depth"][j]), atol=1e-5)
        np.testing.assert_allclose(augmented["mask"][i], mirror(reference["mask"][j]))
        sign = np.array([-1.0, 1.0, 1.0]) if flipped else 1.0
        np.testing.assert_allclose(augmented["normals"][i], mirror(reference["normals"][j]) * sign, atol=1e-5)
    assert 4 <= sum(flips) <= 28


@pytest.mark.slow  # 3 s in the full suite
def test_unaugmented_pass_reads_every_example_once_in_order_independent_of_batching(hemispheres):
    a = _collect(pipeline.make_dataset(hemispheres, "train", 5, training=False))
    assert len(a["key"]) == 32 and len(set(a["key"])) == 32  # no drop_remainder, no repeat in evaluation mode
    b = _collect(pipeline.make_dataset(hemispheres, "train", 32, training=False, num_parallel_calls=1))
    np.testing.assert_array_equal(a["key"], b["key"])
    np.testing.assert_array_equal(a["depth"], b["depth"])


def test_distribute_batch_leaves_a_one_replica_batch_alone():
    batch = {"image": tf.zeros([4, 2, 2, 3])}
    for local in (False, True):  # one process (sharded by data or not at all), or a worker's own share
        assert pipeline.distribute_batch(tf.distribute.get_strategy(), batch, local=local) is batch


def test_file_shards_give_each_worker_its_own_files_and_together_every_record(hemispheres):
    """--worker_sharding=file: worker k of N reads shards k, k + N, ... (4 shards of 8 here)."""
    keys = [set(_collect(pipeline.make_dataset(hemispheres, "train", 8, training=False, shard=(k, 2)))["key"])
            for k in range(2)]
    assert len(keys[0]) == len(keys[1]) == 16 and not keys[0] & keys[1]
    assert keys[0] | keys[1] == set(_collect(pipeline.make_dataset(hemispheres, "train", 8, training=False))["key"])
    with pytest.raises(ValueError, match="shard 0 of 5: split 'train' of .* has 4 shards"):
        pipeline.make_dataset(hemispheres, "train", 8, shard=(0, 5))


@pytest.mark.slow  # 6 s in the full suite
def test_deterministic_mode_is_bit_identical_across_builds_and_parallelism(hemispheres):
    kwargs = dict(batch_size=4, seed=11, deterministic=True, shuffle_buffer=16)
    first = _collect(pipeline.make_dataset(hemispheres, "train", **kwargs), batches=4)
    second = _collect(pipeline.make_dataset(hemispheres, "train", num_parallel_calls=1, **kwargs), batches=4)
    for name in first:
        np.testing.assert_array_equal(first[name], second[name], err_msg=name)
    other = _collect(pipeline.make_dataset(hemispheres, "train", **{**kwargs, "seed": 12}), batches=4)
    assert not np.array_equal(first["key"], other["key"])
    assert not np.array_equal(first["image"], other["image"])


@pytest.mark.slow  # 3 s in the full suite
def test_iterator_checkpoint_restores_the_exact_data_position(hemispheres, tmp_path):
    def build():
        return pipeline.make_dataset(hemispheres, "train", batch_size=4, seed=3, deterministic=True, shuffle_buffer=16)

    iterator = iter(build())
    for _ in range(3):
        next(iterator)
    path = tf.train.Checkpoint(iterator=iterator).save(str(tmp_path / "ckpt" / "data"))
    expected = [next(iterator) for _ in range(2)]
    fresh = iter(build())
    next(fresh)  # a different position, to be overwritten by the restore
    tf.train.Checkpoint(iterator=fresh).restore(path).assert_consumed()
    for batch in expected:
        restored = next(fresh)
        for name in batch:
            np.testing.assert_array_equal(restored[name].numpy(), batch[name].numpy(), err_msg=name)


@pytest.mark.slow  # 6 s in the full suite
def test_balanced_sampling_is_uniform_over_present_classes(tmp_path):
    # 7 classes present (no contempt), strongly imbalanced: 24 neutral, 12 happy, 2 of each other class.
    labels = [0] * 24 + [1] * 12 + [2, 3, 4, 5, 6] * 2
    data_dir = write_dataset(tmp_path, labels, per_shard=16)
    drawn = _collect(pipeline.make_dataset(data_dir, "train", 50, image_size=8, balanced=True, seed=2,
                                           shuffle_buffer=64, augment=False, deterministic=True),
                     batches=12)["expression"]
    counts = np.bincount(drawn, minlength=NUM_EXPRESSIONS)
    assert counts[7] == 0
    expected = len(drawn) / 7
    assert np.all(np.abs(counts[:7] - expected) < 0.35 * expected), counts
    plain = _collect(pipeline.make_dataset(data_dir, "train", 50, image_size=8, seed=2, augment=False),
                     batches=4)["expression"]
    assert np.mean(plain == 0) > 0.4  # without balancing the majority class dominates
    np.testing.assert_allclose(pipeline.balanced_acceptance([4, 2, 0, 1]), [0.25, 0.5, 0.0, 1.0])


def test_requested_size_resizes_or_refuses(hemispheres):
    batch = next(iter(pipeline.make_dataset(hemispheres, "train", 2, image_size=16, training=False)))
    assert batch["image"].shape == (2, 16, 16, 3) and batch["depth"].shape == (2, 16, 16, 1)
    with pytest.raises(ValueError, match="image_size=16 does not match the dataset card.*32"):
        pipeline.make_dataset(hemispheres, "train", 2, image_size=16, allow_resize=False)


# --- bad input ----------------------------------------------------------------------------------------------------

def test_missing_empty_or_cardless_directory_is_explained(tmp_path):
    missing = str(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=r"nowhere.*does not exist.*expr3d\.data\.synthetic"):
        pipeline.make_dataset(missing, "train", 4)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match=r"empty.*is empty.*expr3d\.data\.synthetic"):
        dataset_card.describe(str(empty))
    cardless = tmp_path / "cardless"
    with records.ShardedWriter(str(cardless), "train") as writer:
        writer.write(hemisphere(0, 0))
    with pytest.raises(FileNotFoundError, match="dataset_card.json is missing.*1 shard.*write_dataset_card"):
        pipeline.make_dataset(str(cardless), "train", 4)


def test_bad_arguments_name_the_argument(hemispheres):
    with pytest.raises(ValueError, match="split 'validation'"):
        pipeline.make_dataset(hemispheres, "validation", 4)
    with pytest.raises(ValueError, match="batch_size"):
        pipeline.make_dataset(hemispheres, "train", 0)
    with pytest.raises(ValueError, match="crop"):
        pipeline.make_dataset(hemispheres, "train", 4, crop=(0.9, 0.5))
    with pytest.raises(ValueError, match="image_size"):
        pipeline.make_dataset(hemispheres, "train", 4, image_size=-3)
    assert "32 px" in dataset_card.describe(hemispheres) and "train" in dataset_card.describe(hemispheres)


@pytest.fixture()
def damaged(tmp_path):
    """Three shards of 8; the second one truncated in its 5th record, the third with a flipped byte (CRC error)."""
    data_dir = write_dataset(tmp_path, [i % NUM_EXPRESSIONS for i in range(24)])
    shards = records.split_files(data_dir, "train")
    with open(shards[1], "rb") as handle:
        data = handle.read()
    cut = len(data) * 9 // 16
    with open(shards[1], "wb") as handle:
        handle.write(data[:cut])
    with open(shards[2], "r+b") as handle:
        handle.seek(os.path.getsize(shards[2]) // 2)
        byte = handle.read(1)
        handle.seek(-1, os.SEEK_CUR)
        handle.write(bytes([byte[0] ^ 0xFF]))
    return data_dir, [os.path.basename(path) for path in shards]


@pytest.mark.slow  # 7 s in the full suite
def test_truncated_shard_error_names_the_shard(damaged):
    data_dir, names = damaged
    with pytest.raises(tf.errors.InvalidArgumentError, match=f"{names[1]}|{names[2]}") as error:
        _collect(pipeline.make_dataset(data_dir, "train", 4, training=False))
    assert "truncated or corrupt" in str(error.value)
    # Training mode (parallel interleave, shuffling, repeat) fails the same way.
    with pytest.raises(tf.errors.InvalidArgumentError, match=f"{names[1]}|{names[2]}"):
        _collect(pipeline.make_dataset(data_dir, "train", 4, shuffle_buffer=8), batches=20)


@pytest.mark.slow  # 2 s in the full suite
def test_skip_corrupt_skips_bad_records_and_keeps_the_good(damaged):
    data_dir, names = damaged
    batch = _collect(pipeline.make_dataset(data_dir, "train", 4, training=False, skip_corrupt=True))
    keys = set(batch["key"].tolist())
    first = {f"hemi{i:04d}".encode() for i in range(8)}
    assert first <= keys  # the intact shard is read fully
    assert 8 < len(keys) < 24 and len(keys) == len(batch["key"])
    assert {f"hemi{i:04d}".encode() for i in range(8, 12)} <= keys  # the truncated shard's first records survive


@pytest.mark.slow  # 4 s in the full suite
@pytest.mark.timeout(120)
def test_a_shard_deleted_while_training_fails_by_name_or_is_skipped(tmp_path):
    """Each epoch reopens the shards: one deleted mid-run ends the iteration naming it (it used to hang: an open
    error under ignore_errors() is retried forever), or is skipped with skip_corrupt. The iterator stays
    checkpointable (the existence check is an in-graph op, not a py_function). The folder has glob characters."""
    data_dir = write_dataset(tmp_path / "a [b] *c?", [i % NUM_EXPRESSIONS for i in range(24)])
    shards = records.split_files(data_dir, "train")
    strict = iter(pipeline.make_dataset(data_dir, "train", 4, shuffle_buffer=0))
    skipping = iter(pipeline.make_dataset(data_dir, "train", 4, shuffle_buffer=0, skip_corrupt=True, seed=1))
    for _ in range(2):
        next(strict), next(skipping)
    assert tf.train.Checkpoint(iterator=strict).write(str(tmp_path / "ckpt"))
    os.remove(shards[1])
    with pytest.raises(tf.errors.InvalidArgumentError) as error:
        for _ in range(40):  # five epochs: the deleted shard is reopened within the first two
            next(strict)
    assert schema.data_error_line(str(error.value)).startswith(f"{shards[1]}: shard listed in dataset_card.json is "
                                                               "missing")
    for _ in range(30):  # five epochs: past the shards the interleave opened ahead, before the deletion (POSIX
        next(skipping)    # keeps reading an open file; ~2.5 epochs measured)
    keys = set()
    for _ in range(12):  # three epochs of the 16 remaining records
        keys.update(next(skipping)["key"].numpy().tolist())
    assert keys == {f"hemi{i:04d}".encode() for i in (*range(8), *range(16, 24))}


@pytest.mark.slow  # 5 s in the full suite
def test_undecodable_record_fails_or_is_skipped(tmp_path):
    data_dir = write_dataset(tmp_path, [0, 1, 2, 3])
    shard = records.split_files(data_dir, "train")[0]
    serialized = [record.numpy() for record in tf.data.TFRecordDataset(shard)]
    proto = tf.train.Example.FromString(serialized[2])
    proto.features.feature["image/encoded"].bytes_list.value[0] = b"\x89PNG not really"
    serialized[2] = proto.SerializeToString()
    records.write_shard(shard, serialized)  # intact framing, bad payload: the count check cannot see it
    # In a child process: twice in ~20 suite runs (sessions 14, 17) the pytest-xdist worker died in this test after
    # hours of other tests, never in 40 repetitions in a fresh process; a child that crashes fails this test alone.
    result = forked_cli.run(["-c", _UNDECODABLE_SCRIPT, data_dir], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["raised", "hemi0000", "hemi0001", "hemi0003"], result.stdout


_UNDECODABLE_SCRIPT = r"""
import sys
import tensorflow as tf
from expr3d.data import pipeline
try:
    for _ in pipeline.make_dataset(sys.argv[1], "train", 2, training=False):
        pass
except tf.errors.InvalidArgumentError:
    print("raised")
keys = [key for batch in pipeline.make_dataset(sys.argv[1], "train", 2, training=False, skip_corrupt=True)
        for key in batch["key"].numpy().tolist()]
print(*sorted(key.decode() for key in keys))
"""


# --- helpers ------------------------------------------------------------------------------------------------------

def test_geometry_map_and_back():
    depth = tf.random.uniform([2, 4, 4, 1], -1, 1, seed=1)
    normals = tf.math.l2_normalize(tf.random.normal([2, 4, 4, 3], seed=2), axis=-1)
    batch = {"depth": depth, "normals": normals}
    geometry = pipeline.geometry_map(batch, "depth")
    assert tuple(geometry.shape) == (2, 4, 4, 3)
    np.testing.assert_allclose(np.asarray(pipeline.depth_from_geometry_map(geometry)), depth.numpy(), atol=1e-6)
    np.testing.assert_array_equal(np.asarray(pipeline.geometry_map(batch, "normals")), normals.numpy())
    with pytest.raises(ValueError, match="geometry kind"):
        pipeline.geometry_map(batch, "albedo")


_MIRRORED_SCRIPT = r"""
import sys
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from expr3d.data import pipeline
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
def build():
    return iter(pipeline.make_dataset(sys.argv[1], "train", 4, seed=1, deterministic=True, shuffle_buffer=16))
iterator = build()
next(iterator)
path = tf.train.Checkpoint(iterator=iterator).save(sys.argv[2])
batch = next(iterator)
parts = strategy.experimental_local_results(pipeline.distribute_batch(strategy, batch))
assert len(parts) == 2 and parts[1]["image"].device.endswith("CPU:1"), parts[1]["image"].device
for name in batch:
    np.testing.assert_array_equal(np.concatenate([p[name].numpy() for p in parts]), batch[name].numpy())
sums = strategy.experimental_local_results(
    tf.function(lambda b: strategy.run(lambda x: tf.reduce_sum(x["depth"]), args=(b,)))(
        pipeline.distribute_batch(strategy, batch)))
np.testing.assert_allclose(sum(s.numpy() for s in sums), batch["depth"].numpy().sum(), rtol=1e-5)
restored = build()
tf.train.Checkpoint(iterator=restored).restore(path)
np.testing.assert_array_equal(next(restored)["key"].numpy(), batch["key"].numpy())
try:
    pipeline.distribute_batch(strategy, {"x": tf.zeros([3, 2])})
except ValueError as error:
    assert "does not split evenly over 2 replicas" in str(error)
else:
    raise AssertionError("odd batch accepted")
print("OK")
"""


@pytest.mark.slow  # a fresh process with two virtual CPU devices: ~30 s
def test_distribute_batch_splits_a_checkpointable_global_batch_over_two_replicas(hemispheres, tmp_path):

    result = forked_cli.run(["-c", _MIRRORED_SCRIPT, hemispheres, str(tmp_path / "data")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip().endswith("OK"), result.stderr[-3000:]
