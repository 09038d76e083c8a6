import os

import pytest

from expr3d.metrics import judge, loop
from tests.metrics import fixtures
from tests import forked_cli


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    root = tmp_path_factory.mktemp("judge")
    return {"data": fixtures.write_paired_dataset(str(root / "data")),
            "run": fixtures.write_run(str(root / "run"), generator=fixtures.target_encoding_generator(), logs=False),
            # Always answers "happy": 2 of the 16 real test faces, 12.5 % (chance).
            "constant": fixtures.save_test_classifier(fixtures.constant_classifier(), str(root / "constant")),
            "root": root}


def test_threshold_is_a_fraction():
    assert judge.check_threshold(None) == judge.MIN_JUDGE_ACCURACY == 0.80
    assert judge.check_threshold("0.5") == 0.5
    for bad in (80, -0.1, "x"):
        with pytest.raises(ValueError, match="--min_judge_accuracy"):
            judge.check_threshold(bad)


def test_the_message_points_an_automatic_judge_to_a_larger_recipe():
    judge.check_judge(0.8, 16, 0.8, "clf", "data")  # at the threshold: accepted
    with pytest.raises(judge.JudgeRejected, match="scores 50.0 %.*raise --judge_identities"):
        judge.check_judge(0.5, 16, 0.8, "clf", "data", auto=True)
    with pytest.raises(judge.JudgeRejected, match="scores nothing"):
        judge.check_judge(float("nan"), 0, 0.0, "clf", "data")


def _guided_run_config(guide="train", lambda_guide_features=10.0):
    return {"flags": {"expression_guide": guide, "lambda_guide": 0.0, "lambda_guide_features": lambda_guide_features}}


def _write_guide(folder, **architecture):
    import json

    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "classifier.json"), "w") as f:
        json.dump({"classes": list(fixtures.EXPRESSIONS), "image_size": 32, **architecture}, f)
    return folder


def test_a_judge_with_the_guides_architecture_is_named(tmp_path):
    _write_guide(str(tmp_path / "run" / "guide"), backbone="compact", width=16, stem_stride=2)
    run = str(tmp_path / "run")
    same = {"backbone": "compact", "width": 16, "stem_stride": 2}
    message = judge.guide_architecture_warning(same, "JUDGE", _guided_run_config(), run)
    assert message is not None and "\n" not in message
    assert "JUDGE" in message and os.path.join(run, "guide") in message and "width 16" in message
    assert f"width {judge.JUDGE_WIDTH}" in message
    # another width, backbone or stem: another network
    for other in ({**same, "width": 32}, {**same, "backbone": "resnet50"}, {**same, "stem_stride": 1}):
        assert judge.guide_architecture_warning(other, "JUDGE", _guided_run_config(), run) is None
    # no guide term, no guide, an AU guide (no classes), or a guide folder that is gone: nothing to compare with
    assert judge.guide_architecture_warning(same, "J", _guided_run_config(lambda_guide_features=0.0), run) is None
    assert judge.guide_architecture_warning(same, "J", {"flags": {}}, run) is None
    assert judge.guide_architecture_warning(same, "J", _guided_run_config(str(tmp_path / "missing")), run) is None
    au = str(tmp_path / "au_guide")
    os.makedirs(au)
    with open(os.path.join(au, "classifier.json"), "w") as f:
        f.write('{"width": 16}')
    assert judge.guide_architecture_warning(same, "J", _guided_run_config(au), run) is None
    # an explicit guide folder is read where the flag points; missing fields take the builder's defaults
    explicit = _write_guide(str(tmp_path / "explicit"), width=16)
    assert judge.guide_architecture_warning(same, "J", _guided_run_config(explicit), run) is not None


def test_the_automatic_judge_is_not_the_guides_network():
    from expr3d.training import guide

    assert judge.JUDGE_WIDTH != guide.GUIDE_WIDTH


