"""Continuous AU control (issue #13 item 3): G_rgb conditioned on AU intensities, D_rgb's head regressing them,
the training batches' AU targets and what the training command refuses."""
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from expr3d import losses
from expr3d.labels import NUM_ACTION_UNITS
from expr3d.models import ModelConfig, build_models
from expr3d.training import inputs, objectives
from expr3d.training.depth_guided_stargan import DepthGuidedStarGAN, action_unit_condition
from tests.training.helpers import TINY_CONFIG


def _au_networks(seed=0):
    keras.utils.set_random_seed(seed)
    return build_models(ModelConfig(**TINY_CONFIG, condition="action_units"))


def _au_batch(batch_size=4, seed=0):
    rng = np.random.default_rng(seed)
    image = rng.uniform(-1, 1, (batch_size, 32, 32, 3)).astype("float32")
    aus = rng.uniform(0, 1, (batch_size, NUM_ACTION_UNITS)).astype("float32")
    mask = np.ones_like(aus)
    mask[:, 12] = 0.0  # an AU the data lacks (OpenFace's AU16)
    order = np.roll(np.arange(batch_size), 1)
    return {"image": tf.constant(image), "geometry": tf.constant(image),
            "expression": tf.zeros([batch_size], tf.int32), "target": tf.zeros([batch_size], tf.int32),
            "action_units": tf.constant(aus), "action_units_mask": tf.constant(mask),
            "target_action_units": tf.constant(aus[order]), "target_action_units_mask": tf.constant(mask[order]),
            "alpha": tf.constant(rng.uniform(size=(batch_size, 1, 1, 1)).astype("float32")),
            "alpha_depth": tf.constant(rng.uniform(size=(batch_size, 1, 1, 1)).astype("float32"))}


def test_the_networks_take_and_read_seventeen_action_units():
    config = ModelConfig(**TINY_CONFIG, condition="action_units")
    assert config.condition_dim == NUM_ACTION_UNITS and ModelConfig(**TINY_CONFIG).condition_dim == 8
    assert ModelConfig.from_dict(config.to_dict()) == config
    networks = _au_networks()
    image = tf.zeros([2, 32, 32, 3])
    assert networks["g_rgb"]([image, tf.zeros([2, NUM_ACTION_UNITS])]).shape == (2, 32, 32, 3)
    assert networks["d_rgb"](image)[1].shape == (2, NUM_ACTION_UNITS)
    assert networks["d_depth"](image)[1].shape == (2, 8)  # D_depth keeps the expression classes
    with pytest.raises(ValueError, match="condition must be one of"):
        ModelConfig(**TINY_CONFIG, condition="landmarks")
    with pytest.raises(ValueError, match="condition applies to the stargan family"):
        ModelConfig(**TINY_CONFIG, family="transfer", condition="action_units")


def test_missing_action_units_enter_the_generator_as_absent():
    condition = action_unit_condition(tf.constant([[0.5, np.nan, 1.7, 0.2]]), tf.constant([[1.0, 1.0, 1.0, 0.0]]))
    np.testing.assert_array_equal(condition.numpy(), [[0.5, 0.0, 1.0, 0.0]])


def test_an_au_head_is_scored_by_the_masked_l1_and_has_no_class_penalty():
    logits = tf.constant([[0.0, 2.0], [-1.0, 0.5]])
    target = objectives.ActionUnitTarget(tf.constant([[0.5, 1.0], [0.0, 0.0]]), tf.constant([[1.0, 0.0], [1.0, 1.0]]))
    expected = losses.action_unit_regression_loss(tf.sigmoid(logits), target.intensities, target.mask)
    np.testing.assert_allclose(float(objectives.head_loss(logits, target)), float(expected), rtol=1e-6)
    critic = lambda x, training: (x[:, :1], logits)  # noqa: E731  (a critic of known outputs)
    with pytest.raises(ValueError, match="defined on a class distribution"):
        objectives.generator_terms(critic, tf.zeros([2, 2]), target, log_entropy=True)


