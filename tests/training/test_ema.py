"""WeightAverage: the moving average's formula, its warm-up, inside a tf.function, and the weights it copies."""
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
    np.testing.assert_allclose(average.layers[0].kernel.numpy(), before[0] + 0.9, rtol=1e-6)
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
    np.testing.assert_allclose(average.layers[0].kernel.numpy(), old + 1.0, rtol=1e-6)
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