@pytest.mark.slow  # 3 s in the full suite
def test_a_judge_sharing_the_guides_architecture_is_reported_with_a_warning(paths, tmp_path):
    import json

    run = str(tmp_path / "guided_run")
    fixtures.write_run(run, generator=fixtures.target_encoding_generator(), logs=False)
    with open(os.path.join(run, "config.json")) as f:
        config = json.load(f)
    config["flags"].update(_guided_run_config()["flags"])
    with open(os.path.join(run, "config.json"), "w") as f:
        json.dump(config, f)
    _write_guide(os.path.join(run, "guide"), backbone="compact", width=16, stem_stride=2)
    results = {}
    for width in (16, 32):
        classifier = fixtures.save_test_classifier(fixtures.perfect_classifier(), str(tmp_path / f"judge{width}"),
                                                   backbone="compact", width=width, stem_stride=2)
        document = loop.evaluate(run, paths["data"], "expression_generation_rate", output=str(tmp_path / f"e{width}"),
                                 classifier=classifier, progress=False, min_judge_accuracy=0.0)
        results[width] = document
    assert results[16]["metrics"]["expression_generation_rate"]["judge_shares_guide_architecture"] is True
    assert any("architecture of the expression guide" in w for w in results[16]["warnings"])
    assert results[32]["metrics"]["expression_generation_rate"]["judge_shares_guide_architecture"] is False
    assert not any("architecture" in w for w in results[32]["warnings"])


@pytest.mark.slow  # 3 s in the full suite
def test_a_weak_judge_is_refused_before_any_translation(paths, monkeypatch):
    def no_generation(*args, **kwargs):
        raise AssertionError("the generation pass started before the judge was checked")

    monkeypatch.setattr(loop, "TranslationStep", no_generation)
    output = paths["root"] / "refused"
    with pytest.raises(judge.JudgeRejected) as refused:
        loop.evaluate(paths["run"], paths["data"], "expression_generation_rate,psnr", output=str(output),
                      classifier=paths["constant"], progress=False)
    message = str(refused.value)
    assert "\n" not in message
    assert "scores 12.5 % on the 16 real test faces" in message and "--min_judge_accuracy=0.80" in message
    assert "--classifier=auto" in message and "python -m expr3d.metrics.classifier" in message
    assert not (output / "results.json").exists()


@pytest.mark.slow  # a subprocess evaluate run, ~30 s here
def test_cli_refuses_with_exit_code_1_and_a_lower_threshold_allows_it(paths):
    command = ["-m", "expr3d.evaluate", f"--model_dir={paths['run']}", f"--data_dir={paths['data']}",
               "--metrics=expression_generation_rate", f"--classifier={paths['constant']}", "--progress=false",
               f"--output={paths['root'] / 'cli_refused'}"]
    refused = forked_cli.run(command, capture_output=True, text=True, timeout=300)
    assert refused.returncode == 1, refused.stderr[-2000:]
    errors = [line for line in refused.stderr.splitlines() if ": error: " in line]
    assert len(errors) == 1 and "12.5 %" in errors[0] and "below --min_judge_accuracy=0.80" in errors[0]
    document = loop.evaluate(paths["run"], paths["data"], "expression_generation_rate",
                             output=str(paths["root"] / "allowed"), classifier=paths["constant"],
                             min_judge_accuracy=0.1, progress=False)
    rate = document["metrics"]["expression_generation_rate"]
    assert rate["classifier_accuracy_on_evaluated_test_split"] == 12.5 and rate["min_judge_accuracy"] == 10.0
    assert rate["classifier_accuracy_on_evaluated_test_split_count"] == 16
    assert rate["expression_generation_rate_count"] == 16 * 8


# The classifier CLI with its training replaced by a stand-in (no TensorFlow): the check, message and exit code.
_CLASSIFIER_CLI = """
import sys
from absl import app
from expr3d.metrics import classifier
accuracy = float(sys.argv.pop())
classifier.train_classifier = lambda *a, **k: {"test_accuracy": accuracy, "test_count": 16, "test_per_class": {},
                                               "extra_test": {}, "train_seconds": 0.0}
classifier.define_flags()
app.run(classifier.main)
"""


