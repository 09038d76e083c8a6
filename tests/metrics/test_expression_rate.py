import pytest

from expr3d.metrics import loop
from tests.metrics import fixtures


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    root = tmp_path_factory.mktemp("rate")
    return {"data": fixtures.write_paired_dataset(str(root / "data")),
            "run": fixtures.write_run(str(root / "run"), generator=fixtures.target_encoding_generator(), logs=False),
            "perfect": fixtures.save_test_classifier(fixtures.perfect_classifier(), str(root / "perfect")),
            "constant": fixtures.save_test_classifier(fixtures.constant_classifier(), str(root / "constant")),
            "root": root}


def _rate(paths, classifier, name, **options):
    # These hand-built judges read the codes G paints, not real faces: the judge check is tested in test_judge.py.
    options.setdefault("min_judge_accuracy", 0.0)
    document = loop.evaluate(paths["run"], paths["data"], "expression_generation_rate",
                             output=str(paths["root"] / name), classifier=paths[classifier], progress=False,
                             **options)
    return document["metrics"]["expression_generation_rate"], document


@pytest.mark.slow  # 3 s in the full suite
def test_perfect_classifier_gives_100_percent(paths):
    result, document = _rate(paths, "perfect", "perfect")
    assert result["expression_generation_rate"] == 100.0
    assert result["expression_generation_rate_count"] == 16 * 8
    assert all(result[f"expression_generation_rate/{name}"] == 100.0 for name in fixtures.EXPRESSIONS)
    confusion = document["details"]["expression_generation_rate"]["confusion"]
    assert [row[i] for i, row in enumerate(confusion)] == [16] * 8


@pytest.mark.slow  # 4 s in the full suite
def test_judge_accuracy_on_the_evaluated_split_is_measured_on_its_real_faces(paths):
    result, _ = _rate(paths, "constant", "constant_judged")
    # "happy" every time: right on the 2 happy faces of the 16 real test faces.
    assert result["classifier_accuracy_on_evaluated_test_split"] == 12.5
    assert result["classifier_accuracy_on_evaluated_test_split_count"] == 16
    six, _ = _rate(paths, "constant", "constant_judged6", protocol="affectnet")
    assert six["classifier_accuracy_on_evaluated_test_split_count"] == 12  # faces of the protocol's 6 classes
    assert six["classifier_accuracy_on_evaluated_test_split"] == pytest.approx(100.0 * 2 / 12)


@pytest.mark.slow  # 2 s in the full suite
def test_constant_classifier_gives_chance(paths):
    result, _ = _rate(paths, "constant", "constant")
    assert result["expression_generation_rate"] == pytest.approx(100.0 / 8)
    assert result["expression_generation_rate/happy"] == 100.0
    assert result["expression_generation_rate/sad"] == 0.0


@pytest.mark.slow  # 4 s in the full suite
def test_affectnet_protocol_uses_six_classes(paths):
    result, document = _rate(paths, "constant", "constant6", protocol="affectnet")
    assert result["expression_generation_rate"] == pytest.approx(100.0 / 6)
    assert "contempt" not in document["details"]["expression_generation_rate"]["classes"]
    assert document["counts"]["translations"] == 16 * 6
    perfect, _ = _rate(paths, "perfect", "perfect6", protocol="affectnet")
    assert perfect["expression_generation_rate"] == 100.0


@pytest.mark.slow
def test_classifier_for_other_classes_or_size_is_refused(paths):
    other_classes = fixtures.save_test_classifier(fixtures.constant_classifier(), str(paths["root"] / "c7"),
                                                  classes=fixtures.EXPRESSIONS[:7])
    with pytest.raises(ValueError, match="trained on classes"):
        loop.evaluate(paths["run"], paths["data"], "expression_generation_rate", output=str(paths["root"] / "x"),
                      classifier=other_classes, progress=False)
    other_size = fixtures.save_test_classifier(fixtures.constant_classifier(64), str(paths["root"] / "c64"), size=64)
    with pytest.raises(ValueError, match="trained on 64x64 images.*32x32"):
        loop.evaluate(paths["run"], paths["data"], "expression_generation_rate", output=str(paths["root"] / "y"),
                      classifier=other_size, progress=False)