@pytest.mark.slow
def test_steps_condition_on_the_target_action_units_and_d_rgb_regresses_them():
    networks = _au_networks()
    gan = DepthGuidedStarGAN(**networks, depth_weight=0.0, n_critic=1, condition="action_units")
    gan.compile(optimizers={key: keras.optimizers.SGD(0.1, name=key) for key in networks})
    gan.build_optimizers()
    batch = _au_batch()
    _, real_logits = networks["d_rgb"](batch["image"], training=True)
    expected = losses.action_unit_regression_loss(tf.sigmoid(real_logits), batch["action_units"],
                                                  batch["action_units_mask"])
    logs = gan.critic_step(batch)
    np.testing.assert_allclose(float(logs["d_cls"]), float(expected), rtol=1e-5)
    target = action_unit_condition(batch["target_action_units"], batch["target_action_units_mask"])
    fake = networks["g_rgb"]([batch["image"], target], training=True)
    _, fake_logits = networks["d_rgb"](fake, training=True)
    expected = losses.action_unit_regression_loss(tf.sigmoid(fake_logits), batch["target_action_units"],
                                                  batch["target_action_units_mask"])
    logs = gan.generator_step(batch)
    np.testing.assert_allclose(float(logs["g_cls"]), float(expected), rtol=1e-5)
    assert all(np.isfinite(float(v)) for v in logs.values())
    with pytest.raises(ValueError, match="needs depth_weight 0"):
        DepthGuidedStarGAN(**networks, depth_weight=0.1, condition="action_units")


@pytest.mark.slow
def test_with_the_paired_term_the_target_is_the_true_render_under_its_own_action_units():
    networks = _au_networks()
    gan = DepthGuidedStarGAN(**networks, depth_weight=0.0, n_critic=1, condition="action_units", lambda_pair=2.0)
    gan.compile(optimizers={key: keras.optimizers.SGD(0.0, name=key) for key in networks})  # fixed networks
    batch = _au_batch()
    batch["target_image"] = tf.reverse(batch["image"], axis=[0])
    target = action_unit_condition(batch["target_action_units"], batch["target_action_units_mask"])
    fake = networks["g_rgb"]([batch["image"], target], training=True)
    per_row = np.mean(np.abs(batch["target_image"].numpy() - fake.numpy()), axis=(1, 2, 3))
    np.testing.assert_allclose(float(gan.generator_step(batch)["g_pair"]), per_row.mean(), rtol=1e-5)
    # Rows with a dialled target (paired --au_dial_targets) have no true render: weighed out, the mean over all rows.
    batch["pair_weight"] = tf.constant([1.0, 0.0, 1.0, 0.0])
    np.testing.assert_allclose(float(gan.generator_step(batch)["g_pair"]), (per_row[0] + per_row[2]) / 4, rtol=1e-5)


def test_permuted_targets_carry_the_action_units_of_the_face_whose_label_they_took():
    rng = np.random.default_rng(0)
    batch = {"image": tf.zeros([6, 4, 4, 3]), "depth": tf.zeros([6, 4, 4, 1]), "normals": tf.zeros([6, 4, 4, 3]),
             "expression": tf.constant([0, 1, 2, 3, 4, 5]),
             "action_units": tf.constant(rng.uniform(size=(6, NUM_ACTION_UNITS)).astype("float32")),
             "action_units_mask": tf.constant((rng.uniform(size=(6, NUM_ACTION_UNITS)) > 0.2).astype("float32"))}
    fields = inputs.add_training_fields(3, batch, "depth", 8, seed=1, with_action_units=True)
    order = fields["target"].numpy()  # the labels are 0..5, so the target labels name the faces they came from
    assert sorted(order) == list(range(6))
    np.testing.assert_array_equal(fields["target_action_units"].numpy(), batch["action_units"].numpy()[order])
    np.testing.assert_array_equal(fields["target_action_units_mask"].numpy(),
                                  batch["action_units_mask"].numpy()[order])


