"""Tests of `python -m expr3d.data.synthetic` (expr3d/data/synthetic/__main__.py): flag checks, overwrite rules and
multi-worker output, as subprocesses."""
import os

import cv2
import pytest

from expr3d.data import dataset_card
from expr3d.data.synthetic import dataset
from tests.data.synthetic.fixtures import SMALL, contents
from tests.file_snapshots import snapshot, unchanged
from tests import forked_cli


def _run_cli(*flags):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return forked_cli.run(["-m", "expr3d.data.synthetic", *flags], capture_output=True, text=True,
                          env=env, timeout=300)


@pytest.mark.parametrize("flag,value", [("num_identities", "0"), ("image_size", "40"), ("image_size", "1024"),
                                        ("test_fraction", "1.5"), ("images_per_identity", "-1"), ("workers", "0"),
                                        ("transfer_pairs", "-1"), ("expression_strength", "0.9,0.2"),
                                        ("expression_strength", "slight")])
@pytest.mark.slow
def test_cli_rejects_bad_flags(tmp_path, flag, value):
    result = _run_cli(f"--output={tmp_path / 'out'}", f"--{flag}={value}")
    assert result.returncode != 0
    assert f"--{flag}" in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_help_shows_the_transfer_ground_truth_flag_and_too_many_pairs_are_refused(tmp_path):
    result = _run_cli("--help")
    assert "Try --helpfull" in result.stdout, result.stderr  # absl's --help (its exit code is 1)
    assert "--transfer_pairs" in result.stdout and "transfer ground truth" in result.stdout
    refused = _run_cli(f"--output={tmp_path / 'out'}", "--num_identities=4", "--test_fraction=0.5",
                       "--transfer_pairs=2")
    assert refused.returncode != 0 and "--transfer_pairs must be at most 1" in refused.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.slow  # two subprocess CLI runs, ~23 s
def test_cli_writes_dataset_and_respects_overwrite(small_dataset, tmp_path):
    # Two CLI runs (not three): a refusal, then the --overwrite run that also checks multi-worker == single-worker.
    out = tmp_path / "cli"
    dataset.generate_dataset(str(out), seed=4, workers=1, progress=False, preview=False, **SMALL)  # someone's data
    before = contents(str(out))
    # The user's own files beside the dataset: never touched, with or without --overwrite.
    (out / "notes.txt").write_text("my notes")
    (out / "review").mkdir()
    (out / "review" / "train-00000.tfrecord").write_bytes(b"not ours either")
    user_files = snapshot(out / "notes.txt", out / "review")
    flags = [f"--output={out}", "--seed=3", "--num_identities=4", "--image_size=32", "--test_fraction=0.25",
             "--images_per_identity=4", "--examples_per_shard=8"]
    refused = _run_cli(*flags, "--workers=1")
    assert refused.returncode != 0 and "--overwrite" in refused.stderr
    assert contents(str(out)) == before and not unchanged(user_files, snapshot(out))
    result = _run_cli(*flags, "--workers=2", "--overwrite")
    assert not unchanged(user_files, snapshot(out))
    assert result.returncode == 0, result.stderr
    assert "ETA" in result.stderr
    # Two worker processes give the very same shards as one in-process worker (and nothing of the seed-4 data stays).
    assert contents(str(out)) == contents(small_dataset[0])
    card = dataset_card.read_dataset_card(str(out))
    assert card["provenance"]["seed"] == 3 and "--seed=3" in card["provenance"]["command"]
    preview = cv2.imread(str(out / "preview.png"))
    assert preview is not None and preview.shape[1] == 8 * 32
    leftovers = [name for name in os.listdir(tmp_path) if name.startswith(".cli.")]
    assert not leftovers
