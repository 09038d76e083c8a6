import pytest

from expr3d.metrics import expression_classifier


def test_missing_classifier_files_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="classifier.keras is missing.*expr3d.metrics.classifier"):
        expression_classifier.load_classifier(str(tmp_path))


def test_stem_stride_quarters_the_work_of_the_stages():
    full = expression_classifier.build_classifier(32, width=4, stem_stride=1)
    strided = expression_classifier.build_classifier(32, width=4, stem_stride=2)
    assert full.get_layer("stage0_block0_conv1").output.shape[1] == 32
    assert strided.get_layer("stage0_block0_conv1").output.shape[1] == 16
    assert full.count_params() == strided.count_params()  # same weights, a quarter of the positions
