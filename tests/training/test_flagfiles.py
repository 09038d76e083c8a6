"""Every training flagfile under experiments/ parses as `expr3d.train`'s command line and passes its checks."""
import glob
import os

import pytest

from expr3d.training.config import parse_config

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The prepare and ablation flagfiles belong to other commands.
TRAIN_FLAGFILES = sorted(path for path in glob.glob(os.path.join(REPO, "experiments", "*.flags"))
                         if not os.path.basename(path).startswith(("prepare_", "synthetic_ablation")))


def test_there_are_training_flagfiles():
    names = {os.path.basename(path) for path in TRAIN_FLAGFILES}
    assert {"synthetic.flags", "synthetic_paired.flags", "affectnet.flags", "rafd.flags"} <= names


@pytest.mark.parametrize("path", TRAIN_FLAGFILES, ids=os.path.basename)
def test_flagfile_parses_and_validates(path):
    config = parse_config(["expr3d.train", f"--flagfile={path}"]).validate()
    assert config.data_dir and config.model_dir
    assert "--flagfile=experiments/" + os.path.basename(path) in open(path, encoding="utf-8").read()
