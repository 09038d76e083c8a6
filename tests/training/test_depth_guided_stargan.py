import keras
import numpy as np
import pytest
import tensorflow as tf

from expr3d import losses
from expr3d.training.depth_guided_stargan import DepthGuidedStarGAN
from expr3d.training.loop import make_distributed_step
from tests.training.helpers import adam, fixed_batch, tiny_networks


def _weights(model):
    return [w.copy() for w in model.get_weights()]


def _same(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a, b))


@pytest.mark.slow  # in-process; traces and runs the stage-2 step many times: ~65 s here under load
def test_iterations_on_a_fixed_batch_decrease_both_losses(tiny_dataset):
    batch = fixed_batch(tiny_dataset)
    networks = tiny_networks()
    gan = DepthGuidedStarGAN(**networks, depth_weight=0.5, n_critic=1)
    gan.compile(optimizers={key: adam(key) for key in networks})
    gan.build_optimizers()
    step = make_distributed_step(tf.distribute.get_strategy(), gan, update_generator=True)
    history = [{k: float(v) for k, v in step(batch).items()} for _ in range(8)]
    assert {"d_gp", "dd_gp", "dd_conf", "dd_entropy", "g_rec", "gd_cls", "gd_entropy", "gd_rec", "g_total"} <= set(
        history[0])
    assert "gd_conf" not in history[0]  # the penalty is on the critic by default
    assert history[-1]["g_total"] < history[0]["g_total"] - 1.0
    assert history[-1]["g_rec"] < history[0]["g_rec"]
    assert history[-1]["d_total"] < history[0]["d_total"] - 0.3
    assert history[-1]["dd_total"] < history[0]["dd_total"]
    first = history[0]
    np.testing.assert_allclose(first["g_total"], first["g_rgb_total"] + 0.5 * first["gd_total"], rtol=1e-5)


@pytest.mark.slow  # in-process; 19-34 s here under load
def test_depth_weight_zero_is_plain_stargan_and_the_depth_gradient_reaches_g_rgb(tiny_dataset):
    batch = fixed_batch(tiny_dataset, batch_size=2)
    initial = {key: _weights(net) for key, net in tiny_networks().items()}
    results = {}
    for depth_weight in (0.0, 1.0):
        networks = tiny_networks()
        for key, net in networks.items():
            net.set_weights(initial[key])
        gan = DepthGuidedStarGAN(**networks, depth_weight=depth_weight)
        # SGD: the update of G_rgb is linear in its gradient, so an extra loss term shows.
        gan.compile(optimizers={key: keras.optimizers.SGD(0.1, name=key) for key in networks})
        logs = gan.generator_step(batch)  # eager
        results[depth_weight] = (logs, {key: _weights(net) for key, net in networks.items()}, gan)
    plain_logs, plain_weights, plain = results[0.0]
    assert not any(name.startswith("gd_") for name in plain_logs)
    assert set(plain.optimizers) == {"g_rgb", "d_rgb"}
    # The depth networks are never touched in plain StarGAN mode...
    assert _same(plain_weights["g_depth"], initial["g_depth"]) and _same(plain_weights["d_depth"], initial["d_depth"])
    guided_logs, guided_weights, _ = results[1.0]
    # ...while with depth_weight > 0 G_depth trains and the depth terms change G_rgb's update through x_t.
    assert not _same(guided_weights["g_depth"], initial["g_depth"])
    assert _same(guided_weights["d_depth"], initial["d_depth"])  # critics move only in the critic step
    assert not _same(guided_weights["g_rgb"], plain_weights["g_rgb"])
    np.testing.assert_allclose(float(guided_logs["g_rgb_total"]), float(plain_logs["g_rgb_total"]), rtol=1e-5)


def test_critic_warmup_iterations_then_the_n_critic_schedule():
    networks = tiny_networks()
    gan = DepthGuidedStarGAN(**networks, n_critic=3, critic_warmup_steps=4)
    assert [gan.step_kind(step) for step in range(10)] == ["warmup"] * 4 + ["critic", "critic", "both"] * 2
    assert [DepthGuidedStarGAN(**networks, n_critic=2).step_kind(step) for step in range(4)] == [
        "critic", "both", "critic", "both"]
    assert gan.get_config()["critic_warmup_steps"] == 4


