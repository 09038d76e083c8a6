import json
import os

import numpy as np
import pytest

from expr3d.metrics import classifier, expression_classifier
from tests.metrics import fixtures
from tests import forked_cli


@pytest.mark.slow
def test_cli_trains_on_the_train_split_and_saves_metadata(tmp_path):
    data = fixtures.write_paired_dataset(str(tmp_path / "data"))
    output = str(tmp_path / "clf")
    command = ["-m", "expr3d.metrics.classifier", f"--data_dir={data}", f"--output={output}",
               "--epochs=1", "--max_steps_per_epoch=2", "--batch_size=4", "--width=4", "--min_judge_accuracy=0"]
    done = forked_cli.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    with open(os.path.join(output, expression_classifier.METADATA_FILE)) as f:
        metadata = json.load(f)
    assert metadata["classes"] == list(fixtures.EXPRESSIONS)
    assert metadata["image_size"] == 32
    assert metadata["test_count"] == 16
    assert 0.0 <= metadata["test_accuracy"] <= 1.0
    assert metadata["trained_on"] == "real train split only"
    assert "tensorflow" in metadata["versions"]
    loaded = expression_classifier.load_classifier(output, image_size=32)
    assert loaded.predict_logits(np.zeros((2, 32, 32, 3), np.float32)).shape == (2, 8)
    with pytest.raises(ValueError, match="128x128"):
        expression_classifier.load_classifier(output, image_size=128)
    again = forked_cli.run(command, capture_output=True, text=True, timeout=300)
    assert again.returncode != 0 and "--overwrite" in again.stderr


@pytest.mark.slow
def test_bf16_training_saves_a_float32_classifier_scored_on_extra_test_splits(tmp_path):
    data = fixtures.write_paired_dataset(str(tmp_path / "data"))
    other = fixtures.write_paired_dataset(str(tmp_path / "other"))
    output = str(tmp_path / "clf")
    metadata = classifier.train_classifier(data, output, epochs=1, batch_size=4, width=4, max_steps_per_epoch=2,
                                           precision="mixed_bfloat16", extra_test_dirs=[other])
    assert metadata["train_precision"] == "mixed_bfloat16" and metadata["stem_stride"] == 2
    assert metadata["lr_schedule"] == "cosine"
    extra = metadata["extra_test"][os.path.abspath(other)]
    assert extra["count"] == 16 and 0.0 <= extra["accuracy"] <= 1.0
    loaded = expression_classifier.load_classifier(output, image_size=32)
    # Judged in float32 whatever the training precision: every layer's compute dtype.
    assert {layer.dtype_policy.compute_dtype for layer in loaded.model.layers if layer.weights} == {"float32"}
    # The float32 twin carries the trained weights, not the initial ones training started from (seed 0).
    import keras
    keras.utils.set_random_seed(0)
    initial = expression_classifier.build_classifier(32, width=4)
    moved = [np.abs(a - b).max() for a, b in zip(initial.get_weights(), loaded.model.get_weights())]
    assert max(moved) > 1e-4


@pytest.mark.slow  # three short trainings of a width-4 classifier: ~30 s
def test_an_interrupted_training_resumes_after_its_last_epoch_exactly(tmp_path):
    from expr3d.training.runtime import set_op_determinism

    data = fixtures.write_paired_dataset(str(tmp_path / "data"))
    options = dict(epochs=3, batch_size=4, width=4, max_steps_per_epoch=3)
    set_op_determinism(True)  # bit-reproducible kernels: without, two uninterrupted trainings differ in rounding
    try:
        whole = classifier.train_classifier(data, str(tmp_path / "whole"), resume_dir=str(tmp_path / "r0"),
                                            **options)
        resume = str(tmp_path / "resume")
        assert classifier.train_classifier(data, str(tmp_path / "cut"), resume_dir=resume, stop_after_epochs=2,
                                           **options) is None
        assert not os.path.exists(tmp_path / "cut")
        resumed = classifier.train_classifier(data, str(tmp_path / "cut"), resume_dir=resume, **options)
    finally:
        set_op_determinism(False)
    assert resumed["resumed_after_epoch"] == 2 and "resumed_after_epoch" not in whole
    assert resumed["train_history"] == whole["train_history"] and resumed["test_accuracy"] == whole["test_accuracy"]
    weights = [expression_classifier.load_classifier(str(tmp_path / name), image_size=32).model.get_weights()
               for name in ("whole", "cut")]
    for a, b in zip(*weights):
        np.testing.assert_array_equal(a, b)


def test_bad_training_options_are_named(tmp_path):
    with pytest.raises(ValueError, match="--precision"):
        classifier.train_classifier(str(tmp_path), str(tmp_path / "c"), precision="float64")
    with pytest.raises(ValueError, match="--lr_schedule"):
        classifier.train_classifier(str(tmp_path), str(tmp_path / "c"), lr_schedule="step")


def test_output_check_covers_both_files(tmp_path):
    from expr3d import outputs

    (tmp_path / "classifier.json").write_text("{}")  # an earlier classifier whose model file was moved away
    with pytest.raises(outputs.OutputError, match=r"already holds classifier.json.*--overwrite"):
        classifier.train_classifier(str(tmp_path / "data"), str(tmp_path))
    assert (tmp_path / "classifier.json").read_text() == "{}"
