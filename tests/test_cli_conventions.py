"""The one CLI convention (expr3d.cli): every command is a `run_cli` function that `python -m` and a console script
declared in setup.py both run, and commands are quiet by default - TensorFlow's C++ start-up lines only under
`--verbosity=1`."""
import ast
import json
import os
import subprocess
import sys

import pytest

from expr3d import cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# console script -> the module `python -m` runs
SCRIPTS = {"expr3d-train": "expr3d.train", "expr3d-evaluate": "expr3d.evaluate", "expr3d-export": "expr3d.export",
           "expr3d-lite": "expr3d.lite", "expr3d-synthesize": "expr3d.synthesize", "expr3d-compare": "expr3d.compare",
           "expr3d-figure": "expr3d.figure", "expr3d-ablation": "expr3d.ablation",
           "expr3d-classifier": "expr3d.metrics.classifier", "expr3d-judge": "expr3d.metrics.judge",
           "expr3d-au-judge": "expr3d.metrics.au_judge",
           "expr3d-synthetic": "expr3d.data.synthetic", "expr3d-prepare": "expr3d.data.prepare",
           "expr3d-launch": "expr3d.launch", "expr3d-mobile": "expr3d.mobile"}
# What TensorFlow printed at error level on every command before (#16): none of it may reach a default run's stderr.
NOISE = ("absl::InitializeLog", "cuInit", "cuda drivers", "cpu_feature_guard", "oneDNN", "remapper", "renamed",
         "I0000 ", "W0000 ", "E0000 ")


def console_scripts():
    """setup.py's console_scripts as {name: "module:function"} (read, not run)."""
    with open(os.path.join(REPO, "setup.py"), encoding="utf-8") as handle:
        tree = ast.parse(handle.read())
    setup_call = next(node for node in ast.walk(tree) if isinstance(node, ast.Call)
                      and getattr(node.func, "id", None) == "setup")
    entry_points = next(ast.literal_eval(k.value) for k in setup_call.keywords if k.arg == "entry_points")
    return {name.strip(): target.strip() for name, target in
            (entry.split("=", 1) for entry in entry_points["console_scripts"])}


def main_guard_calls(path):
    """Names of the functions called in `path`'s `if __name__ == "__main__":` block."""
    with open(path, encoding="utf-8") as handle:
        tree = ast.parse(handle.read())
    for node in tree.body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Compare) and \
                getattr(node.test.left, "id", None) == "__name__":
            return {call.func.id for call in ast.walk(node) if isinstance(call, ast.Call)
                    and isinstance(call.func, ast.Name)}
    return set()


@pytest.mark.slow
def test_console_scripts_run_what_python_m_runs():
    scripts = console_scripts()
    assert set(scripts) == set(SCRIPTS), sorted(set(scripts) ^ set(SCRIPTS))
    for name, module in SCRIPTS.items():
        target, function = scripts[name].split(":")
        assert target in (module, f"{module}.__main__"), (name, target)
        path = os.path.join(REPO, *target.split(".")) + ".py"
        assert function in main_guard_calls(path), f"{path}'s __main__ block does not call {function}"
    # Each target imports and is callable, without importing TensorFlow (one fresh process).
    probe = ("import importlib, json, sys\n"
             "targets = json.loads(sys.argv[1])\n"
             "bad = [t for t in targets if not callable(getattr(importlib.import_module(t.split(':')[0]), "
             "t.split(':')[1], None))]\n"
             "print(json.dumps({'bad': bad, 'tensorflow': 'tensorflow' in sys.modules}))\n")
    done = subprocess.run([sys.executable, "-c", probe, json.dumps(sorted(scripts.values()))], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report == {"bad": [], "tensorflow": False}  # no CLI imports TensorFlow before its flags are parsed


@pytest.mark.slow
def test_commands_are_quiet_by_default(tmp_path):
    """Three commands fail after importing TensorFlow (train's data check runs after its device set-up; export and
    evaluate load the run's Keras model): stderr is the one error line, nothing from TensorFlow's C++ start-up."""
    run, data = tmp_path / "run", tmp_path / "data"
    (run / "models").mkdir(parents=True)
    data.mkdir()
    (run / "config.json").write_text(json.dumps({"model_config": {"image_size": 32, "d_num_layers": 3,
                                                                  "depth_d_num_layers": 3},
                                                 "flags": {"geometry": "depth"}}))
    (run / "models" / "g_rgb.keras").write_bytes(b"not a keras file")
    cases = {
        "train": (["-m", "expr3d.train", f"--data_dir={data}", f"--model_dir={tmp_path / 'new_run'}"], 2, "is empty"),
        "export": (["-m", "expr3d.export", f"--model_dir={run}", f"--output={tmp_path / 'out'}"], 1, "g_rgb.keras"),
        "evaluate": (["-m", "expr3d.evaluate", f"--model_dir={run}", f"--data_dir={data}",
                      f"--output={tmp_path / 'evaluation'}"], 1, str(data)),
        "train_verbose": (["-m", "expr3d.train", f"--data_dir={data}", f"--model_dir={tmp_path / 'new_run'}",
                           "--verbosity=1"], 2, "is empty"),
    }
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", cli.QUIET_ENV, cli.TRACEBACK_ENV)}
    processes = {name: subprocess.Popen([sys.executable, *argv], cwd=REPO, env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True, errors="backslashreplace")
                 for name, (argv, _, _) in cases.items()}
    failures = []
    for name, process in processes.items():
        _, stderr = process.communicate(timeout=300)
        program = cases[name][0][1]
        lines = [line for line in stderr.splitlines() if line.strip()]
        expected_code, culprit = cases[name][1:]
        problems = []
        if process.returncode != expected_code:
            problems.append(f"exit code {process.returncode}, expected {expected_code}")
        if not lines or not lines[-1].startswith(f"{program}: error: ") or culprit not in lines[-1]:
            problems.append("the last line is not the error line")
        if name != "train_verbose":  # verbose: TensorFlow's lines are allowed, the error line is still last
            noise = [line for line in lines if any(text in line for text in NOISE)]
            if noise or len(lines) != 1:
                problems.append(f"{len(lines)} lines on stderr, expected one; TensorFlow's: {noise}")
        if problems:
            failures.append(f"{name}: {'; '.join(problems)}\n    stderr: {stderr[-2000:]!r}")
    assert not failures, "\n".join(failures)
