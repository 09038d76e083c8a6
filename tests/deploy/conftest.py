"""Session fixtures shared by the deployment tests: one tiny trained run, exported once through the CLI."""
import os
import subprocess

import pytest

from tests.deploy import fixtures
from tests import forked_cli

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _env():
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", KERAS_BACKEND="tensorflow")


def run_cli(args, timeout=300, **kwargs):
    """Run `python ARGS` from the repository root; returns the CompletedProcess (text)."""
    return forked_cli.run(list(args), cwd=REPO, env=_env(), capture_output=True, text=True,
                          timeout=timeout, **kwargs)


def run_clis(commands, timeout=300):
    """Run several `python ARGS` concurrently (they are mostly TensorFlow start-up); returns CompletedProcesses."""
    processes = [forked_cli.popen(list(args), cwd=REPO, env=_env(), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for args in commands]
    results = []
    for args, process in zip(commands, processes):
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            stdout, stderr = process.communicate()
        results.append(subprocess.CompletedProcess(args, process.returncode, stdout, stderr))
    return results


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
    """The run exported by `python -m expr3d.export ... --tflite=all` (a subprocess): {"base", "version_dir", ...}."""
    base = str(deploy_run["root"] / "saved_models" / "tiny")
    result = run_cli(["-m", "expr3d.export", f"--model_dir={deploy_run['model_dir']}", f"--output={base}",
                      "--tflite=all", f"--data_dir={deploy_run['data_dir']}", "--parity_images=8",
                      "--representative_images=16"])
    assert result.returncode == 0, result.stderr[-3000:]
    return dict(deploy_run, base=base, version_dir=os.path.join(base, "1"), export_log=result.stderr)


@pytest.fixture(scope="session")
def clis(exported, tmp_path_factory):
    """Every CLI run the tests need after the export, launched together (they are mostly TensorFlow start-up, so
    running them concurrently saves most of their wall time): {name: CompletedProcess} plus each module's inputs.

    Each test module contributes `cli_commands(exported, work_dir) -> (commands {name: args}, context)`.
    """
    from tests.deploy import test_export, test_lite, test_synthesize

    commands, contexts = {}, {}
    for module in (test_export, test_lite, test_synthesize):
        name = module.__name__.rsplit(".", 1)[-1]
        work = tmp_path_factory.mktemp(name)
        module_commands, contexts[name] = module.cli_commands(exported, work)
        commands.update(module_commands)
    names = list(commands)
    results = dict(zip(names, run_clis([commands[name] for name in names])))
    return {"results": results, "contexts": contexts}
