"""What a multi-worker run (`--strategy=multi_worker`) does differently from one process, in one place.

- **Data, sharded by data**: every worker builds the same global-batch stream (same files, seed and order) and
  keeps its replicas' slices of each global batch (`pipeline.distribute_batch`: global replica i gets rows
  [i·B/n, (i+1)·B/n), as in one process). So two workers train on exactly the batches one process trains on, and
  every worker's data position is the same, which is what lets the chief's checkpoint restore them all. The price:
  each worker reads and decodes the whole global batch (at our sizes a small share of a GAN iteration; README).
- **Agreement** (`WorkerSync`): one small all-reduce per iteration carries "a worker was asked to stop" (SIGTERM /
  SIGINT), so all workers checkpoint at the same iteration and exit together; after a restore the workers check that
  they restored the same iteration (a `--model_dir` that only the chief can read would otherwise diverge silently);
  after a checkpoint they wait for the chief to have written it.
"""

import tensorflow as tf


def is_multi_worker(strategy):
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


class WorkerSync:
    """Small all-reduces that keep the workers of a multi-worker run in step (module docstring); for one process,
    each method returns its own value at no cost."""

    def __init__(self, strategy):
        self.strategy = strategy
        self.active = is_multi_worker(strategy)
        if self.active:
            @tf.function
            def reduce_max(values):  # ReduceOp has no MAX: gather every replica's values, then take the maximum
                per_replica = strategy.run(lambda v: v[tf.newaxis], args=(values,))
                return tf.reduce_max(strategy.gather(per_replica, axis=0), axis=0)

            self._reduce_max = reduce_max

    def max(self, *values):
        """The maximum of each value over the workers."""
        if not self.active:
            return tuple(float(v) for v in values)
        return tuple(float(v) for v in self._reduce_max(tf.constant(values, tf.float32)).numpy())

    def barrier(self):
        """Returns once every worker has reached it."""
        self.max(0.0)

    def same_everywhere(self, value):
        """(lowest, highest) of `value` over the workers."""
        low, high = self.max(-float(value), float(value))
        return -low, high


__all__ = ["WorkerSync", "is_multi_worker"]
