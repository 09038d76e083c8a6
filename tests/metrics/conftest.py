"""Fixtures shared by the modules that evaluate transfer and AU-conditioned runs (one xdist group, tests/conftest.py,
so they are built once)."""
import os

import pytest

from tests import forked_cli


@pytest.fixture(scope="session")
def au_data(tmp_path_factory):
    """Procedural faces with AUs and transfer ground truth (16 identities, 32 px) and a tiny AU judge trained on
    them: {"root", "data", "au_judge"}."""
    from expr3d.metrics.au_judge import train_au_regressor

    root = tmp_path_factory.mktemp("au_data")
    data = str(root / "data")
    done = forked_cli.run(["-m", "expr3d.data.synthetic", f"--output={data}", "--image_size=32",
                           "--num_identities=16", "--images_per_identity=8", "--transfer_pairs=2",
                           "--test_fraction=0.25", "--workers=1"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    judge = str(root / "au_judge")
    train_au_regressor(data, judge, epochs=1, width=8, log=open(os.devnull, "w"))
    return {"root": root, "data": data, "au_judge": judge}
