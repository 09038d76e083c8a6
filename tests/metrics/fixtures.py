"""Tiny datasets, run directories and hand-built models for the evaluation tests.

The hand-built networks are real Keras models saved and reloaded through the same paths as trained ones:
- `target_encoding_generator`: G(x, c) paints every pixel with a value that encodes the target class, so a
  classifier can recover the target exactly;
- `perfect_classifier` recovers it (argmax of a linear function of the mean of channel 0); `constant_classifier`
  always answers one class.
"""
import dataclasses
import os

import numpy as np

from expr3d.labels import EXPRESSIONS
from tests.data.fixtures import hemisphere_example

NUM = len(EXPRESSIONS)
CODES = np.linspace(-0.9, 0.9, NUM).astype(np.float32)  # pixel value painted for each target class
TINY = dict(image_size=32, g_conv_dim=8, g_num_res_blocks=0, d_conv_dim=8, d_num_layers=2, depth_g_conv_dim=8,
            depth_g_num_res_blocks=0, depth_d_conv_dim=8, depth_d_num_layers=2)


def write_paired_dataset(directory, num_pairs=2, size=32, train_per_class=1):
    """A dataset whose test split is paired: `num_pairs` pair ids x 8 expressions (one identity per pair)."""
    from expr3d.data import dataset_card, records

    with records.ShardedWriter(directory, split="train", examples_per_shard=64) as writer:
        for i in range(train_per_class * NUM):
            writer.write(hemisphere_example(size, expression=i % NUM, identity=100 + i // NUM, key=f"train{i}",
                                            seed=1000 + i))
    with records.ShardedWriter(directory, split="test", examples_per_shard=64) as writer:
        for pair in range(num_pairs):
            for expression in range(NUM):
                radius = 0.3 + 0.02 * expression  # the expression changes the geometry a little
                example = hemisphere_example(size, expression=expression, identity=pair, key=f"p{pair}e{expression}",
                                             seed=pair, radius=radius, pair_id=pair)
                image = example.image.copy()
                image[..., 2] = (image[..., 2] // 2 + 12 * expression).astype(np.uint8)  # the expression shows
                writer.write(dataclasses.replace(example, image=image))
    dataset_card.write_dataset_card(directory, name="tiny-paired", image_size=size, provenance={"source": "tests"})
    return directory


def target_encoding_generator(size=32):
    import keras

    image = keras.Input((size, size, 3), name="image")
    condition = keras.Input((NUM,), name="condition")
    zeros = keras.layers.Rescaling(0.0, name="zeros")(image)
    code = keras.layers.Dense(3, use_bias=False, name="code",
                              kernel_initializer=keras.initializers.Constant(0.0))(condition)
    painted = keras.layers.UpSampling2D(size, name="spread")(keras.layers.Reshape((1, 1, 3))(code))
    model = keras.Model([image, condition], keras.layers.Add(name="paint")([zeros, painted]), name="g_rgb")
    model.get_layer("code").set_weights([np.repeat(CODES[:, None], 3, axis=1)])
    return model


def perfect_classifier(size=32):
    """Logit_k = 100 (2 c_k v - c_k^2) = 100 (v^2 - (v - c_k)^2): argmax is the code nearest to v = mean pixel."""
    import keras

    image = keras.Input((size, size, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(image)
    dense = keras.layers.Dense(NUM, name="logits")
    logits = dense(pooled)
    kernel = np.zeros((3, NUM), np.float32)
    kernel[0] = 200.0 * CODES
    dense.set_weights([kernel, -100.0 * CODES ** 2])
    return keras.Model(image, logits)


def constant_classifier(size=32, answer=1):
    import keras

    image = keras.Input((size, size, 3))
    dense = keras.layers.Dense(NUM, name="logits")
    logits = dense(keras.layers.GlobalAveragePooling2D()(image))
    bias = np.zeros(NUM, np.float32)
    bias[answer] = 5.0
    dense.set_weights([np.zeros((3, NUM), np.float32), bias])
    return keras.Model(image, logits)


def save_test_classifier(model, directory, size=32, classes=EXPRESSIONS, **metadata):
    """`metadata`: further classifier.json fields (e.g. the architecture: backbone, width, stem_stride)."""
    from expr3d.metrics.classifier import save_classifier

    save_classifier(model, {"classes": list(classes), "image_size": size, "test_accuracy": 1.0, **metadata},
                    directory)
    return directory


def feature_model(size=32, seed=0):
    """A tiny random conv feature extractor (the FID code path with 16-d features)."""
    import keras

    keras.utils.set_random_seed(seed)
    image = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(8, 3, strides=2, activation="tanh")(image)
    x = keras.layers.Conv2D(16, 3, strides=2, activation="tanh")(x)
    return keras.Model(image, keras.layers.GlobalAveragePooling2D()(x))


def write_run(directory, generator=None, with_depth=True, depth_weight=0.1, geometry="depth", logs=True, seed=0):
    """A run directory per the contract: config.json, models/*.keras, checkpoints/, logs/ with loss scalars."""
    import keras
    import tensorflow as tf

    from expr3d.models import ModelConfig, build_models
    from expr3d.run_dir import RunDir

    keras.utils.set_random_seed(seed)
    config = ModelConfig(**TINY)
    networks = build_models(config)
    if generator is not None:
        networks["g_rgb"] = generator
    run = RunDir(directory)
    os.makedirs(os.path.join(directory, "checkpoints"), exist_ok=True)
    names = ("g_rgb", "d_rgb", "g_depth", "d_depth") if with_depth else ("g_rgb", "d_rgb")
    run.save_networks({name: networks[name] for name in names})
    flags = {"geometry": geometry, "depth_weight": depth_weight, "confidence_penalty": 0.1,
             "confidence_penalty_on": "critic", "seed": seed}
    run.write_config({"flags": flags, "model_config": config.to_dict(), "dataset": {"image_size": 32}, "step": 6,
                      "versions": {}})
    if logs:
        writer = tf.summary.create_file_writer(os.path.join(directory, "logs", "gan"))
        with writer.as_default():
            for step in range(1, 6):
                for term in ("g_rec", "g_cls", "d_cls", "g_adv", "d_adv"):
                    tf.summary.scalar(f"gan/loss/{term}", 1.0 / step + (seed * 0.1), step=step)
        writer.close()
    return directory


def identity_generator(size=32):
    """G(x, c) = x (ignores the target): a stand-in for a model that changes nothing."""
    import keras

    image = keras.Input((size, size, 3), name="image")
    condition = keras.Input((NUM,), name="condition")
    unused = keras.layers.Dense(1, name="unused")(condition)
    zero = keras.layers.Rescaling(0.0)(keras.layers.Reshape((1, 1, 1))(unused))
    return keras.Model([image, condition], keras.layers.Add()([image, zero]), name="g_rgb")


def embedding_model(size=32, seed=1):
    import keras

    keras.utils.set_random_seed(seed)
    image = keras.Input((size, size, 3))
    x = keras.layers.Conv2D(4, 3, strides=2, activation="relu")(image)
    return keras.Model(image, keras.layers.Dense(6)(keras.layers.Flatten()(x)))


def build_all(root):
    """Everything most tests need, under `root`: data, runs, classifiers, feature and embedding models."""
    paths = {"data": write_paired_dataset(os.path.join(root, "data")),
             "run": write_run(os.path.join(root, "run")),
             "encoding_run": write_run(os.path.join(root, "encoding_run"), generator=target_encoding_generator(),
                                       logs=False),
             "identity_run": write_run(os.path.join(root, "identity_run"), generator=identity_generator(),
                                       depth_weight=0.0, logs=False),
             "perfect": save_test_classifier(perfect_classifier(), os.path.join(root, "perfect")),
             "constant": save_test_classifier(constant_classifier(), os.path.join(root, "constant")),
             "features": os.path.join(root, "features.keras"),
             "embedding": os.path.join(root, "embedding.keras")}
    feature_model().save(paths["features"])
    embedding_model().save(paths["embedding"])
    return paths
