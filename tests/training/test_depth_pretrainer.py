import numpy as np
import pytest
import tensorflow as tf

from expr3d.models import VGG19Features
from expr3d.training.depth_pretrainer import CRITIC_PENALTY_TERMS, CRITIC_TERMS, GENERATOR_TERMS, DepthPretrainer
from expr3d.training.loop import make_distributed_step
from tests.training.helpers import adam, fixed_batch, tiny_networks


@pytest.mark.slow  # 5 s in the full suite
def test_iterations_on_a_fixed_batch_decrease_both_losses(tiny_dataset):
    batch = fixed_batch(tiny_dataset)
    networks = tiny_networks()
    trainer = DepthPretrainer(networks["g_depth"], networks["d_depth"], perceptual_weight=0.0, n_critic=1)
    trainer.compile(g_optimizer=adam("g"), d_optimizer=adam("d"))
    trainer.build_optimizers()
    assert trainer.vgg is None  # perceptual_weight=0: VGG19 is never built
    step = make_distributed_step(tf.distribute.get_strategy(), trainer, update_generator=True)
    history = [{k: float(v) for k, v in step(batch).items()} for _ in range(8)]
    assert set(history[0]) == set(CRITIC_TERMS + CRITIC_PENALTY_TERMS + GENERATOR_TERMS) == set(trainer.log_names)
    assert history[0]["g_per"] == 0.0
    assert history[-1]["g_total"] < history[0]["g_total"] - 1.0
    assert history[-1]["g_pix"] < 0.8 * history[0]["g_pix"]
    assert history[-1]["d_total"] < history[0]["d_total"] - 0.3
    # The confidence penalty (on the critic by default) is -beta * entropy: at most beta * log(8) in magnitude.
    assert all(-0.1 * np.log(8) - 1e-5 <= h["d_conf"] <= 0 for h in history)
    assert all(h["d_conf"] == pytest.approx(-0.1 * h["d_entropy"], rel=1e-5, abs=1e-7) for h in history)
    assert all(0 <= h["g_entropy"] <= np.log(8) + 1e-5 for h in history)
    assert all(np.isfinite(list(h.values())).all() for h in history)


@pytest.mark.slow  # 3 s in the full suite
def test_perceptual_term_and_critic_only_iterations(tiny_dataset):
    batch = fixed_batch(tiny_dataset, batch_size=2)
    networks = tiny_networks()
    with pytest.raises(ValueError, match="perceptual_weight > 0 needs a VGG19Features"):
        DepthPretrainer(networks["g_depth"], networks["d_depth"], perceptual_weight=1.0)
    # Random VGG weights: the term is computed and trained through, the value is not a perceptual distance.
    trainer = DepthPretrainer(networks["g_depth"], networks["d_depth"], vgg=VGG19Features(weights=None),
                              perceptual_weight=1.0)
    trainer.compile(g_optimizer=adam("g"), d_optimizer=adam("d"))
    g_before = [w.copy() for w in networks["g_depth"].get_weights()]
    logs = trainer.run_iteration(batch, update_generator=False)  # eager: a critic-only iteration
    assert set(logs) == set(CRITIC_TERMS + CRITIC_PENALTY_TERMS)
    assert all(np.array_equal(a, b) for a, b in zip(g_before, networks["g_depth"].get_weights()))
    logs = trainer.run_iteration(batch, update_generator=True)
    assert float(logs["g_per"]) > 0
    assert not all(np.array_equal(a, b) for a, b in zip(g_before, networks["g_depth"].get_weights()))
    assert int(trainer.g_optimizer.iterations.numpy()) == 1 and int(trainer.d_optimizer.iterations.numpy()) == 2
