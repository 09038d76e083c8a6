"""Adam with PyTorch's epsilon placement (`--adam_epsilon_mode=pytorch`), for the paper's StarGAN settings.

Both libraries keep the same moments, `m_t = b1 m + (1 - b1) g` and `v_t = b2 v + (1 - b2) g^2`, and differ only in
where epsilon enters the step (t counts from 1):

- PyTorch (`torch.optim.Adam`, Kingma & Ba's Algorithm 1), default eps 1e-8:
      `theta -= lr / (1 - b1^t) * m_t / (sqrt(v_t) / sqrt(1 - b2^t) + eps)`
  i.e. eps is added to the bias-corrected `sqrt(v_hat)`.
- Keras 3 (`keras.optimizers.Adam.update_step`, the "epsilon hat" form before section 2.1 of the paper), default 1e-7:
      `theta -= lr * sqrt(1 - b2^t) / (1 - b1^t) * m_t / (sqrt(v_t) + eps)`
  i.e. eps is added to the UN-corrected `sqrt(v_t)`.

Multiplying PyTorch's numerator and denominator by `sqrt(1 - b2^t)` shows Keras equals PyTorch exactly when Keras'
epsilon is `eps * sqrt(1 - b2^t)`: a step-dependent value (with b2 = 0.999: 0.032 eps at step 1, 0.31 eps at step
100, 0.80 eps at step 1000, 0.96 eps at step 2500; within 1 % of eps from step 3,916 on). A constant Keras epsilon
of 1e-8 therefore matches PyTorch only asymptotically; it over-weights epsilon early on, where it matters when `sqrt(v_hat)` is
comparable to 1e-8 (tiny gradients). `TorchAdam` computes PyTorch's formula directly.

`TorchAdam` is a `keras.optimizers.Adam` with the same variables (iterations, learning rate, one momentum and one
velocity per trained variable), so it checkpoints, restores and loss-scales exactly like Adam, and a checkpoint
written by either loads into the other.
"""

import keras
from keras import ops

EPSILON_MODES = ("keras", "pytorch")


@keras.saving.register_keras_serializable(package="expr3d")
class TorchAdam(keras.optimizers.Adam):
    """`keras.optimizers.Adam` whose epsilon is added to the bias-corrected `sqrt(v_hat)`, as in PyTorch.

    Args: those of `keras.optimizers.Adam` (`epsilon` defaults to PyTorch's 1e-8); `amsgrad` is not supported.

    Example:
    ```python
    optimizer = TorchAdam(learning_rate=1e-4, beta_1=0.5, beta_2=0.999)  # torch.optim.Adam(lr=1e-4, betas=(0.5, 0.999))
    ```
    """

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-8, amsgrad=False, **kwargs):
        if amsgrad:
            raise ValueError("TorchAdam: amsgrad is not supported")
        super().__init__(learning_rate=learning_rate, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, amsgrad=False,
                         **kwargs)

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        lr = ops.cast(learning_rate, dtype)
        gradient = ops.cast(gradient, dtype)
        local_step = ops.cast(self.iterations + 1, dtype)
        bias_correction1 = 1 - ops.power(ops.cast(self.beta_1, dtype), local_step)
        bias_correction2 = 1 - ops.power(ops.cast(self.beta_2, dtype), local_step)

        m = self._momentums[self._get_variable_index(variable)]
        v = self._velocities[self._get_variable_index(variable)]
        self.assign_add(m, ops.multiply(ops.subtract(gradient, m), 1 - self.beta_1))
        self.assign_add(v, ops.multiply(ops.subtract(ops.square(gradient), v), 1 - self.beta_2))

        # PyTorch's order: denom = sqrt(v) / sqrt(bias_correction2) + eps; theta -= (lr / bias_correction1) * m / denom.
        denominator = ops.add(ops.divide(ops.sqrt(v), ops.sqrt(bias_correction2)), ops.cast(self.epsilon, dtype))
        self.assign_sub(variable, ops.multiply(lr / bias_correction1, ops.divide(m, denominator)))


def make_adam(learning_rate, beta_1, beta_2, epsilon=1e-7, epsilon_mode="keras", name=None):
    """Keras' Adam (`epsilon_mode="keras"`) or `TorchAdam` (`"pytorch"`) with the given epsilon."""
    if epsilon_mode not in EPSILON_MODES:
        raise ValueError(f"adam epsilon_mode must be one of {EPSILON_MODES}; got {epsilon_mode!r}")
    if not epsilon > 0:
        raise ValueError(f"adam epsilon must be > 0; got {epsilon!r}")
    cls = TorchAdam if epsilon_mode == "pytorch" else keras.optimizers.Adam
    return cls(learning_rate=learning_rate, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, name=name)
