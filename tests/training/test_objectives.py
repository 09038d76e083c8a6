"""The shared objective terms: the names each side logs, the penalty on one side only, the totals' formula."""
import numpy as np
import pytest
import tensorflow as tf

from expr3d import losses
from expr3d.training import objectives
from tests.training.helpers import fixed_batch, tiny_networks


@pytest.fixture(scope="module")
def setup(tiny_dataset):
    networks = tiny_networks()
    batch = fixed_batch(tiny_dataset)
    fake = tf.stop_gradient(networks["g_depth"].to_geometry(batch["image"]))
    return networks["d_depth"], batch, fake


@pytest.mark.slow  # 2 s in the full suite
def test_critic_loss_terms_and_total(setup):
    critic, batch, fake = setup
    args = (critic, batch["geometry"], fake, batch["expression"], batch["alpha_depth"], 2.0, 10.0)
    plain = objectives.critic_loss(*args, prefix="dd")
    assert list(plain) == ["dd_adv", "dd_cls", "dd_gp", "dd_total"]
    penalised = objectives.critic_loss(*args, prefix="dd", confidence_penalty=0.5, log_entropy=True)
    assert list(penalised) == ["dd_adv", "dd_cls", "dd_entropy", "dd_gp", "dd_conf", "dd_total"]
    _, real_cls = critic(batch["geometry"], training=True)
    assert float(penalised["dd_conf"]) == pytest.approx(float(losses.confidence_penalty(real_cls, 0.5)), rel=1e-5)
    expected = penalised["dd_adv"] + 2.0 * (penalised["dd_cls"] + penalised["dd_conf"]) + 10.0 * penalised["dd_gp"]
    np.testing.assert_allclose(float(penalised["dd_total"]), float(expected), rtol=1e-6)


@pytest.mark.slow
def test_generator_terms_and_classification(setup):
    critic, batch, fake = setup
    terms, classification = objectives.generator_terms(critic, fake, batch["target"], prefix="gd")
    assert list(terms) == ["gd_adv", "gd_cls"] and classification is terms["gd_cls"]
    terms, classification = objectives.generator_terms(critic, fake, batch["target"], prefix="gd",
                                                       confidence_penalty=0.5, log_entropy=True)
    assert list(terms) == ["gd_adv", "gd_cls", "gd_entropy", "gd_conf"]
    assert float(terms["gd_conf"]) <= 0.0
    np.testing.assert_allclose(float(classification), float(terms["gd_cls"] + terms["gd_conf"]), rtol=1e-6)


def test_an_action_unit_head_reads_with_the_error_asked_for():
    logits = tf.constant([[0.0, 2.0], [-1.0, 0.5]])
    truth = tf.constant([[0.25, 1.0], [0.0, 0.8]])
    mask = tf.constant([[1.0, 1.0], [1.0, 0.0]])
    error = (tf.sigmoid(logits) - truth).numpy()[mask.numpy() > 0]
    l1 = float(objectives.head_loss(logits, objectives.ActionUnitTarget(truth, mask)))
    squared = float(objectives.head_loss(logits, objectives.ActionUnitTarget(truth, mask, True)))
    assert l1 == pytest.approx(np.abs(error).mean(), rel=1e-5)
    assert squared == pytest.approx((error ** 2).mean(), rel=1e-5)


def test_the_guide_feature_term_is_the_mean_stage_distance_and_weighs_faces():
    rng = np.random.default_rng(0)
    ours = [tf.constant(rng.normal(size=(2, s, s, 3)).astype("float32")) for s in (8, 4)]
    theirs = [tf.constant(rng.normal(size=(2, s, s, 3)).astype("float32")) for s in (8, 4)]
    distances = np.array([[np.mean(np.abs(a.numpy()[i] - b.numpy()[i])) for i in range(2)]
                          for a, b in zip(ours, theirs)])  # [stage, face]
    np.testing.assert_allclose(float(objectives.guide_feature_loss(ours, theirs)), distances.mean(), rtol=1e-5)
    np.testing.assert_allclose(float(objectives.guide_feature_loss(ours, theirs, weights=tf.constant([0.0, 1.0]))),
                               distances[:, 1].mean() / 2, rtol=1e-5)
    assert float(objectives.guide_feature_loss(theirs, theirs)) == 0.0
    with tf.GradientTape() as tape:  # the target's maps are held fixed
        tape.watch(theirs[0])
        loss = objectives.guide_feature_loss(ours, theirs)
    assert tape.gradient(loss, theirs[0]) is None

