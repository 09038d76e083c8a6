"""Fixtures for the deployment tests: rendered and drawn faces OpenCV's Haar cascade detects, a tiny dataset, a tiny trained run.

The run directory follows the run directory contract (expr3d.run_dir: config.json + models/*.keras), written with
build_models on a tiny config and a few steps of a simple objective so the weights are not pure initialisation.
"""
import numpy as np

from expr3d.labels import NUM_EXPRESSIONS

TINY = dict(image_size=32, g_conv_dim=8, g_num_res_blocks=0, d_conv_dim=8, d_num_layers=2, depth_g_conv_dim=8,
            depth_g_num_res_blocks=0, depth_d_conv_dim=8, depth_d_num_layers=2)


def draw_face(size=256, seed=0, angle=0.0, background=(90, 110, 130)):
    """An RGB uint8 cartoon face (skin ellipse, eyes with brows, nose, mouth) the Haar frontal cascade detects.

    `angle` rotates the whole picture (degrees, counter-clockwise on screen) about its centre.
    """
    import cv2

    rng = np.random.default_rng(seed)
    s = size / 256.0
    image = np.full((size, size, 3), background, np.uint8)
    skin = tuple(int(v) for v in np.clip(np.array((200, 160, 140)) + rng.integers(-20, 20, 3), 0, 255))
    centre = (size // 2, size // 2)
    cv2.ellipse(image, centre, (int(70 * s), int(92 * s)), 0, 0, 360, skin, -1, cv2.LINE_AA)
    for side in (-1, 1):
        ex, ey = int(centre[0] + side * 30 * s), int(centre[1] - 20 * s)
        cv2.ellipse(image, (ex, ey), (int(16 * s), int(8 * s)), 0, 0, 360, (245, 245, 245), -1, cv2.LINE_AA)
        cv2.circle(image, (ex, ey), int(6 * s), (40, 30, 20), -1, cv2.LINE_AA)
        cv2.line(image, (int(ex - 18 * s), int(ey - 18 * s)), (int(ex + 18 * s), int(ey - 20 * s)), (60, 40, 30),
                 max(1, int(5 * s)), cv2.LINE_AA)
    cv2.line(image, (centre[0], int(centre[1] - 5 * s)), (centre[0] - int(6 * s), int(centre[1] + 25 * s)),
             (150, 110, 100), max(1, int(3 * s)), cv2.LINE_AA)
    cv2.ellipse(image, (centre[0], int(centre[1] + 50 * s)), (int(25 * s), int(8 * s)), 0, 0, 360, (150, 60, 60), -1,
                cv2.LINE_AA)
    image = cv2.GaussianBlur(image, (3, 3), 0)
    if angle:
        matrix = cv2.getRotationMatrix2D((size / 2.0, size / 2.0), angle, 1.0)
        image = cv2.warpAffine(image, matrix, (size, size), borderMode=cv2.BORDER_REPLICATE)
    return image


def rendered_face(identity=0, expression=1, size=256, seed=0):
    """A frontal rendered synthetic face (expr3d.data.synthetic) as RGB uint8: a "photo" Haar detects."""
    from expr3d.data.synthetic import render_example

    return render_example(expression, image_size=size, seed=seed, identity=identity, frontal=True).image


def no_face_image(width=320, height=240):
    """A landscape-like RGB picture with no face: sky gradient, ground, a few boxes."""
    import cv2

    v = np.linspace(0, 1, height)[:, None]
    image = np.zeros((height, width, 3), np.uint8)
    image[...] = (np.stack([80 + 100 * v, 140 + 80 * v, 230 - 60 * v], -1)).astype(np.uint8)
    image[height * 2 // 3:] = (70, 120, 60)
    cv2.rectangle(image, (30, 100), (90, 170), (120, 80, 50), -1)
    cv2.rectangle(image, (200, 60), (260, 170), (160, 160, 170), -1)
    return image


def face_example(size, index, expression, identity, key):
    """A FaceExample of a drawn face resized to `size`, with an ellipsoid depth and its normals."""
    import cv2

    from expr3d.data import schema

    image = cv2.resize(draw_face(128, seed=index), (size, size), interpolation=cv2.INTER_AREA)
    v, u = np.mgrid[0:size, 0:size].astype(np.float64)
    x = (u + 0.5) / size - 0.5
    y = 0.5 - (v + 0.5) / size
    rx, ry = 70 / 256.0, 92 / 256.0
    r2 = (x / rx) ** 2 + (y / ry) ** 2
    mask = r2 < 1.0
    h = np.sqrt(np.clip(1.0 - r2, 0, None)) * 0.3
    depth = np.where(mask, 3.0 - h, 0.0).astype(np.float32)
    normals = np.zeros((size, size, 3), np.float32)
    grad_x = np.where(mask, -x / (rx ** 2) * 0.09 / np.maximum(h, 1e-3), 0)
    grad_y = np.where(mask, -y / (ry ** 2) * 0.09 / np.maximum(h, 1e-3), 0)
    n = np.stack([-grad_x, -grad_y, np.ones_like(grad_x)], -1)
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    normals[mask] = n[mask].astype(np.float32)
    return schema.FaceExample(image=image, depth=depth, mask=mask, normals=normals, expression=expression,
                              identity=identity, key=key)


def make_dataset(data_dir, size=32, num_train=16, num_test=8):
    """A tiny dataset (train + test) of drawn faces in the records format, with its card."""
    from expr3d.data import dataset_card, records

    for split, count, offset in (("train", num_train, 0), ("test", num_test, 1000)):
        with records.ShardedWriter(data_dir, split=split, examples_per_shard=512, overwrite=False) as writer:
            for i in range(count):
                writer.write(face_example(size, offset + i, expression=i % NUM_EXPRESSIONS, identity=(offset + i) // 8,
                                          key=f"{split}/{i}"))
    dataset_card.write_dataset_card(data_dir, name="deploy-test-faces", image_size=size,
                               provenance={"source": "tests/deploy/fixtures.py drawn faces"})
    return data_dir


def make_run(model_dir, data_dir, steps=8, geometry="depth", seed=0, generator="stargan"):
    """A tiny run directory: build_models(TINY) trained `steps` steps on a simple objective, saved per the contract.

    G_rgb learns a per-expression colour shift of its input; G_depth learns the records' depth (pipeline
    normalisation, replicated x3). Enough to make the weights trained, not pure init, in a few seconds.
    `generator` is G_rgb's architecture (ModelConfig.generator: "stargan", "attention", "attention_warp").
    """
    import keras
    import tensorflow as tf

    from expr3d.data import pipeline
    from expr3d.models import TO_GEOMETRY, ModelConfig, build_models
    from expr3d.run_dir import RunDir

    keras.utils.set_random_seed(seed)
    config = ModelConfig(**TINY, generator=generator)
    models = build_models(config)
    g_rgb, g_depth = models["g_rgb"], models["g_depth"]
    if generator == "attention_warp":  # a flow that moves pixels (a new one is zero), so the export must warp
        g_rgb.get_layer("flow_conv").bias.assign(np.array([0.3, -0.5], np.float32))
    dataset = pipeline.make_dataset(data_dir, "train", batch_size=8, training=True, seed=seed, augment=False)
    tints = tf.constant(np.random.default_rng(seed).uniform(-0.3, 0.3, (NUM_EXPRESSIONS, 3)), tf.float32)
    optimizer = keras.optimizers.Adam(1e-3)
    variables = g_rgb.trainable_variables + g_depth.trainable_variables
    for step, batch in zip(range(steps), dataset):
        x = batch["image"]
        ids = batch["expression"]
        target = tf.clip_by_value(x + tf.gather(tints, ids)[:, None, None, :], -1.0, 1.0)
        geometry_target = tf.tile(batch["depth"], [1, 1, 1, 3]) if geometry == "depth" else batch["normals"]
        with tf.GradientTape() as tape:
            out = g_rgb([x, tf.one_hot(ids, NUM_EXPRESSIONS)], training=True)
            domain = tf.broadcast_to(tf.constant([TO_GEOMETRY], tf.float32), [tf.shape(x)[0], 2])
            geo = g_depth([x, domain], training=True)
            loss = tf.reduce_mean(tf.abs(out - target)) + tf.reduce_mean(tf.abs(geo - geometry_target))
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
    run = RunDir(model_dir)
    run.save_networks(models)
    run.write_config({"flags": {"geometry": geometry, "data_dir": data_dir, "image_size": TINY["image_size"]},
                      "model_config": config.to_dict(),
                      "dataset": {"image_size": TINY["image_size"], "name": "deploy-test-faces"},
                      "step": steps, "versions": {"test_fixture": 1}})
    return models


def exported_run(tmp_path_factory, name, generator, variants, steps=4):
    """A `steps`-step run of `generator` (make_run) exported in-process with the TFLite `variants`: {"root",
    "data_dir", "models", "base", "version_dir"} (the deploy tests' session fixtures)."""
    from expr3d import export

    root = tmp_path_factory.mktemp(name)
    data_dir = make_dataset(str(root / "data"))
    models = make_run(str(root / "run"), data_dir, steps=steps, generator=generator)
    base = str(root / "saved_models" / generator)
    version_dir = export.export(str(root / "run"), base, tflite=variants, data_dir=data_dir, parity_images=8,
                                log=lambda message: None)
    return {"root": root, "data_dir": data_dir, "models": models, "base": base, "version_dir": version_dir}


def make_transfer_run(model_dir, data_dir, steps=6, seed=0, decoder="bottleneck", condition_norms=False):
    """A tiny `--model=transfer` run directory: build_models(TINY, family="transfer") with the encoder and decoder
    trained `steps` steps to reconstruct each face from its own code and to give each face the next one's tint
    through the swapped code (a stand-in objective, so the weights are trained, not pure init); saves the encoder,
    decoder and G_depth as the trainer exports them. `decoder`, `condition_norms`: the --transfer_decoder and
    --condition_norms."""
    import keras
    import tensorflow as tf

    from expr3d.data import pipeline
    from expr3d.models import ModelConfig, build_models
    from expr3d.run_dir import RunDir

    keras.utils.set_random_seed(seed)
    config = ModelConfig(**TINY, family="transfer", code_dim=8, transfer_decoder=decoder,
                         condition_norms=condition_norms)
    models = build_models(config)
    encoder, decoder = models["encoder"], models["decoder"]
    if getattr(decoder, "WARP", False):  # a flow that moves pixels (a new one is zero), so the export must warp
        decoder.get_layer("flow_conv").bias.assign(np.array([-0.4, 0.3], np.float32))
    dataset = pipeline.make_dataset(data_dir, "train", batch_size=8, training=True, seed=seed, augment=False)
    optimizer = keras.optimizers.Adam(1e-3)
    variables = encoder.trainable_variables + decoder.trainable_variables
    for _, batch in zip(range(steps), dataset):
        x = batch["image"]
        exemplar = tf.roll(x, 1, axis=0)
        with tf.GradientTape() as tape:
            code, free, _ = encoder(x, training=True)
            rebuilt = decoder([free, code, x], training=True)
            swapped = decoder([free, tf.roll(code, 1, axis=0), x], training=True)
            tint = tf.reduce_mean(exemplar, axis=[1, 2], keepdims=True) - tf.reduce_mean(x, axis=[1, 2], keepdims=True)
            loss = (tf.reduce_mean(tf.abs(rebuilt - x))
                    + tf.reduce_mean(tf.abs(swapped - tf.clip_by_value(x + 0.5 * tint, -1.0, 1.0))))
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
    run = RunDir(model_dir)
    run.save_networks({name: models[name] for name in ("encoder", "decoder", "g_depth")})
    run.write_config({"flags": {"geometry": "depth", "data_dir": data_dir, "image_size": TINY["image_size"],
                                "model": "transfer"},
                      "model_config": config.to_dict(),
                      "dataset": {"image_size": TINY["image_size"], "name": "deploy-test-faces"},
                      "step": steps, "versions": {"test_fixture": 1}})
    return models


def au_tflite_with_parity(version_dir, min_psnr_db=80.0):
    """The path of an AU export's fp32 `au_generator` TFLite file, after checking it is builtin-only and its parity
    report (against the SavedModel) reaches `min_psnr_db`."""
    import json
    import os

    from expr3d.deploy import tflite

    path = os.path.join(version_dir, "tflite", tflite.file_name("fp32", tflite.ACTION_UNITS))
    ok, ops = tflite.builtin_only(open(path, "rb").read())
    assert ok, ops
    report = json.load(open(path[:-len(".tflite")] + ".json"))
    assert report["signature"] == "au_generator" and report["parity"]["psnr_db"] >= min_psnr_db, report
    return path
