"""Which side the confidence penalty is on (`confidence_penalty_on`), in both stages.

`critic` (the default): -beta * H(softmax(D_depth_cls(d))) on the REAL geometry d, in D_depth's loss only: its
gradient must reach D_depth and never G_rgb / G_depth. `generator` (the earlier behaviour): -beta * H of D_depth's
classification of G_depth's estimate, in the generators' loss only.

Each comparison runs one step from the same initial weights with beta = 0 and beta = 1 and plain SGD (an update
linear in the gradient): an extra gradient term shows as a different update, no extra term as an identical one.
"""
import keras
import numpy as np
import pytest
import tensorflow as tf

from expr3d import losses
from expr3d.training import common
from expr3d.training.depth_guided_stargan import DepthGuidedStarGAN
from expr3d.training.depth_pretrainer import DepthPretrainer
from tests.training.helpers import fixed_batch, tiny_networks

BETA = 1.0
# Updates that must be equal may differ only by float32 rounding of identical computations; the penalty's effect on
# an update is orders of magnitude larger (checked below in every test that expects a difference).
SAME_ATOL = 1e-7


def _weights(model):
    return [w.copy() for w in model.get_weights()]


def _max_difference(a, b):
    return max(float(np.max(np.abs(x - y))) for x, y in zip(a, b))


@pytest.fixture(scope="module")
def initial_weights():
    return {key: _weights(net) for key, net in tiny_networks().items()}


@pytest.fixture(scope="module")
def batch(tiny_dataset):
    return fixed_batch(tiny_dataset, batch_size=2)


def _trainer(stage, side, beta, initial):
    networks = tiny_networks()
    for key, net in networks.items():
        net.set_weights(initial[key])
    sgd = lambda name: keras.optimizers.SGD(learning_rate=0.5, name=name)  # noqa: E731
    if stage == "depth":
        trainer = DepthPretrainer(networks["g_depth"], networks["d_depth"], perceptual_weight=0.0, n_critic=1,
                                  confidence_penalty=beta, confidence_penalty_on=side)
        trainer.compile(g_optimizer=sgd("g"), d_optimizer=sgd("d"))
    else:
        trainer = DepthGuidedStarGAN(**networks, depth_weight=0.5, n_critic=1, confidence_penalty=beta,
                                     confidence_penalty_on=side)
        trainer.compile(optimizers={key: sgd(key) for key in networks})
    trainer.build_optimizers()
    return trainer, networks


def _step(stage, side, beta, initial, batch, which):
    """Logs and the four networks' weights after one eager critic or generator step from `initial`."""
    trainer, networks = _trainer(stage, side, beta, initial)
    logs = trainer.critic_step(batch) if which == "critic" else trainer.generator_step(batch)
    return {k: float(v) for k, v in logs.items()}, {key: _weights(net) for key, net in networks.items()}


GENERATORS = {"depth": ("g_depth",), "gan": ("g_rgb", "g_depth")}
PENALTY_LOG = {("depth", "critic"): "d_conf", ("depth", "generator"): "g_conf",
               ("gan", "critic"): "dd_conf", ("gan", "generator"): "gd_conf"}


@pytest.mark.slow  # in-process; 22-29 s per case here under load
@pytest.mark.parametrize("stage", ["depth", "gan"])
def test_on_the_critic_the_penalty_reaches_d_depth_and_never_the_generators(stage, initial_weights, batch):
    # Critic step: beta changes D_depth's update.
    logs0, critic0 = _step(stage, "critic", 0.0, initial_weights, batch, "critic")
    logs1, critic1 = _step(stage, "critic", BETA, initial_weights, batch, "critic")
    assert _max_difference(critic0["d_depth"], critic1["d_depth"]) > 1e-4
    entropy_name = "d_entropy" if stage == "depth" else "dd_entropy"
    assert logs1[PENALTY_LOG[stage, "critic"]] == pytest.approx(-BETA * logs1[entropy_name], rel=1e-5)
    assert logs0[PENALTY_LOG[stage, "critic"]] == 0.0
    # Generator step: no trace of beta in the generators' loss or update.
    glogs0, gen0 = _step(stage, "critic", 0.0, initial_weights, batch, "generator")
    glogs1, gen1 = _step(stage, "critic", BETA, initial_weights, batch, "generator")
    assert PENALTY_LOG[stage, "generator"] not in glogs1
    assert glogs1["g_total"] == pytest.approx(glogs0["g_total"], rel=1e-6)
    for key in GENERATORS[stage]:
        assert _max_difference(gen0[key], gen1[key]) <= SAME_ATOL, key
    # ...and the same beta on the generator side does change them (so the comparison above can see a difference).
    _, gen_side = _step(stage, "generator", BETA, initial_weights, batch, "generator")
    assert _max_difference(gen0["g_depth"], gen_side["g_depth"]) > 1e-4