def test_dial_targets_are_the_face_s_own_action_units_with_one_set_to_a_random_level():
    rng = np.random.default_rng(1)
    size = 64
    units = rng.uniform(size=(size, NUM_ACTION_UNITS)).astype("float32")
    mask = (rng.uniform(size=(size, NUM_ACTION_UNITS)) > 0.2).astype("float32")
    batch = {"image": tf.zeros([size, 4, 4, 3]), "depth": tf.zeros([size, 4, 4, 1]),
             "normals": tf.zeros([size, 4, 4, 3]), "expression": tf.constant(np.arange(size) % 8),
             "action_units": tf.constant(units), "action_units_mask": tf.constant(mask)}
    plain = inputs.add_training_fields(3, batch, "depth", 8, seed=1, with_action_units=True)
    off = inputs.add_training_fields(3, batch, "depth", 8, seed=1, with_action_units=True, au_dial_targets=0.0)
    for key in plain:
        np.testing.assert_array_equal(plain[key].numpy(), off[key].numpy())
    dialled = inputs.add_training_fields(3, batch, "depth", 8, seed=1, with_action_units=True, au_dial_targets=1.0)
    target, target_mask = dialled["target_action_units"].numpy(), dialled["target_action_units_mask"].numpy()
    changed = target != units
    assert changed.sum(axis=1).max() == 1 and changed.sum() >= size - 2  # one AU per face (equal by chance: rare)
    assert len(set(np.argmax(changed, axis=1).tolist())) > 8  # spread over the AUs
    np.testing.assert_array_equal(target_mask[changed], 1.0)  # the dialled AU counts as known
    np.testing.assert_array_equal(target_mask[~changed], mask[~changed])
    assert 0.0 <= target.min() and target.max() < 1.0
    np.testing.assert_array_equal(dialled["target"].numpy(), plain["target"].numpy())  # the other draws unchanged
    half = inputs.add_training_fields(3, batch, "depth", 8, seed=1, with_action_units=True, au_dial_targets=0.5)
    own = (half["target_action_units"].numpy() != units).sum(axis=1) <= 1
    other = np.all(half["target_action_units"].numpy() == plain["target_action_units"].numpy(), axis=1)
    assert np.all(own | other) and 16 <= own.sum() <= 48


@pytest.mark.slow
def test_the_change_weight_weighs_each_au_by_how_far_the_target_moves_it():
    networks = _au_networks()
    gan = DepthGuidedStarGAN(**networks, depth_weight=0.0, n_critic=1, condition="action_units",
                             au_change_weight=4.0)
    gan.compile(optimizers={key: keras.optimizers.SGD(0.0, name=key) for key in networks})  # fixed networks
    batch = _au_batch()
    source, target = batch["action_units"].numpy(), batch["target_action_units"].numpy()
    known = (batch["action_units_mask"].numpy() > 0.5) & (batch["target_action_units_mask"].numpy() > 0.5)
    weights = 1.0 + 4.0 * np.abs(target - source) * known
    condition = action_unit_condition(batch["target_action_units"], batch["target_action_units_mask"])
    _, fake_logits = networks["d_rgb"](networks["g_rgb"]([batch["image"], condition], training=True), training=True)
    error = np.abs(tf.sigmoid(fake_logits).numpy() - target)
    expected = np.sum(weights * error * known) / np.sum(weights * known)
    logs = gan.generator_step(batch)
    np.testing.assert_allclose(float(logs["g_cls"]), expected, rtol=1e-5)
    plain = np.sum(error * known) / np.sum(known)
    assert abs(expected - plain) > 1e-4  # the weights changed the figure, so the check above can fail
    assert gan.get_config()["au_change_weight"] == 4.0
    with pytest.raises(ValueError, match="au_change_weight must be >= 0 and needs condition='action_units'"):
        DepthGuidedStarGAN(**_au_networks(), depth_weight=0.0, au_change_weight=1.0)


def test_an_edit_generator_s_reader_learns_the_real_faces_action_units_from_its_own_term_alone():
    """`--generator=action_unit_edit`: `g_reader` is the reader's squared AU error on the real faces (masked), in the
    generator's total; the warm-up and the full step both move the reader, and no mask terms are logged."""
    keras.utils.set_random_seed(0)
    networks = build_models(ModelConfig(**TINY_CONFIG, condition="action_units", generator="action_unit_edit",
                                        guide_width=4))
    gan = DepthGuidedStarGAN(**networks, depth_weight=0.0, n_critic=1, condition="action_units", lambda_pair=1.0)
    gan.compile(optimizers={key: keras.optimizers.SGD(0.5, name=key) for key in networks})
    gan.build_optimizers()
    batch = _au_batch()
    batch["target_image"] = tf.reverse(batch["image"], axis=[0])
    g = networks["g_rgb"]
    read = g.read_action_units(batch["image"], training=True)
    expected = losses.action_unit_regression_loss(read, batch["action_units"], batch["action_units_mask"],
                                                  squared=True)
    before = [v.numpy().copy() for v in g.reader_variables]
    logs = gan.generator_warmup_step(batch)
    np.testing.assert_allclose(float(logs["g_reader"]), float(expected), rtol=1e-5)
    assert "g_mask" not in logs and "g_reader" in gan.log_names
    assert any(np.abs(v.numpy() - b).max() > 0 for v, b in zip(g.reader_variables, before))
    logs = gan.generator_step(batch)
    assert all(np.isfinite(float(v)) for v in logs.values()) and "g_reader" in logs


