"""expr3d.metrics.resumable: a judge's per-epoch training state, restored for its recipe and only for it."""
import io
import os

import keras
import numpy as np
import tensorflow as tf

from expr3d.metrics import resumable


def _state(seed):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2), keras.layers.Dropout(0.5)])
    optimizer = keras.optimizers.Adam(1e-2)
    epochs = tf.Variable(0, dtype=tf.int64)
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, epochs_done=epochs,
                                     dropout_seeds=resumable.seed_states(model))
    return model, optimizer, epochs, checkpoint


def test_the_state_of_a_recipe_is_restored_and_another_recipe_starts_afresh(tmp_path):
    folder = str(tmp_path / "resume")
    recipe = {"data_dir": "/data", "epochs": 3}
    model, optimizer, epochs, checkpoint = _state(0)
    assert resumable.seed_states(model)  # the dropout's generator, which a model checkpoint leaves out
    log = io.StringIO()
    checkpointer = resumable.epoch_checkpointer(folder, checkpoint, recipe, model, optimizer, log, "judge")
    assert log.getvalue() == ""  # nothing to resume
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(model(np.ones((4, 3), np.float32), training=True))
    optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
    epochs.assign(1)
    checkpointer.save(1)
    open(os.path.join(folder, "notes.txt"), "w").write("not the judge's")

    model2, optimizer2, epochs2, checkpoint2 = _state(1)  # other initial weights
    log = io.StringIO()
    resumable.epoch_checkpointer(folder, checkpoint2, recipe, model2, optimizer2, log, "judge")
    assert log.getvalue() == f"judge: resuming after epoch 1 of 3 ({folder})\n" and int(epochs2.numpy()) == 1
    for a, b in zip(model.weights + optimizer.variables, model2.weights + optimizer2.variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))

    model3, optimizer3, epochs3, checkpoint3 = _state(2)
    log = io.StringIO()
    resumable.epoch_checkpointer(folder, checkpoint3, {**recipe, "epochs": 4}, model3, optimizer3, log, "judge")
    assert "of another recipe; starting afresh" in log.getvalue() and int(epochs3.numpy()) == 0
    assert sorted(os.listdir(folder)) == ["notes.txt", resumable.RESUME_FILE]  # only what it wrote was removed