@pytest.mark.slow  # 3 s in the full suite
def test_critic_warmup_step_trains_only_d_rgb_classification_and_learns_it(tiny_dataset):
    batch = fixed_batch(tiny_dataset)
    networks = tiny_networks()
    gan = DepthGuidedStarGAN(**networks, critic_warmup_steps=10)
    gan.compile(optimizers={key: adam(key) for key in networks})
    gan.build_optimizers()
    before = {key: _weights(net) for key, net in networks.items()}
    step = make_distributed_step(tf.distribute.get_strategy(), gan, update_generator="warmup")
    history = [{k: float(v) for k, v in step(batch).items()} for _ in range(10)]
    assert set(history[0]) == {"d_cls"}
    assert history[-1]["d_cls"] < 0.5 * history[0]["d_cls"]
    for key in ("g_rgb", "g_depth", "d_depth"):
        assert _same(_weights(networks[key]), before[key]), key
    # D_rgb's classification trunk and head moved; its adversarial head (which the loss does not reach) did not.
    moved = {v.path: not np.array_equal(v.numpy(), w) for v, w in zip(networks["d_rgb"].weights, before["d_rgb"])}
    assert any(moved.values()) and not all(moved.values()), moved


def test_generator_warmup_then_critic_warmup_then_the_n_critic_schedule():
    gan = DepthGuidedStarGAN(**tiny_networks(), n_critic=2, generator_warmup_steps=3, critic_warmup_steps=2)
    assert [gan.step_kind(step) for step in range(9)] == (["generator_warmup"] * 3 + ["warmup"] * 2
                                                          + ["critic", "both"] * 2)
    assert gan.get_config()["generator_warmup_steps"] == 3
    with pytest.raises(ValueError, match="generator_warmup_steps must be >= 0"):
        DepthGuidedStarGAN(**tiny_networks(), generator_warmup_steps=-1)


@pytest.mark.slow  # 4 s in the full suite
def test_generator_warmup_step_trains_only_g_rgb_on_the_paired_terms(tiny_dataset):
    batch = fixed_batch(tiny_dataset)
    batch["target_image"] = tf.reverse(batch["image"], axis=[0])  # any image of the right shape
    networks = tiny_networks()
    gan = DepthGuidedStarGAN(**networks, lambda_pair=10.0, generator_warmup_steps=10)
    gan.compile(optimizers={key: adam(key, 3e-3) for key in networks})
    gan.build_optimizers()
    before = {key: _weights(net) for key, net in networks.items()}
    step = make_distributed_step(tf.distribute.get_strategy(), gan, update_generator="generator_warmup")
    history = [{k: float(v) for k, v in step(batch).items()} for _ in range(10)]
    # No critic term (neither D_rgb's nor the depth network's): the pair, the cycle and their total.
    assert set(history[0]) == {"g_rec", "g_pair", "g_rgb_total"}
    np.testing.assert_allclose(history[0]["g_rgb_total"], 10.0 * history[0]["g_rec"] + 10.0 * history[0]["g_pair"],
                               rtol=1e-5)
    assert history[-1]["g_pair"] < history[0]["g_pair"]
    for key in ("d_rgb", "g_depth", "d_depth"):
        assert _same(_weights(networks[key]), before[key]), key
    assert not _same(_weights(networks["g_rgb"]), before["g_rgb"])


@pytest.mark.slow  # 4 s in the full suite
def test_a_generator_warmup_without_the_cycle_is_the_paired_term_alone_and_the_gan_keeps_it(tiny_dataset):
    batch = fixed_batch(tiny_dataset)
    batch["target_image"] = tf.reverse(batch["image"], axis=[0])
    networks = tiny_networks()
    gan = DepthGuidedStarGAN(**networks, lambda_pair=10.0, generator_warmup_steps=10, generator_warmup_cycle=False)
    gan.compile(optimizers={key: keras.optimizers.SGD(0.0, name=key) for key in networks})
    gan.build_optimizers()
    assert gan.get_config()["generator_warmup_cycle"] is False
    logs = {k: float(v) for k, v in gan.generator_warmup_step(batch).items()}
    assert set(logs) == {"g_pair", "g_rgb_total"}  # no cycle: no g_rec
    expected = float(tf.reduce_mean(tf.abs(batch["target_image"] - networks["g_rgb"](
        [batch["image"], tf.one_hot(batch["target"], 8)], training=True))))
    np.testing.assert_allclose(logs["g_pair"], expected, rtol=1e-5)
    np.testing.assert_allclose(logs["g_rgb_total"], 10.0 * expected, rtol=1e-5)
    assert "g_rec" in gan.generator_step(batch)  # the GAN iterations keep the cycle


