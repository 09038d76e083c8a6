"""An AU run with the edit generator (`--generator=action_unit_edit`) through export: its reader and edit images are
in the served function (the SavedModel equals the Keras model; asking for the face's own AUs returns it) and its
TFLite conversion is builtin-only with parity."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from expr3d import export
from expr3d.labels import NUM_ACTION_UNITS
from tests.deploy import fixtures

IMAGE_SIZE = fixtures.TINY["image_size"]


@pytest.fixture(scope="session")
def edit_export(tmp_path_factory):
    """A run directory holding random edit-generator weights (non-zero edit images), exported with fp32 TFLite."""
    from expr3d.models import ModelConfig, build_models
    from expr3d.run_dir import RunDir

    root = tmp_path_factory.mktemp("au_edit_export")
    data_dir = fixtures.make_dataset(str(root / "data"))
    keras.utils.set_random_seed(4)
    config = ModelConfig(**fixtures.TINY, condition="action_units", generator="action_unit_edit",
                         guide_width=4)
    models = build_models(config)
    edit = models["g_rgb"].get_layer("edit_conv")
    edit.kernel.assign(np.random.default_rng(0).normal(0, 0.05, edit.kernel.shape).astype("float32"))
    run_dir = str(root / "run")
    run = RunDir(run_dir)
    run.save_networks(models)
    run.write_config({"flags": {"geometry": "depth", "data_dir": data_dir, "image_size": IMAGE_SIZE},
                      "model_config": config.to_dict(),
                      "dataset": {"image_size": IMAGE_SIZE, "name": "deploy-test-faces"},
                      "step": 0, "versions": {"test_fixture": 1}})
    base = str(root / "saved_models" / "au_edit")
    version_dir = export.export(run_dir, base, tflite=("fp32",), data_dir=data_dir, parity_images=4,
                                log=lambda message: None)
    return {"g_rgb": models["g_rgb"], "version_dir": version_dir, "data_dir": data_dir}


@pytest.mark.slow
def test_the_served_edit_generator_equals_the_keras_one_and_keeps_a_face_asked_for_its_own_aus(edit_export):
    g_rgb = edit_export["g_rgb"]
    loaded = tf.saved_model.load(edit_export["version_dir"])
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, (3, IMAGE_SIZE, IMAGE_SIZE, 3)).astype(np.float32)
    units = rng.uniform(0, 1, (3, NUM_ACTION_UNITS)).astype(np.float32)
    raw = loaded.signatures["au_generator"]
    got = raw(image=tf.constant(x), action_units=tf.constant(units))["image"].numpy()
    np.testing.assert_allclose(got, g_rgb([x, units], training=False).numpy(), atol=1e-5)
    assert np.abs(got - x).max() > 1e-2
    own = g_rgb.read_action_units(x).numpy()
    kept = raw(image=tf.constant(x), action_units=tf.constant(own))["image"].numpy()
    np.testing.assert_allclose(kept, x, atol=1e-4)


@pytest.mark.slow
def test_the_edit_generator_converts_to_builtin_tflite_with_parity(edit_export):
    fixtures.au_tflite_with_parity(edit_export["version_dir"])