@pytest.mark.slow
def test_classifier_cli_refuses_a_weak_judge(tmp_path, paths):
    base = ["-c", _CLASSIFIER_CLI, f"--data_dir={paths['data']}", f"--output={tmp_path / 'clf'}"]
    refused = forked_cli.run(base + ["0.13"], capture_output=True, text=True, timeout=120)
    assert refused.returncode == 1, refused.stderr[-2000:]
    errors = [line for line in refused.stderr.splitlines() if ": error: " in line]
    assert len(errors) == 1 and "scores 13.0 % on the 16 real test faces" in errors[0]
    assert "below --min_judge_accuracy=0.80" in errors[0] and "saved in" in errors[0]
    assert forked_cli.run(base + ["0.85"], capture_output=True, text=True, timeout=120).returncode == 0
    lowered = forked_cli.run(base + ["--min_judge_accuracy=0.1", "0.13"], capture_output=True, text=True,
                             timeout=120)
    assert lowered.returncode == 0, lowered.stderr[-2000:]


@pytest.mark.slow
def test_auto_judge_is_refused_for_real_data_with_the_recipe(paths):
    document = loop.evaluate(paths["run"], paths["data"], "expression_generation_rate",
                             output=str(paths["root"] / "auto_real"), classifier="auto", progress=False)
    reason = document["skipped"]["expression_generation_rate"]
    assert "needs procedural data" in reason and "python -m expr3d.metrics.classifier" in reason
    with pytest.raises(ValueError, match="not procedural"):
        judge.auto_judge(32, card={"name": "tiny-paired", "provenance": {"source": "tests"}})


@pytest.mark.slow
def test_auto_judge_is_built_once_then_reused(tmp_path, capsys, monkeypatch):
    import types

    from expr3d.metrics import classifier

    # The real training with the judge's recipe, made cheap: a narrow float32 network (3x faster to trace).
    real_training = classifier.train_classifier
    monkeypatch.setattr(classifier, "train_classifier",
                        lambda *args, **kwargs: real_training(*args, **{**kwargs, "width": 4, "precision": "float32"}))
    cache = tmp_path / "cache"
    card = {"name": "synthetic32", "provenance": {"generator": "expr3d.data.synthetic", "seed": 0}}

    def context():  # what an evaluation of a 32 px run on procedural data gives the metrics
        return types.SimpleNamespace(
            options={"classifier": "auto", "judge_cache_dir": str(cache), "judge_identities": 5, "judge_epochs": 1},
            card=card, image_size=32, data_dir=str(tmp_path / "data"), resource=lambda key, build: build())

    first = judge.classifier_from_context(context())
    assert "judge: building the automatic judge" in capsys.readouterr().err
    path = os.path.join(str(cache), judge.judge_key(32, 5, 1, judge.JUDGE_DATA_SEED), "classifier")
    assert first.path == path and first.image_size == 32
    assert first.metadata["flags"]["judge_identities"] == 5
    assert first.metadata["flags"]["judge_data_seed"] != card["provenance"]["seed"]  # other identities
    assert not os.path.exists(os.path.join(os.path.dirname(path), "data"))  # only the judge is kept
    assert sorted(os.listdir(os.path.dirname(path))) == ["classifier"]  # its per-epoch training state deleted too
    model = os.path.join(path, "classifier.keras")
    mtime = os.stat(model).st_mtime_ns
    assert judge.classifier_from_context(context()).path == path
    assert f"judge: reusing the cached judge {path}" in capsys.readouterr().err
    assert os.stat(model).st_mtime_ns == mtime
    # Another recipe is another judge; a dataset drawn with the judge's seed gets other identities.
    assert judge.judge_key(32, 5, 2) != judge.judge_key(32, 5, 1)
    assert judge.judge_seed({"provenance": {"seed": judge.JUDGE_DATA_SEED}}) != judge.JUDGE_DATA_SEED


def test_cache_location_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(judge.CACHE_ENV, str(tmp_path / "judges"))
    assert judge.default_cache_dir() == str(tmp_path / "judges")
    monkeypatch.delenv(judge.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert judge.default_cache_dir() == os.path.join(str(tmp_path / "xdg"), "expr3d", "judges")