@pytest.mark.slow  # 4 s in the full suite
def test_the_paired_target_term_is_the_l1_to_the_true_render_and_needs_it(tiny_dataset):
    batch = fixed_batch(tiny_dataset, batch_size=2)
    batch["target_image"] = tf.reverse(batch["image"], axis=[0])  # any image of the right shape
    initial = {key: _weights(net) for key, net in tiny_networks().items()}
    results = {}
    for lambda_pair in (0.0, 3.0):
        networks = tiny_networks()
        for key, net in networks.items():
            net.set_weights(initial[key])
        gan = DepthGuidedStarGAN(**networks, depth_weight=0.0, lambda_pair=lambda_pair)
        gan.compile(optimizers={key: keras.optimizers.SGD(0.1, name=key) for key in networks})
        expected = float(tf.reduce_mean(tf.abs(batch["target_image"] - networks["g_rgb"](
            [batch["image"], tf.one_hot(batch["target"], 8)], training=True))))
        results[lambda_pair] = (gan.generator_step(batch), _weights(networks["g_rgb"]), expected, gan)
    off, on = results[0.0], results[3.0]
    assert "g_pair" not in off[0] and "g_pair" not in off[3].log_names
    assert "g_pair" in on[3].log_names
    np.testing.assert_allclose(float(on[0]["g_pair"]), on[2], rtol=1e-5)
    np.testing.assert_allclose(float(on[0]["g_rgb_total"]), float(off[0]["g_rgb_total"]) + 3.0 * on[2], rtol=1e-5)
    assert not _same(on[1], off[1])  # the term reaches G_rgb
    del batch["target_image"]
    with pytest.raises(ValueError, match="lambda_pair > 0 needs paired batches"):
        on[3].generator_step(batch)


@pytest.mark.slow  # 3 s in the full suite
def test_the_paired_edge_term_is_the_gradient_l1_to_the_true_render_and_needs_it(tiny_dataset):
    batch = fixed_batch(tiny_dataset, batch_size=2)
    batch["target_image"] = tf.reverse(batch["image"], axis=[0])
    networks = tiny_networks()
    before = _weights(networks["g_rgb"])
    gan = DepthGuidedStarGAN(**networks, depth_weight=0.0, lambda_pair=1.0, lambda_pair_gradient=4.0,
                             generator_warmup_steps=10, generator_warmup_cycle=False)
    gan.compile(optimizers={key: keras.optimizers.SGD(0.1, name=key) for key in networks})
    gan.build_optimizers()
    assert "g_pair_gradient" in gan.log_names and gan.get_config()["lambda_pair_gradient"] == 4.0
    fake = networks["g_rgb"]([batch["image"], tf.one_hot(batch["target"], 8)], training=True)
    expected = float(losses.gradient_l1_loss(batch["target_image"], fake))
    logs = {k: float(v) for k, v in gan.generator_warmup_step(batch).items()}
    np.testing.assert_allclose(logs["g_pair_gradient"], expected, rtol=1e-5)
    np.testing.assert_allclose(logs["g_rgb_total"], logs["g_pair"] + 4.0 * expected, rtol=1e-5)
    assert not _same(_weights(networks["g_rgb"]), before)
    # Off by default: not logged.
    assert "g_pair_gradient" not in DepthGuidedStarGAN(**tiny_networks(), lambda_pair=1.0).log_names
    del batch["target_image"]
    with pytest.raises(ValueError, match="lambda_pair > 0 needs paired batches"):
        gan.generator_warmup_step(batch)
    with pytest.raises(ValueError, match="lambda_pair_gradient must be >= 0"):
        DepthGuidedStarGAN(**tiny_networks(), lambda_pair_gradient=-1.0)
