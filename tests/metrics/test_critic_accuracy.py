"""D_rgb's own expression head as a metric: read on the real test faces and on the translations, from models/d_rgb.keras."""
import os
import shutil

import numpy as np
import pytest

from expr3d.labels import EXPRESSIONS
from expr3d.metrics import loop
from tests.metrics import fixtures

pytestmark = pytest.mark.slow  # ~6 s: three tiny evaluations


def _critic(classifier):
    """A D_rgb-shaped model (adversarial score, class logits) whose class head is `classifier`."""
    import keras

    image = keras.Input((32, 32, 3))
    score = keras.layers.Conv2D(1, 3, padding="same", name="adversarial")(image)
    return keras.Model(image, [score, classifier(image)], name="d_rgb")


def _run_with_critic(paths, name, source_run, classifier):
    directory = str(paths["root"] / name)
    shutil.copytree(source_run, directory)
    _critic(classifier).save(os.path.join(directory, "models", "d_rgb.keras"))
    return directory


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    root = tmp_path_factory.mktemp("critic_accuracy")
    return dict(fixtures.build_all(str(root)), root=root)


def test_a_critic_reading_what_the_judge_reads_scores_what_the_judge_scores(paths):
    # D_rgb's head is the judge's function: on the same real faces and the same translations the two must agree.
    run = _run_with_critic(paths, "encoding_critic", paths["encoding_run"], fixtures.perfect_classifier())
    document = loop.evaluate(run, paths["data"], "critic_accuracy,expression_generation_rate",
                             output=str(paths["root"] / "out1"), classifier=paths["perfect"], progress=False,
                             min_judge_accuracy=0.0)
    critic, judged = document["metrics"]["critic_accuracy"], document["metrics"]["expression_generation_rate"]
    assert critic["critic_generation_rate"] == judged["expression_generation_rate"] == 100.0
    assert critic["critic_accuracy"] == pytest.approx(judged["classifier_accuracy_on_evaluated_test_split"])
    assert critic["critic_accuracy_count"] == judged["classifier_accuracy_on_evaluated_test_split_count"] == 16
    details = document["details"]["critic_accuracy"]
    assert np.trace(details["generated"]) == np.sum(details["generated"]) == 16 * len(EXPRESSIONS)
    assert np.sum(details["real"]) == 16


def test_a_critic_that_always_answers_happy(paths):
    run = _run_with_critic(paths, "constant_critic", paths["encoding_run"], fixtures.constant_classifier(answer=1))
    result = loop.evaluate(run, paths["data"], "critic_accuracy", output=str(paths["root"] / "out2"),
                           progress=False)["metrics"]["critic_accuracy"]
    assert result["critic_accuracy"] == pytest.approx(100.0 / len(EXPRESSIONS))
    assert result["critic_generation_rate"] == pytest.approx(100.0 / len(EXPRESSIONS))
    assert result["critic_accuracy/happy"] == 100.0 and result["critic_generation_rate/happy"] == 100.0
    assert all(result[f"critic_accuracy/{name}"] == 0.0 for name in EXPRESSIONS if name != "happy")


def test_a_run_without_an_exported_critic_is_skipped_with_the_file_named(paths):
    run = str(paths["root"] / "no_critic")
    shutil.copytree(paths["identity_run"], run)
    os.remove(os.path.join(run, "models", "d_rgb.keras"))
    document = loop.evaluate(run, paths["data"], "critic_accuracy,psnr", output=str(paths["root"] / "out3"),
                             progress=False)
    assert set(document["metrics"]) == {"psnr"}
    assert "models/d_rgb.keras" in document["skipped"]["critic_accuracy"]
