import json
import os
import subprocess
import sys

import numpy as np
import pytest

from expr3d.metrics import classifier
from tests.metrics import fixtures


def test_cli_trains_on_the_train_split_and_saves_metadata(tmp_path):
    data = fixtures.write_paired_dataset(str(tmp_path / "data"))
    output = str(tmp_path / "clf")
    command = [sys.executable, "-m", "expr3d.metrics.classifier", f"--data_dir={data}", f"--output={output}",
               "--epochs=1", "--max_steps_per_epoch=2", "--batch_size=4", "--width=4"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    with open(os.path.join(output, classifier.METADATA_FILE)) as f:
        metadata = json.load(f)
    assert metadata["classes"] == list(fixtures.EXPRESSIONS)
    assert metadata["image_size"] == 32
    assert metadata["test_count"] == 16
    assert 0.0 <= metadata["test_accuracy"] <= 1.0
    assert metadata["trained_on"] == "real train split only"
    assert "tensorflow" in metadata["versions"]
    loaded = classifier.load_classifier(output, image_size=32)
    assert loaded.predict_logits(np.zeros((2, 32, 32, 3), np.float32)).shape == (2, 8)
    with pytest.raises(ValueError, match="128x128"):
        classifier.load_classifier(output, image_size=128)
    again = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert again.returncode != 0 and "--overwrite" in again.stderr


def test_missing_classifier_files_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="classifier.keras is missing.*expr3d.metrics.classifier"):
        classifier.load_classifier(str(tmp_path))
