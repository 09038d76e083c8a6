"""`ActionUnitEditGenerator` (`--generator=action_unit_edit`): edits proportional to the AU change asked."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from expr3d.models import ActionUnitEditCombine, ActionUnitEditGenerator, ModelConfig, build_models
from expr3d.models.action_unit_edit_generator import ActionUnitChange


def _randomised(seed=0, **kwargs):
    """A generator whose every weight is random (a new one's edit convolution is zero: it returns its input)."""
    keras.utils.set_random_seed(seed)
    g = ActionUnitEditGenerator(**{"cond_dim": 5, "conv_dim": 8, "num_res_blocks": 1, "reader_width": 4, **kwargs})
    rng = np.random.default_rng(seed)
    for variable in g.weights:
        if "moving_variance" in variable.path:
            variable.assign(rng.uniform(0.5, 1.5, variable.shape).astype("float32"))
        else:
            variable.assign(rng.normal(0, 0.3, variable.shape).astype("float32"))
    return g


def _image(batch=2, size=16, seed=1):
    return np.random.default_rng(seed).uniform(-0.5, 0.5, (batch, size, size, 3)).astype("float32")


def test_the_combine_adds_each_au_s_edit_image_times_its_change_and_clips():
    rng = np.random.default_rng(0)
    image = rng.uniform(-1, 1, (2, 4, 4, 3)).astype("float32")
    fields = rng.normal(0, 1, (2, 4, 4, 6)).astype("float32")  # 2 AUs x 3 channels
    target = np.array([[0.9, 0.2], [0.0, 1.0]], "float32")
    read = np.array([[0.4, 0.2], [0.5, 0.25]], "float32")
    change = target - read
    edit = change[:, None, None, :1] * fields[..., :3] + change[:, None, None, 1:] * fields[..., 3:]
    expected = np.clip(image + edit, -1, 1)
    got = np.asarray(ActionUnitEditCombine()([image, fields, target, read]))
    np.testing.assert_allclose(got, expected, atol=1e-6)
    np.testing.assert_allclose(np.asarray(ActionUnitChange()([target, read])), np.concatenate([target, change], -1),
                               atol=1e-6)


def test_a_new_generator_returns_its_input_and_asking_for_the_read_aus_returns_the_face():
    image = _image()
    fresh = ActionUnitEditGenerator(cond_dim=5, conv_dim=8, num_res_blocks=1, reader_width=4)
    np.testing.assert_array_equal(np.asarray(fresh([image, np.full((2, 5), 0.7, "float32")])), image)
    g = _randomised()
    read = np.asarray(g.read_action_units(image))
    assert read.shape == (2, 5) and np.all((read >= 0) & (read <= 1))
    edited = np.asarray(g([image, np.clip(read + 0.5, 0, 1)]))
    assert np.abs(edited - image).max() > 1e-2  # a random generator does edit when asked for a change
    np.testing.assert_allclose(np.asarray(g([image, read])), image, atol=1e-5)


def test_a_dial_edits_by_its_au_s_edit_image_alone_scaled_by_the_change():
    g = _randomised(seed=3)
    image = _image(batch=1)
    read = np.asarray(g.read_action_units(image))
    fields_model = keras.Model(g.inputs, g.get_layer("edit_conv").output)
    for unit, change in ((1, 0.3), (4, -0.2)):
        target = read.copy()
        target[0, unit] += change
        fields = np.asarray(fields_model([image, target])).reshape(1, 16, 16, 5, 3)
        expected = np.clip(image + change * fields[..., unit, :], -1, 1)
        np.testing.assert_allclose(np.asarray(g([image, target])), expected, atol=1e-4)


def test_only_the_reader_s_own_loss_reaches_the_reader():
    g = _randomised(seed=2)
    image = tf.constant(_image())
    target = tf.fill([2, 5], 0.8)
    with tf.GradientTape(persistent=True) as tape:
        output_loss = tf.reduce_mean(tf.square(g([image, target], training=True)))
        reader_loss = tf.reduce_mean(tf.square(g.read_action_units(image, training=True) - 0.3))
    reader = g.reader_variables
    assert reader and [id(v) for v in reader] == [id(v) for v in g.get_layer("reader_network").trainable_variables]
    assert all(grad is None or float(tf.reduce_max(tf.abs(grad))) == 0.0
               for grad in tape.gradient(output_loss, reader))
    assert all(grad is not None for grad in tape.gradient(reader_loss, reader))
    trunk_gradients = tape.gradient(output_loss, g.get_layer("stem_conv").trainable_variables)
    assert float(tf.reduce_max(tf.abs(trunk_gradients[0]))) > 0


def test_the_reader_copies_an_au_regressor_of_its_width_and_is_then_frozen():
    from expr3d.metrics.expression_classifier import build_classifier

    g = ActionUnitEditGenerator(cond_dim=5, conv_dim=8, num_res_blocks=1, reader_width=4)
    keras.utils.set_random_seed(9)
    regressor = build_classifier(16, num_classes=5, width=4)  # the AU judge's network (with its dropout)
    for variable in regressor.weights:
        if "moving_variance" not in variable.path:
            variable.assign(np.random.default_rng(1).normal(0, 0.2, variable.shape).astype("float32"))
    assert g.reader_trainable
    g.load_reader(regressor)
    image = _image()
    np.testing.assert_allclose(np.asarray(g.read_action_units(image, training=True)),
                               np.asarray(keras.ops.sigmoid(regressor(image, training=False))), atol=1e-5)
    assert not g.reader_trainable and g.reader_variables == []
    with pytest.raises(ValueError, match=r"is not the reader's network \(width 4, 5 AUs\).*--guide_width=4"):
        g.load_reader(build_classifier(16, num_classes=5, width=8))


def test_the_builder_makes_it_for_the_au_condition_only():
    tiny = dict(image_size=32, g_conv_dim=8, g_num_res_blocks=0, d_conv_dim=8, d_num_layers=2, depth_g_conv_dim=8,
                depth_g_num_res_blocks=0, depth_d_conv_dim=8, depth_d_num_layers=2)
    networks = build_models(ModelConfig(**tiny, generator="action_unit_edit", condition="action_units",
                                        guide_width=4))
    g = networks["g_rgb"]
    assert type(g) is ActionUnitEditGenerator and g.cond_dim == 17 and g.reader_width == 4
    with pytest.raises(ValueError, match="'action_unit_edit' needs the stargan family with condition"):
        ModelConfig(**tiny, generator="action_unit_edit")
