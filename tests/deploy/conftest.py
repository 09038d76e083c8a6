"""What the deployment tests share: running CLIs (forked), and the `clis` fixture. The trained run and its export are
session fixtures in tests/deploy/export_fixtures.py (a plugin, so tests/mobile shares them)."""
import os
import subprocess

import pytest

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
