"""Probes of frozen features: how much of the action units a simple reader gets out of a representation (the
disentanglement figures of issue #13). R^2 is measured against the TRAIN mean, so 0 means "no better than predicting
the mean" and 1 a perfect reading.

    pooled, per_au, penalty = ridge_probe(train_x, train_y, test_x, test_y)
    pooled, per_au = mlp_probe(train_x, train_y, test_x, test_y)
"""
import numpy as np

from expr3d.labels import ACTION_UNITS

RIDGE_PENALTIES = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)  # times the feature count (standardised features)


def r2_against_train_mean(truth, predicted, train_mean):
    """(pooled R^2, per-AU R^2 dict): 1 - SSE / SS about the TRAIN mean (0 = no better than predicting the mean)."""
    residual = ((truth - predicted) ** 2).sum(axis=0)
    spread = ((truth - train_mean) ** 2).sum(axis=0)
    varied = spread > 1e-8 * len(truth)
    pooled = float(1.0 - residual[varied].sum() / spread[varied].sum()) if varied.any() else float("nan")
    per_au = {ACTION_UNITS[i]: float(1.0 - residual[i] / spread[i]) for i in np.flatnonzero(varied)}
    return pooled, per_au


def ridge_probe(train_x, train_y, test_x, test_y, seed=0):
    """Closed-form ridge regression on standardised features, its penalty picked on a 20 % hold-out of the train
    set: (test pooled R^2, per-AU R^2, chosen penalty)."""
    mean, scale = train_x.mean(axis=0), train_x.std(axis=0) + 1e-6
    x, z = (train_x - mean) / scale, (test_x - mean) / scale
    y_mean = train_y.mean(axis=0)
    order = np.random.default_rng(seed).permutation(len(x))
    held, fit = order[: max(1, len(x) // 5)], order[max(1, len(x) // 5):]

    def solve(rows, penalty):
        a = x[rows]
        gram = a @ a.T  # the dual form: rows (<= a few thousand) may be fewer than features
        alpha = np.linalg.solve(gram + penalty * a.shape[1] * np.eye(len(rows)), train_y[rows] - y_mean)
        return a.T @ alpha

    best = min(RIDGE_PENALTIES, key=lambda p: ((x[held] @ solve(fit, p) + y_mean - train_y[held]) ** 2).sum())
    weights = solve(np.arange(len(x)), best)
    pooled, per_au = r2_against_train_mean(test_y, z @ weights + y_mean, y_mean)
    return pooled, per_au, best


def mlp_probe(train_x, train_y, test_x, test_y, seed=0, epochs=60):
    """A 256-unit MLP (sigmoid outputs, MSE, Adam) on standardised features: (test pooled R^2, per-AU R^2)."""
    import keras

    mean, scale = train_x.mean(axis=0), train_x.std(axis=0) + 1e-6
    keras.utils.set_random_seed(seed)
    probe = keras.Sequential([keras.Input((train_x.shape[1],)), keras.layers.Dropout(0.2),
                              keras.layers.Dense(256, activation="relu"),
                              keras.layers.Dense(train_y.shape[1], activation="sigmoid")])
    probe.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    probe.fit(((train_x - mean) / scale).astype(np.float32), train_y.astype(np.float32), batch_size=64,
              epochs=epochs, verbose=0)
    predicted = probe.predict(((test_x - mean) / scale).astype(np.float32), batch_size=256, verbose=0)
    return r2_against_train_mean(test_y, predicted.astype(np.float64), train_y.mean(axis=0))




__all__ = ["RIDGE_PENALTIES", "mlp_probe", "r2_against_train_mean", "ridge_probe"]
