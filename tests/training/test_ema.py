"""WeightAverage: the moving average's formula, its warm-up, inside a tf.function, and the weights it copies."""
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from expr3d.training.ema import WeightAverage


def _pair():
    def build(name):
        model = keras.Sequential([keras.layers.Dense(3, name="dense"), keras.layers.BatchNormalization()], name=name)
        model.build((None, 2))
        return model

    return build("model"), build("average")


def test_average_starts_as_the_model_then_follows_with_the_warm_up_decay():
    model, average = _pair()
    ema = WeightAverage(model, average, decay=0.9)
    for source, target in zip(model.weights, average.weights):
        np.testing.assert_array_equal(source.numpy(), target.numpy())
    before = [w.numpy().copy() for w in average.weights]
    kernel = model.layers[0].kernel
    kernel.assign(kernel + 1.0)
    step = tf.function(ema.update)
    step()
    # t = 0: decay_0 = min(0.9, 1/10) = 0.1, so the average moves 90 % of the way to the new kernel.
    np.testing.assert_allclose(average.layers[0].kernel.numpy(), before[0] + 0.9, rtol=1e-6, atol=1e-6)
    for _ in range(200):
        step()
    assert int(ema.updates.numpy()) == 201
    assert float(ema.current_decay()) == pytest.approx(0.9)


def test_long_run_decay_is_the_exponential_average():
    model, average = _pair()
    ema = WeightAverage(model, average, decay=0.5)
    ema.updates.assign(1000)  # past the warm-up
    kernel = model.layers[0].kernel
    old = kernel.numpy().copy()
    kernel.assign(old + 2.0)
    ema.update()
    np.testing.assert_allclose(average.layers[0].kernel.numpy(), old + 1.0, rtol=1e-6, atol=1e-6)
    # Non-trainable weights (BatchNormalization's moving statistics) are copied, not averaged.
    model.layers[1].moving_mean.assign(np.full(3, 5.0, np.float32))
    ema.update()
    np.testing.assert_array_equal(average.layers[1].moving_mean.numpy(), np.full(3, 5.0, np.float32))


def test_bad_decay_and_mismatched_networks_are_refused():
    model, average = _pair()
    with pytest.raises(ValueError, match="decay must be in"):
        WeightAverage(model, average, decay=1.0)
    other = keras.Sequential([keras.layers.Dense(3)])
    other.build((None, 2))
    with pytest.raises(ValueError, match="same architecture"):
        WeightAverage(model, other, decay=0.9)


UPDATES_KEY = "g_rgb_average_updates/.ATTRIBUTES/VARIABLE_VALUE"


def _tiny_gan(tiny_dataset, model_dir, steps, **changes):
    from expr3d import train
    from tests.training.test_train_errors import TINY

    args = [f"--data_dir={tiny_dataset}", f"--model_dir={model_dir}", "--depth_weight=0", "--n_critic=1",
            f"--num_steps_gan={steps}", "--checkpoint_every=2", "--sample_every=0", "--num_samples=2",
            "--progress=false", "--seed=3"] + TINY + [f"--{k}={v}" for k, v in changes.items()]
    return train.run(train.parse_config(["expr3d.train"] + args))


def _latest(model_dir):
    directory = os.path.join(model_dir, "gan", "checkpoints")
    return os.path.join(directory, sorted(d for d in os.listdir(directory) if d.startswith("ckpt-"))[-1], "ckpt")


def _checkpoint_tensors(model_dir, prefix):
    reader = tf.train.load_checkpoint(_latest(model_dir))
    return {key: reader.get_tensor(key) for key in sorted(reader.get_variable_to_shape_map())
            if key.startswith(prefix + "/") and "OPTIMIZER" not in key}


@pytest.mark.slow  # 11 s in the full suite
def test_training_exports_the_average_and_checkpoints_both(tiny_dataset, tmp_path):
    """--g_ema_decay: models/g_rgb.keras holds the average (the checkpoint's g_rgb_average), not the raw G_rgb."""
    from expr3d.run_dir import RunDir

    model_dir = str(tmp_path / "run")
    assert _tiny_gan(tiny_dataset, model_dir, 4, g_ema_decay=0.5) == 0
    exported = RunDir(model_dir).load_network("g_rgb")
    saved = _checkpoint_tensors(model_dir, "g_rgb_average")
    average = sorted(saved.values(), key=lambda a: (a.shape, float(a.sum())))
    exported_values = sorted((w.numpy() for w in exported.weights), key=lambda a: (a.shape, float(a.sum())))
    assert len(average) == len(exported_values) > 0
    assert all(np.array_equal(a, b) for a, b in zip(exported_values, average))
    updates = tf.train.load_checkpoint(_latest(model_dir)).get_tensor(UPDATES_KEY)
    assert int(updates) == 4  # one per generator update (n_critic 1)


@pytest.mark.slow  # 15 s in the full suite
def test_a_run_without_average_resumes_with_one(tiny_dataset, tmp_path, capfd):
    model_dir = str(tmp_path / "run")
    assert _tiny_gan(tiny_dataset, model_dir, 2) == 0
    assert _tiny_gan(tiny_dataset, model_dir, 4, g_ema_decay=0.9) == 0
    assert "holds no moving average of G_rgb" in capfd.readouterr().err
    updates = tf.train.load_checkpoint(_latest(model_dir)).get_tensor(UPDATES_KEY)
    assert int(updates) == 2  # started at the resumed iteration 2
