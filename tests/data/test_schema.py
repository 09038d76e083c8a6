import numpy as np
import pytest
import tensorflow as tf

from expr3d.data import schema
from tests.data.fixtures import hemisphere_example


@pytest.mark.parametrize("depth_format", ["png16", "float16"])
@pytest.mark.parametrize("image_format", ["png", "jpeg"])
def test_round_trip_numpy_and_tf(depth_format, image_format):
    example = hemisphere_example(size=24, expression=5, identity=3, key="id3/disgust", pair_id=9)
    example.depth_format, example.image_format = depth_format, image_format
    if image_format == "jpeg":
        example.image[..., 2] = 128  # JPEG is lossy and subsamples chroma: keep the picture smooth
    serialized = schema.encode_example(example)

    decoded = schema.decode_example(serialized)
    parsed = schema.parse_example(tf.constant(serialized))
    mask = example.mask
    tolerance = 1e-4 if depth_format == "png16" else 2e-3  # float16 has an 11-bit mantissa at depth ~3
    for depth in (decoded.depth, parsed["depth"].numpy()[..., 0]):
        np.testing.assert_allclose(depth[mask], example.depth[mask], atol=tolerance)
        assert np.all(depth[~mask] == 0)
    np.testing.assert_array_equal(decoded.mask, mask)
    np.testing.assert_array_equal(parsed["mask"].numpy()[..., 0] > 0.5, mask)
    for normals in (decoded.normals, parsed["normals"].numpy()):
        np.testing.assert_allclose(normals[mask], example.normals[mask], atol=1 / 127.5)
        assert np.all(normals[~mask] == 0)
    if image_format == "png":
        np.testing.assert_array_equal(decoded.image, example.image)
        np.testing.assert_array_equal(parsed["image"].numpy(), example.image)
    else:
        assert np.abs(decoded.image.astype(int) - example.image).mean() < 4
    assert decoded.expression == parsed["expression"].numpy() == 5
    assert decoded.identity == parsed["identity"].numpy() == 3
    assert decoded.pair_id == parsed["pair_id"].numpy() == 9
    assert decoded.key == parsed["key"].numpy().decode() == "id3/disgust"
    np.testing.assert_allclose(decoded.action_units, example.action_units)
    np.testing.assert_allclose(parsed["action_units"].numpy(), example.action_units)
    assert bool(parsed["has_action_units"].numpy())


def test_missing_action_units_parse_as_zeros():
    example = hemisphere_example(with_aus=False)
    parsed = schema.parse_example(tf.constant(schema.encode_example(example)))
    assert not bool(parsed["has_action_units"].numpy())
    assert np.all(parsed["action_units"].numpy() == 0)
    assert schema.decode_example(schema.encode_example(example)).action_units is None


@pytest.mark.parametrize("field, value, message", [
    ("expression", 8, "label/expression"),
    ("action_units", np.zeros(5), "label/action_units"),
    ("depth", np.zeros((3, 3)), "depth"),
    ("image_format", "gif", "image/format"),
])
def test_invalid_examples_name_the_field(field, value, message):
    example = hemisphere_example()
    setattr(example, field, value)
    with pytest.raises(schema.RecordError, match=message):
        schema.encode_example(example)


def _tamper(serialized, name, **kind_values):
    proto = tf.train.Example.FromString(serialized)
    feature = proto.features.feature[name]
    for kind, values in kind_values.items():
        getattr(feature, kind).value[:] = values
    return proto.SerializeToString()


def test_decoder_names_record_and_field():
    good = schema.encode_example(hemisphere_example(size=16))
    bad_height = _tamper(good, "image/height", int64_list=[17])
    with pytest.raises(schema.RecordError, match=r"train-00001.tfrecord record 4: field 'image/encoded'"):
        schema.decode_example(bad_height, where="train-00001.tfrecord record 4")
    bad_depth = _tamper(good, "depth/encoded", bytes_list=[b"not a png"])
    with pytest.raises(schema.RecordError, match="field 'depth/encoded'"):
        schema.decode_example(bad_depth)
    proto = tf.train.Example.FromString(good)
    del proto.features.feature["label/expression"]
    with pytest.raises(schema.RecordError, match="field 'label/expression' is missing"):
        schema.decode_example(proto.SerializeToString())
    with pytest.raises(schema.RecordError, match="not a tf.train.Example"):
        schema.decode_example(b"\x00garbage\xff")


def test_tf_parser_names_source_and_field():
    good = schema.encode_example(hemisphere_example(size=16))
    bad = _tamper(good, "label/expression", int64_list=[11])
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"shard-7(.|\n)*label/expression") as error:
        schema.parse_example(tf.constant(bad), source=tf.constant("shard-7"))
    assert schema.data_error_line(error.value.message) == "shard-7 (key k): field 'label/expression' is outside 0-7"
    bad_size = _tamper(good, "image/width", int64_list=[15])
    with pytest.raises(tf.errors.InvalidArgumentError, match="image/encoded"):
        schema.parse_example(tf.constant(bad_size), source=tf.constant("shard-7"))


