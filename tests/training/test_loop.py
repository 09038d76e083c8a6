"""StageLoop in-process: n_critic schedule, learning-rate schedule, checkpoint cadence and resume from the loop."""
import os

import pytest
import tensorflow as tf

from expr3d.training import inputs, runtime
from expr3d.training.depth_pretrainer import DepthPretrainer
from expr3d.training.loop import StageLoop, StopRequest
from expr3d.training.schedules import LinearDecaySchedule
from tests.training.helpers import tiny_networks


def _loop(data_dir, stage_dir, num_steps, stop=None, skip_corrupt=False):
    networks = tiny_networks()
    trainer = DepthPretrainer(networks["g_depth"], networks["d_depth"], perceptual_weight=0.0, n_critic=3)
    trainer.compile(g_optimizer=runtime.make_optimizer(1e-3, 0.5, 0.999, False, "g"),
                    d_optimizer=runtime.make_optimizer(1e-3, 0.5, 0.999, False, "d"))
    trainer.build_optimizers()
    dataset = inputs.training_dataset(data_dir, 4, 32, "depth", 8, seed=1, skip_corrupt=skip_corrupt)
    schedules = {key: LinearDecaySchedule(1e-3, num_steps, decay_every=2) for key in ("g_depth", "d_depth")}
    seen = []
    loop = StageLoop(trainer, tf.distribute.get_strategy(), dataset, stage_dir, num_steps, schedules,
                     {"g_depth": networks["g_depth"], "d_depth": networks["d_depth"]}, keep_checkpoints=2,
                     checkpoint_every=3, summary_every=1, sample_every=0, on_checkpoint=seen.append,
                     show_progress=False, stop=stop)
    return loop, trainer, seen


@pytest.mark.slow
def test_n_critic_schedule_learning_rates_and_checkpoints(tiny_dataset, tmp_path):
    loop, trainer, seen = _loop(tiny_dataset, str(tmp_path), num_steps=7)
    assert loop.restore() is None
    assert loop.run() == "complete"
    # 7 iterations: 7 critic updates, a translator update at iterations 3 and 6 (every n_critic-th).
    assert int(trainer.d_optimizer.iterations.numpy()) == 7
    assert int(trainer.g_optimizer.iterations.numpy()) == 2
    assert int(trainer.iteration.numpy()) == 7
    assert seen == [3, 6, 7]  # every 3 iterations, and at the end
    assert sorted(os.listdir(os.path.join(str(tmp_path), "checkpoints"))) == ["ckpt-000000006", "ckpt-000000007"]
    # The decay started at iteration 3 (half of 7) in blocks of 2: at iteration 6 the rate is 1 - 2/4 of the base.
    assert runtime.get_learning_rate(trainer.g_optimizer) == pytest.approx(LinearDecaySchedule(1e-3, 7, decay_every=2)(6))
    assert LinearDecaySchedule(1e-3, 7, decay_every=2)(6) == pytest.approx(0.5e-3)


@pytest.mark.slow
def test_stop_request_checkpoints_and_returns_the_signal(tiny_dataset, tmp_path):
    stop = StopRequest(signals=())
    stop.requested = "SIGTERM"  # as the handler would set it
    loop, trainer, seen = _loop(tiny_dataset, str(tmp_path), num_steps=5, stop=stop)
    assert loop.run() == "SIGTERM"
    assert int(trainer.iteration.numpy()) == 0 and seen == []  # stopped before the first iteration: nothing new


@pytest.mark.slow  # in-process; a traced and an eager iteration per stage: 36-60 s here under load
@pytest.mark.parametrize("stage", ["depth", "gan"])
def test_graph_iteration_equals_the_eager_one(tiny_dataset, stage):
    """One critic + generator iteration through make_distributed_step equals the same iteration run eagerly (op by
    op, in program order): the generator's terms see the critic after its update, and the critic's gradient penalty
    sees the critic before it (the read/write order test_common checks in the optimized graph)."""
    import numpy as np

    from expr3d.training.loop import make_distributed_step
    from tests.training.helpers import fixed_batch, sgd_one_step_trainer

    batch = fixed_batch(tiny_dataset, seed=3)
    initial = {name: net.get_weights() for name, net in tiny_networks(seed=5).items()}

    def one_iteration(graph):
        networks = tiny_networks()
        for name, weights in initial.items():
            networks[name].set_weights(weights)
        trainer = sgd_one_step_trainer(stage, networks)
        if graph:
            logs = make_distributed_step(tf.distribute.get_strategy(), trainer, update_generator=True)(batch)
        else:
            logs = trainer.run_iteration(batch, update_generator=True)
        return {k: float(v) for k, v in logs.items()}, {k: net.get_weights() for k, net in networks.items()}

    logs_graph, weights_graph = one_iteration(graph=True)
    logs_eager, weights_eager = one_iteration(graph=False)
    assert logs_graph.keys() == logs_eager.keys()
    bad = {k: (logs_graph[k], v) for k, v in logs_eager.items() if logs_graph[k] != pytest.approx(v, rel=1e-4, abs=1e-5)}
    assert not bad
    moved = max(float(np.max(np.abs(a - b))) for k in initial for a, b in zip(weights_eager[k], initial[k]))
    diff = max(float(np.max(np.abs(a - b))) for k in initial for a, b in zip(weights_eager[k], weights_graph[k]))
    assert moved > 1e-3
    assert diff <= 1e-4 * moved + 1e-6, (diff, moved)