@pytest.mark.slow  # 4 s in the full suite
@pytest.mark.parametrize("stage", ["depth", "gan"])
def test_on_the_generator_the_penalty_is_the_old_generator_term_and_leaves_d_depth_alone(stage, initial_weights, batch):
    _, critic0 = _step(stage, "generator", 0.0, initial_weights, batch, "critic")
    logs1, critic1 = _step(stage, "generator", BETA, initial_weights, batch, "critic")
    assert PENALTY_LOG[stage, "critic"] not in logs1
    assert _max_difference(critic0["d_depth"], critic1["d_depth"]) <= SAME_ATOL
    _, gen0 = _step(stage, "generator", 0.0, initial_weights, batch, "generator")
    glogs1, gen1 = _step(stage, "generator", BETA, initial_weights, batch, "generator")
    for key in GENERATORS[stage]:  # through x_t = G_rgb(x, c_trg) it reaches G_rgb too in stage 2
        assert _max_difference(gen0[key], gen1[key]) > 1e-5, key
    entropy_name = "g_entropy" if stage == "depth" else "gd_entropy"
    assert glogs1[PENALTY_LOG[stage, "generator"]] == pytest.approx(-BETA * glogs1[entropy_name], rel=1e-5)


@pytest.mark.slow  # 3 s in the full suite
def test_which_tensor_each_side_penalises(initial_weights, batch):
    """critic: D_depth's classification of the real geometry d; generator (stage 2): of G_depth(G_rgb(x, c_trg))."""
    networks = tiny_networks()
    for key, net in networks.items():
        net.set_weights(initial_weights[key])
    _, real_cls = networks["d_depth"](batch["geometry"], training=True)
    target = common.class_one_hot(batch["target"], 8)
    estimate = networks["g_depth"].to_geometry(networks["g_rgb"]([batch["image"], target], training=True),
                                               training=True)
    _, estimate_cls = networks["d_depth"](estimate, training=True)
    expected = {"critic": float(losses.confidence_penalty(real_cls, BETA)),
                "generator": float(losses.confidence_penalty(estimate_cls, BETA))}
    assert expected["critic"] != pytest.approx(expected["generator"], rel=1e-3)
    critic_logs, _ = _step("gan", "critic", BETA, initial_weights, batch, "critic")
    generator_logs, _ = _step("gan", "generator", BETA, initial_weights, batch, "generator")
    assert critic_logs["dd_conf"] == pytest.approx(expected["critic"], rel=1e-5)
    assert generator_logs["gd_conf"] == pytest.approx(expected["generator"], rel=1e-5)


def test_side_is_validated_logged_and_in_the_config(initial_weights):
    networks = tiny_networks()
    with pytest.raises(ValueError, match="confidence_penalty_on"):
        DepthPretrainer(networks["g_depth"], networks["d_depth"], perceptual_weight=0.0, confidence_penalty_on="both")
    with pytest.raises(ValueError, match="confidence_penalty_on"):
        DepthGuidedStarGAN(**networks, confidence_penalty_on="discriminator")
    for side, present, absent in (("critic", {"dd_conf"}, {"gd_conf"}), ("generator", {"gd_conf"}, {"dd_conf"})):
        gan = DepthGuidedStarGAN(**networks, confidence_penalty_on=side)
        assert gan.get_config()["confidence_penalty_on"] == side
        names = set(gan.log_names)
        assert present <= names and not absent & names and {"dd_entropy", "gd_entropy"} <= names
        # The generator-update terms (logged on the iterations that update the generators) carry gd_conf only there.
        assert ("gd_conf" in gan._generator_terms()) == (side == "generator")
        assert "dd_conf" not in gan._generator_terms()
    assert DepthGuidedStarGAN(**networks).confidence_penalty_on == "critic"
    assert DepthPretrainer(networks["g_depth"], networks["d_depth"], perceptual_weight=0.0).get_config()[
        "confidence_penalty_on"] == "critic"


@pytest.mark.slow  # 4 s in the full suite
def test_graph_step_matches_eager_on_the_critic_side(initial_weights, batch):
    """The traced iteration (what the CLI runs) applies the same penalty as the eager one."""
    eager_logs, eager = _step("gan", "critic", BETA, initial_weights, batch, "critic")
    trainer, networks = _trainer("gan", "critic", BETA, initial_weights)
    logs = tf.function(trainer.critic_step)(batch)
    assert float(logs["dd_conf"]) == pytest.approx(eager_logs["dd_conf"], rel=1e-5)
    np.testing.assert_allclose(networks["d_depth"].get_weights()[0], eager["d_depth"][0], rtol=1e-4, atol=1e-6)