def test_an_edit_generator_s_reader_starts_as_the_au_guide_frozen():
    from expr3d.metrics.expression_classifier import build_classifier

    keras.utils.set_random_seed(3)
    networks = build_models(ModelConfig(**TINY_CONFIG, condition="action_units", generator="action_unit_edit",
                                        guide_width=4))
    guide = build_classifier(32, num_classes=NUM_ACTION_UNITS, width=4)
    gan = DepthGuidedStarGAN(**networks, depth_weight=0.0, n_critic=1, condition="action_units",
                             expression_guide=guide, lambda_guide=1.0)
    gan.compile(optimizers={key: keras.optimizers.SGD(0.5, name=key) for key in networks})
    gan.build_optimizers()
    g, batch = networks["g_rgb"], _au_batch()
    np.testing.assert_allclose(g.read_action_units(batch["image"]).numpy(),
                               tf.sigmoid(guide(batch["image"], training=False)).numpy(), atol=1e-5)
    before = g.read_action_units(batch["image"]).numpy()
    logs = gan.generator_warmup_step(batch)
    assert "g_reader" not in logs and "g_reader" not in gan.log_names
    np.testing.assert_array_equal(g.read_action_units(batch["image"]).numpy(), before)


def test_the_edit_term_is_the_mean_size_of_each_au_s_edit_image():
    keras.utils.set_random_seed(1)
    networks = build_models(ModelConfig(**TINY_CONFIG, condition="action_units", generator="action_unit_edit",
                                        guide_width=4))
    g = networks["g_rgb"]
    edit = g.get_layer("edit_conv")
    edit.kernel.assign(np.random.default_rng(0).normal(0, 0.1, edit.kernel.shape).astype("float32"))
    gan = DepthGuidedStarGAN(**networks, depth_weight=0.0, n_critic=1, condition="action_units", lambda_edit=0.5,
                             generator_warmup_cycle=False)
    gan.compile(optimizers={key: keras.optimizers.SGD(0.0, name=key) for key in networks})  # fixed networks
    batch = _au_batch()
    target = action_unit_condition(batch["target_action_units"], batch["target_action_units_mask"])
    _, edits = g.with_edits([batch["image"], target], training=True)
    assert edits.shape == (4, 32, 32, 3 * NUM_ACTION_UNITS)
    logs = gan.generator_warmup_step(batch)
    np.testing.assert_allclose(float(logs["g_edit"]), float(np.mean(np.abs(edits.numpy()))), rtol=1e-5)
    np.testing.assert_allclose(float(logs["g_rgb_total"]), float(logs["g_reader"]) + 0.5 * float(logs["g_edit"]),
                               rtol=1e-5)
    assert "g_edit" in gan.log_names
    assert "g_edit" not in DepthGuidedStarGAN(**networks, depth_weight=0.0, condition="action_units").log_names


def test_the_edit_generator_needs_action_unit_targets():
    from expr3d.training.config import TrainConfig, UsageError

    base = dict(data_dir="data", model_dir="runs/a", generator="action_unit_edit", depth_weight=0.0)
    TrainConfig(**base, condition="action_units").validate()
    with pytest.raises(UsageError,
                       match=r"--generator=action_unit_edit needs --model=stargan --condition=action_units"):
        TrainConfig(**base).validate()
    with pytest.raises(UsageError, match=r"--lambda_edit=1.0 weighs the edit images of --generator=action_unit_edit"):
        TrainConfig(data_dir="data", model_dir="runs/a", lambda_edit=1.0).validate()


def test_the_change_weight_needs_action_unit_targets():
    from expr3d.training.config import TrainConfig, UsageError

    base = dict(data_dir="data", model_dir="runs/a", au_change_weight=10.0, depth_weight=0.0)
    TrainConfig(**base, condition="action_units").validate()
    with pytest.raises(UsageError, match=r"--au_change_weight=10.0 needs --condition=action_units"):
        TrainConfig(**base).validate()


def test_dial_targets_need_action_unit_targets():
    from expr3d.training.config import TrainConfig, UsageError

    base = dict(data_dir="data", model_dir="runs/a", au_dial_targets=0.5, depth_weight=0.0)
    TrainConfig(**base, condition="action_units").validate()
    TrainConfig(**base, condition="action_units", target_mode="paired").validate()
    with pytest.raises(UsageError, match=r"--au_dial_targets=0.5 needs --condition=action_units \(AU targets\)"):
        TrainConfig(**base).validate()


