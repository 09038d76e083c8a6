"""The machine's matmul peak, measured in the benchmark's own run (shared by bench_train and bench_evaluate)."""
import time


def matmul_peak(dtype, size=2048, iterations=20):
    """FLOP/s of a chain of `size`^2 matmuls in `dtype` (best of 3)."""
    import tensorflow as tf

    a = tf.random.normal([size, size], dtype=tf.float32)
    a = tf.cast(a / size**0.5, dtype)

    @tf.function
    def chain(x):
        for _ in range(iterations):
            x = tf.linalg.matmul(x, a)
        return tf.reduce_sum(tf.cast(x[:1, :1], tf.float32))

    chain(a).numpy()
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        chain(a).numpy()
        best = min(best, time.perf_counter() - start)
    return 2.0 * size**3 * iterations / best
