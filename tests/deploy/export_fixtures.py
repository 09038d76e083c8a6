"""The deployment tests' session fixtures, as a plugin (tests/conftest.py lists it in `pytest_plugins`) so that
tests/deploy and tests/mobile share one instance: the tiny run is trained and exported once per test process."""
import os

import pytest

from tests.deploy import fixtures


@pytest.fixture(scope="session")
def deploy_run(tmp_path_factory):
    """{"data_dir", "model_dir", "models"}: a tiny dataset of drawn faces and a run trained a few steps on it."""
    root = tmp_path_factory.mktemp("deploy")
    data_dir = fixtures.make_dataset(str(root / "data"))
    model_dir = str(root / "run")
    models = fixtures.make_run(model_dir, data_dir, steps=4)
    return {"root": root, "data_dir": data_dir, "model_dir": model_dir, "models": models}


@pytest.fixture(scope="session")
def exported(deploy_run):
    """The run exported by `python -m expr3d.export ... --tflite=all --web` (a subprocess): {"base", "version_dir",
    ...}."""
    base = str(deploy_run["root"] / "saved_models" / "tiny")
    from tests.deploy.conftest import run_cli

    result = run_cli(["-m", "expr3d.export", f"--model_dir={deploy_run['model_dir']}", f"--output={base}",
                      "--tflite=all", "--web", f"--data_dir={deploy_run['data_dir']}", "--parity_images=8",
                      "--representative_images=16"])
    assert result.returncode == 0, result.stderr[-3000:]
    return dict(deploy_run, base=base, version_dir=os.path.join(base, "1"), export_log=result.stderr)
