"""`--adam_epsilon_mode=pytorch` (`TorchAdam`) against a numpy transcription of `torch.optim.Adam`'s update."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from expr3d.training import runtime
from expr3d.training.adam import TorchAdam, make_adam

LR, BETA_1, BETA_2, EPS = 1e-3, 0.5, 0.999, 1e-8


def torch_adam_reference(theta, gradients, lr=LR, beta_1=BETA_1, beta_2=BETA_2, eps=EPS):
    """`torch.optim.Adam` (amsgrad=False, no weight decay) in float64, step by step: the parameters after each step."""
    theta = np.asarray(theta, np.float64).copy()
    m = np.zeros_like(theta)
    v = np.zeros_like(theta)
    out = []
    for t, g in enumerate(gradients, start=1):
        g = np.asarray(g, np.float64)
        m = beta_1 * m + (1 - beta_1) * g  # exp_avg.lerp_(grad, 1 - beta1)
        v = beta_2 * v + (1 - beta_2) * g * g  # exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        step_size = lr / (1 - beta_1**t)
        denom = np.sqrt(v) / np.sqrt(1 - beta_2**t) + eps
        theta = theta - step_size * m / denom
        out.append(theta.copy())
    return out


def _gradients(steps=6, seed=0):
    """Gradients from 1e-10 (where epsilon dominates sqrt(v_hat)) to 1, with changing signs."""
    rng = np.random.default_rng(seed)
    scales = np.array([1e-10, 1e-9, 3e-9, 1e-8, 3e-8, 1e-7, 1e-6, 1e-3, 1.0], np.float32)
    return [(scales * rng.uniform(0.5, 1.5, scales.size) * rng.choice([-1, 1], scales.size)).astype(np.float32)
            for _ in range(steps)]


def _run(optimizer, theta, gradients):
    variable = keras.Variable(np.asarray(theta, np.float32))
    optimizer.build([variable])
    out = []
    for g in gradients:
        optimizer.apply([tf.constant(g)], [variable])
        out.append(keras.ops.convert_to_numpy(variable).astype(np.float64))
    return out


def test_pytorch_mode_matches_torch_adam_and_keras_epsilon_does_not():
    # Start at 0: the parameters then hold the accumulated steps (~1e-3) without float32 rounding against a large value.
    theta = np.zeros(9, np.float32)
    gradients = _gradients()
    reference = torch_adam_reference(theta, gradients)
    ours = _run(make_adam(LR, BETA_1, BETA_2, epsilon=EPS, epsilon_mode="pytorch"), theta, gradients)
    keras_same_eps = _run(make_adam(LR, BETA_1, BETA_2, epsilon=EPS, epsilon_mode="keras"), theta, gradients)
    for step, (expected, got, keras_got) in enumerate(zip(reference, ours, keras_same_eps), start=1):
        moved = expected - theta
        np.testing.assert_allclose(got - theta, moved, rtol=2e-4, atol=2e-9, err_msg=f"step {step}")
        # Keras' formula with the same epsilon is far off where the gradient is ~eps (gradients 1e-10 .. 1e-7).
        tiny = slice(0, 6)
        assert np.max(np.abs(keras_got - expected)[tiny] / np.abs(moved)[tiny]) > 0.1, step
    # At step 1 Keras' step is (|g| + eps) / (|g| + eps / sqrt(1 - beta_2)) = (|g| + eps) / (|g| + 31.6 eps) of
    # PyTorch's: 0.03 - 0.35 x for these gradients.
    first_keras, first_reference = keras_same_eps[0] - theta, reference[0] - theta
    assert np.all(np.abs(first_keras[:6]) < 0.6 * np.abs(first_reference[:6]))
    # Where the gradient dwarfs epsilon, the two formulas agree (they differ only in epsilon's placement).
    np.testing.assert_allclose(keras_same_eps[-1][-2:] - theta[-2:], reference[-1][-2:] - theta[-2:], rtol=1e-3)


def test_keras_epsilon_scaled_per_step_is_the_same_update():
    """The algebra the docs state: Keras' update with epsilon * sqrt(1 - beta_2^t) at step t is PyTorch's."""
    theta = np.zeros(9, np.float32)
    gradients = _gradients(steps=4, seed=1)
    reference = torch_adam_reference(theta, gradients)
    variable = keras.Variable(theta)
    optimizer = keras.optimizers.Adam(LR, BETA_1, BETA_2, epsilon=EPS)
    optimizer.build([variable])
    for t, (g, expected) in enumerate(zip(gradients, reference), start=1):
        optimizer.epsilon = EPS * np.sqrt(1 - BETA_2**t)
        optimizer.apply([tf.constant(g)], [variable])
        np.testing.assert_allclose(keras.ops.convert_to_numpy(variable), expected, rtol=2e-4, atol=2e-9)


def test_make_optimizer_checkpoints_and_loss_scaling(tmp_path):
    plain = runtime.make_optimizer(1e-4, 0.5, 0.999, False, "g")
    assert type(plain) is keras.optimizers.Adam and plain.epsilon == 1e-7  # the default is unchanged
    torch_like = runtime.make_optimizer(1e-4, 0.5, 0.999, False, "g", epsilon=1e-8, epsilon_mode="pytorch")
    assert isinstance(torch_like, TorchAdam) and torch_like.epsilon == 1e-8
    scaled = runtime.make_optimizer(1e-4, 0.5, 0.999, True, "g", epsilon=1e-8, epsilon_mode="pytorch")
    assert isinstance(scaled.inner_optimizer, TorchAdam)
    runtime.set_learning_rate(scaled, 5e-5)
    assert runtime.get_learning_rate(scaled) == pytest.approx(5e-5)
    with pytest.raises(ValueError, match="epsilon_mode"):
        make_adam(1e-4, 0.5, 0.999, epsilon_mode="torch")
    with pytest.raises(ValueError, match="amsgrad"):
        TorchAdam(amsgrad=True)

    # Same variables as Keras' Adam: a checkpoint of one restores into the other and training continues identically.
    gradients = _gradients(steps=5, seed=2)
    theta = np.zeros(9, np.float32)
    variable = keras.Variable(theta)
    first = make_adam(LR, BETA_1, BETA_2, EPS, "pytorch")
    first.build([variable])
    for g in gradients[:3]:
        first.apply([tf.constant(g)], [variable])
    prefix = tf.train.Checkpoint(optimizer=first, variable=variable).write(str(tmp_path / "ckpt"))
    for restore_as in ("pytorch", "keras"):
        restored_variable = keras.Variable(np.ones(9, np.float32))
        second = make_adam(LR, BETA_1, BETA_2, EPS, restore_as)
        second.build([restored_variable])
        tf.train.Checkpoint(optimizer=second, variable=restored_variable).read(prefix).assert_consumed()
        assert int(second.iterations.numpy()) == 3
        np.testing.assert_array_equal(restored_variable.numpy(), variable.numpy())
        np.testing.assert_array_equal(second.variables[2].numpy(), first.variables[2].numpy())  # a momentum
    continued = keras.Variable(variable.numpy())
    second = make_adam(LR, BETA_1, BETA_2, EPS, "pytorch")
    second.build([continued])
    tf.train.Checkpoint(optimizer=second, variable=continued).read(prefix).assert_consumed()
    for g in gradients[3:]:
        first.apply([tf.constant(g)], [variable])
        second.apply([tf.constant(g)], [continued])
    np.testing.assert_array_equal(continued.numpy(), variable.numpy())
    np.testing.assert_allclose(variable.numpy() - theta, torch_adam_reference(theta, gradients)[-1] - theta,
                               rtol=2e-4, atol=2e-9)
