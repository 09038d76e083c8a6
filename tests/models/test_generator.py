"""Config and `.keras` round trips and the mixed_float16 output dtype: tests/models/test_harness.py."""
import keras
import numpy as np
import pytest

from expr3d.models import StarGANGenerator


def _inputs(batch=2, size=32, cond_dim=8, seed=0):
    rng = np.random.default_rng(seed)
    image = rng.uniform(-1, 1, (batch, size, size, 3)).astype("float32")
    labels = rng.integers(0, cond_dim, batch)
    return image, np.eye(cond_dim, dtype="float32")[labels]


@pytest.mark.parametrize(
    "cond_dim,conv_dim,num_res_blocks,num_down,size",
    [(8, 8, 1, 2, 32), (5, 4, 2, 2, 16), (2, 8, 0, 1, 8), (3, 8, 1, 3, 32)],
)
def test_output_shape_dtype_and_range(cond_dim, conv_dim, num_res_blocks, num_down, size):
    g = StarGANGenerator(cond_dim, conv_dim=conv_dim, num_res_blocks=num_res_blocks, num_down=num_down)
    image, condition = _inputs(batch=3, size=size, cond_dim=cond_dim)
    out = keras.ops.convert_to_numpy(g([image, condition]))
    assert out.shape == (3, size, size, 3)
    assert out.dtype == np.float32
    assert np.all(np.abs(out) <= 1.0)
    # Any multiple of 2**num_down works: the spatial size is not fixed.
    assert g([np.zeros((1, 2 * size, 2 * size, 3), "float32"), condition[:1]]).shape == (1, 2 * size, 2 * size, 3)


def test_architecture_matches_stargan():
    g = StarGANGenerator(cond_dim=8, conv_dim=8, num_res_blocks=2)
    convs = [l for l in g.layers if isinstance(l, (keras.layers.Conv2D, keras.layers.Conv2DTranspose))]
    assert [type(l).__name__ for l in convs] == ["Conv2D"] * 7 + ["Conv2DTranspose"] * 2 + ["Conv2D"]
    assert [l.kernel.shape for l in convs] == [
        (7, 7, 3 + 8, 8),
        (4, 4, 8, 16),
        (4, 4, 16, 32),
        *[(3, 3, 32, 32)] * 4,
        (4, 4, 16, 32),  # Conv2DTranspose kernels are (kh, kw, out, in)
        (4, 4, 8, 16),
        (7, 7, 8, 3),
    ]
    assert not any(l.use_bias for l in convs)
    norms = [l for l in g.layers if isinstance(l, keras.layers.GroupNormalization)]
    assert len(norms) == 1 + 2 + 2 * 2 + 2
    assert all(n.groups == n.gamma.shape[0] and n.epsilon == 1e-5 and n.scale and n.center for n in norms)


def test_full_size_parameter_count_matches_official_stargan():
    # Official StarGAN (c_dim=5, conv_dim=64, repeat_num=6) prints 8,430,528 parameters.
    assert StarGANGenerator(cond_dim=5).count_params() == 8_430_528


def test_condition_changes_output():
    g = StarGANGenerator(cond_dim=8, conv_dim=8, num_res_blocks=1)
    image, _ = _inputs(batch=1)
    outs = [keras.ops.convert_to_numpy(g([image, np.eye(8, dtype="float32")[[c]]])) for c in range(8)]
    for i in range(8):
        for j in range(i + 1, 8):
            assert np.abs(outs[i] - outs[j]).mean() > 1e-4


def test_instance_norm_makes_each_sample_independent_of_the_batch():
    g = StarGANGenerator(cond_dim=8, conv_dim=8, num_res_blocks=1)
    image, condition = _inputs(batch=3)
    batched = keras.ops.convert_to_numpy(g([image, condition]))
    single = keras.ops.convert_to_numpy(g([image[1:2], condition[1:2]]))
    np.testing.assert_allclose(batched[1:2], single, atol=1e-5)


@pytest.mark.parametrize("field,value", [("cond_dim", 0), ("conv_dim", 2.5), ("num_res_blocks", -1)])
def test_bad_arguments_name_the_field(field, value):
    kwargs = {"cond_dim": 8, field: value}
    with pytest.raises(ValueError, match=field):
        StarGANGenerator(**kwargs)


def test_mixed_bfloat16_outputs_float32():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        g = StarGANGenerator(cond_dim=8, conv_dim=8, num_res_blocks=1)
        assert g.get_layer("stem_conv").compute_dtype == "bfloat16"
        assert g.get_layer("stem_conv").kernel.dtype == "float32"
        image, condition = _inputs()
        out = g([image, condition])
        assert keras.backend.standardize_dtype(out.dtype) == "float32"
        assert np.all(np.isfinite(keras.ops.convert_to_numpy(out)))
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_condition_norms_start_as_stargan_s_generator_and_then_follow_the_condition(tmp_path):
    """`condition_norms=True` adds one ConditionalAffine after every instance norm, zero-initialised: with the
    plain generator's weights copied, both compute the same function; trained (here: set) weights change what a
    condition does, and the flag survives saving."""
    plain = StarGANGenerator(cond_dim=3, conv_dim=4, num_res_blocks=1, num_down=1)
    conditioned = StarGANGenerator(cond_dim=3, conv_dim=4, num_res_blocks=1, num_down=1, condition_norms=True)
    affines = [layer for layer in conditioned.layers if layer.name.endswith("_condition")]
    norms = [layer for layer in plain.layers if "norm" in layer.name]
    assert sorted(a.name for a in affines) == sorted(f"{n.name}_condition" for n in norms)
    for layer in plain.layers:
        if layer.weights:
            conditioned.get_layer(layer.name).set_weights(layer.get_weights())
    x = np.random.default_rng(1).uniform(-1, 1, (2, 8, 8, 3)).astype("float32")
    c = np.eye(3, dtype="float32")[[0, 2]]
    assert np.allclose(np.asarray(plain([x, c])), np.asarray(conditioned([x, c])), atol=1e-6)
    rng = np.random.default_rng(2)
    for layer in affines:
        layer.set_weights([rng.normal(0, 0.5, w.shape).astype("float32") for w in layer.get_weights()])
    assert np.abs(np.asarray(plain([x, c])) - np.asarray(conditioned([x, c]))).max() > 1e-2
    path = str(tmp_path / "g.keras")
    conditioned.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.condition_norms and np.allclose(np.asarray(loaded([x, c])), np.asarray(conditioned([x, c])))