def _with_missing_action_units():
    example = hemisphere_example(size=16, key="openface")
    valid = np.ones(17, bool)
    valid[[3, 11]] = False  # e.g. a NaN cell, and AU16 (which OpenFace does not estimate)
    example.action_units = np.where(valid, np.linspace(0.1, 0.9, 17), 0.0).astype(np.float32)
    example.action_units_valid = valid
    return example, valid


def test_action_unit_validity_round_trips_as_a_mask_numpy_and_tf():
    example, valid = _with_missing_action_units()
    serialized = schema.encode_example(example)
    decoded = schema.decode_example(serialized)
    parsed = schema.parse_example(tf.constant(serialized))
    np.testing.assert_array_equal(decoded.action_units_valid, valid)
    np.testing.assert_array_equal(decoded.action_units_mask(), valid.astype(np.float32))
    np.testing.assert_array_equal(parsed["action_units_mask"].numpy(), valid.astype(np.float32))
    np.testing.assert_allclose(parsed["action_units"].numpy(), example.action_units)
    assert np.all(parsed["action_units"].numpy()[~valid] == 0) and bool(parsed["has_action_units"].numpy())
    # Without the field every stored AU is measured, and without AUs none is.
    full = hemisphere_example(size=16)
    assert np.all(schema.parse_example(tf.constant(schema.encode_example(full)))["action_units_mask"].numpy() == 1)
    assert np.all(full.action_units_mask() == 1)
    bare = hemisphere_example(size=16, with_aus=False)
    assert np.all(schema.parse_example(tf.constant(schema.encode_example(bare)))["action_units_mask"].numpy() == 0)
    assert np.all(bare.action_units_mask() == 0)


def test_action_unit_validity_is_additive_for_old_readers():
    example, valid = _with_missing_action_units()
    serialized = schema.encode_example(example)
    # An example without the field has the bytes it had before the field existed (shards stay byte-reproducible).
    plain = hemisphere_example(size=16)
    assert b"label/action_units_valid" not in schema.encode_example(plain)
    # A reader with the feature spec of before (no label/action_units_valid) still parses the example: intensities
    # are finite, missing ones are 0 (never NaN), inside [0, 1].
    old_spec = {k: v for k, v in schema.feature_spec().items() if k != "label/action_units_valid"}
    old = tf.io.parse_single_example(tf.constant(serialized), old_spec)
    stored = tf.sparse.to_dense(old["label/action_units"]).numpy()
    assert stored.shape == (17,) and np.all(np.isfinite(stored)) and np.all(stored[~valid] == 0)
    assert stored.min() >= 0 and stored.max() <= 1


def test_action_unit_validity_errors_name_the_field():
    example, _ = _with_missing_action_units()
    example.action_units = None
    with pytest.raises(schema.RecordError, match="label/action_units_valid.*without"):
        schema.encode_example(example)
    example, _ = _with_missing_action_units()
    example.action_units_valid = np.ones(5, bool)
    with pytest.raises(schema.RecordError, match="label/action_units_valid"):
        schema.encode_example(example)
    good = schema.encode_example(_with_missing_action_units()[0])
    for flags in ([1] * 16, [2] + [1] * 16):
        bad = _tamper(good, "label/action_units_valid", int64_list=flags)
        with pytest.raises(schema.RecordError, match="label/action_units_valid"):
            schema.decode_example(bad)
        with pytest.raises(tf.errors.InvalidArgumentError, match="label/action_units_valid"):
            schema.parse_example(tf.constant(bad), source=tf.constant("shard-1"))


def test_transfer_keys_round_trip_and_are_absent_from_other_records():
    plain = hemisphere_example(key="id3/happy")
    truth = hemisphere_example(key="id3/surprise_from_id4")
    truth.transfer_source_key, truth.transfer_exemplar_key = "id3/happy", "id4/surprise"
    for example, expected in ((plain, ("", "")), (truth, ("id3/happy", "id4/surprise"))):
        serialized = schema.encode_example(example)
        decoded = schema.decode_example(serialized)
        parsed = schema.parse_example(tf.constant(serialized))
        assert (decoded.transfer_source_key, decoded.transfer_exemplar_key) == expected
        assert tuple(parsed[name].numpy().decode() for name in ("transfer_source_key", "transfer_exemplar_key")) \
            == expected
        assert schema.read_transfer_keys(serialized) == (example.key,) + expected
    # A record without them is what the writer produced before they existed: no transfer/* feature at all.
    features = tf.train.Example.FromString(schema.encode_example(plain)).features.feature
    assert not [name for name in features if name.startswith("transfer/")]


def test_transfer_keys_come_both_or_neither():
    example = hemisphere_example()
    example.transfer_source_key = "id3/happy"
    with pytest.raises(schema.RecordError, match="transfer/exemplar_key"):
        schema.encode_example(example)
