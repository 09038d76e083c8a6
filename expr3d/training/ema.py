"""An exponential moving average of a network's weights, the network stargan-v2 and StyleGAN sample and ship.

GAN generators oscillate around a good solution from one update to the next; the average over the last few hundred
updates is smoother and usually better than any single iterate (Yazici et al. 2019, "The unusual effectiveness of
averaging in GAN training"). Training updates the raw network; the average only follows it.
"""

import tensorflow as tf


class WeightAverage:
    """`average <- decay_t * average + (1 - decay_t) * model` after each update of `model`.

    `decay_t = min(decay, (1 + t) / (10 + t))`, `t` the number of updates averaged so far (TensorFlow's
    `ExponentialMovingAverage` with `num_updates`): early on the average follows the network closely, so a short run
    is not dominated by its random initialisation. Weights that are not trainable (none in this project's networks)
    are copied.

    Args:
        model: the trained network.
        average: a built network of the same architecture (its weights are overwritten with `model`'s).
        decay: the long-run decay in (0, 1); e.g. 0.999 (stargan-v2) averages over ~1,000 updates.

    Create it (and call `update`) inside the strategy's scope/cross-replica context of the training loop; `updates`
    and the average's weights belong in the checkpoint.
    """

    def __init__(self, model, average, decay):
        if not 0.0 < float(decay) < 1.0:
            raise ValueError(f"WeightAverage: decay must be in (0, 1); got {decay}")
        if len(model.weights) != len(average.weights):
            raise ValueError(f"WeightAverage: {model.name} has {len(model.weights)} weights, the average "
                             f"{len(average.weights)}; build both with the same architecture")
        self.model = model
        self.average = average
        self.decay = float(decay)
        self.updates = tf.Variable(0, dtype=tf.int64, trainable=False, name=f"{average.name}_updates")
        self.reset()

    def reset(self):
        """The average := the model, as if nothing had been averaged yet."""
        self.average.set_weights(self.model.get_weights())
        self.updates.assign(0)

    def current_decay(self):
        t = tf.cast(self.updates, tf.float32)
        return tf.minimum(self.decay, (1.0 + t) / (10.0 + t))

    def update(self):
        """One averaging step (graph-safe: call it inside a tf.function)."""
        decay = self.current_decay()
        trainable = {id(v) for v in self.model.trainable_weights}
        for source, target in zip(self.model.weights, self.average.weights):
            value = tf.cast(source, target.dtype)
            if id(source) in trainable:
                value = value + tf.cast(decay, target.dtype) * (target - value)
            target.assign(value)
        self.updates.assign_add(1)


__all__ = ["WeightAverage"]