def test_paired_dial_targets_keep_the_true_render_s_aus_elsewhere_and_weigh_the_dialled_rows_out():
    rng = np.random.default_rng(2)
    size = 64
    units = rng.uniform(size=(size, NUM_ACTION_UNITS)).astype("float32")
    render_units = rng.uniform(size=(size, NUM_ACTION_UNITS)).astype("float32")
    ones = np.ones_like(units)
    batch = {"image": tf.zeros([size, 4, 4, 3]), "depth": tf.zeros([size, 4, 4, 1]),
             "normals": tf.zeros([size, 4, 4, 3]), "expression": tf.constant(np.arange(size) % 8),
             "target_expression": tf.constant((np.arange(size) + 1) % 8), "target_image": tf.ones([size, 4, 4, 3]),
             "action_units": tf.constant(units), "action_units_mask": tf.constant(ones),
             "target_action_units": tf.constant(render_units), "target_action_units_mask": tf.constant(ones)}
    plain = inputs.add_training_fields(3, batch, "depth", 8, seed=1, target_mode="paired", with_action_units=True)
    assert "pair_weight" not in plain
    np.testing.assert_array_equal(plain["target_action_units"].numpy(), render_units)
    half = inputs.add_training_fields(3, batch, "depth", 8, seed=1, target_mode="paired", with_action_units=True,
                                      au_dial_targets=0.5)
    weight, target = half["pair_weight"].numpy(), half["target_action_units"].numpy()
    dialled = weight == 0.0
    assert set(weight.tolist()) == {0.0, 1.0} and 16 <= dialled.sum() <= 48
    np.testing.assert_array_equal(target[~dialled], render_units[~dialled])  # the true render's AUs
    assert (target[dialled] != units[dialled]).sum(axis=1).max() == 1  # the face's own AUs, one dialled
    np.testing.assert_array_equal(half["target_image"].numpy(), plain["target_image"].numpy())


@pytest.mark.slow
def test_cli_refuses_action_units_on_data_without_them(tiny_dataset, tmp_path):
    from tests import forked_cli

    model_dir = str(tmp_path / "run")  # the tiny dataset: hemispheres with expression labels, no AUs
    done = forked_cli.run(["-m", "expr3d.train", f"--data_dir={tiny_dataset}", f"--model_dir={model_dir}",
                           "--condition=action_units", "--depth_weight=0", "--num_steps_gan=2", "--progress=false"],
                          capture_output=True, text=True, timeout=300)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, lines
    assert lines[0].startswith("expr3d.train: error: --condition=action_units needs action-unit intensities")
    assert not os.path.exists(model_dir)


@pytest.mark.slow  # ~4 s
def test_an_au_guide_reads_the_asked_action_units_in_each_translation_with_the_squared_error():
    from expr3d.metrics.expression_classifier import build_classifier
    from expr3d.training.guide import guide_kind
    from expr3d.training.config import TrainConfig

    assert guide_kind(TrainConfig(data_dir="d", model_dir="m", condition="action_units")) == "AU regressor"
    assert guide_kind(TrainConfig(data_dir="d", model_dir="m")) == "expression classifier"
    keras.utils.set_random_seed(3)
    guide = build_classifier(32, num_classes=NUM_ACTION_UNITS, width=4)
    networks = _au_networks()
    # --au_loss=l1 for the critic's head; the guide is read with the squared error all the same.
    gan = DepthGuidedStarGAN(**networks, depth_weight=0.0, n_critic=1, condition="action_units", au_loss="l1",
                             expression_guide=guide, lambda_guide=4.0)
    gan.compile(optimizers={key: keras.optimizers.SGD(0.0, name=key) for key in networks})  # no update: fixed G
    gan.build_optimizers()
    batch = _au_batch()
    fake = networks["g_rgb"]([batch["image"], action_unit_condition(batch["target_action_units"],
                                                                    batch["target_action_units_mask"])],
                             training=True)
    read = tf.sigmoid(guide(fake, training=False)).numpy()
    valid = batch["target_action_units_mask"].numpy() > 0.5
    expected = np.mean(np.square(read - batch["target_action_units"].numpy())[valid])
    logs = gan.generator_step(batch)
    np.testing.assert_allclose(float(logs["g_guide"]), expected, rtol=1e-4)

