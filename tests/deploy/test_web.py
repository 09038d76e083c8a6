"""The web export (`python -m expr3d.export ... --web`, run once by tests/deploy/export_fixtures.py): its files, its
batch-1 models (what LiteRT.js needs), their parity with the SavedModel, the manifest the app reads, and refusals."""
import json
import os
import shutil

import numpy as np
import pytest

from expr3d.deploy import provenance, web
from expr3d.imaging import blazeface

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def web_dir(exported):
    return os.path.join(exported["version_dir"], web.WEB_DIR)


def test_the_folder_holds_the_models_the_detector_and_a_manifest(web_dir, exported):
    assert sorted(os.listdir(web_dir)) == sorted(web.REQUIRED_FILES)
    manifest = web.check_web_folder(web_dir)
    assert manifest["image_size"] == 32 and manifest["condition"] == "expression"
    assert manifest["input_order"] == ["image", "condition"]
    assert manifest["crop"] == {"side_per_box": blazeface.CROP_SIDE_PER_BOX,
                                "shift_up_per_box": blazeface.CROP_SHIFT_UP_PER_BOX}
    detector = os.path.join(web_dir, web.DETECTOR_FILE)
    assert manifest["detector"]["sha256"] == blazeface.file_sha256(detector)
    assert blazeface.file_sha256(detector) == blazeface.file_sha256(blazeface.default_model_path())
    info = json.load(open(os.path.join(exported["version_dir"], "expr3d_export.json")))
    assert set(info["web"]["models"]) == set(web.WEB_VARIANTS)
    assert info["trained_on"] == manifest["trained_on"]


@pytest.mark.parametrize("variant", web.WEB_VARIANTS)
def test_each_generator_has_a_static_batch_of_one_and_matches_the_saved_model(web_dir, exported, variant):
    from ai_edge_litert.interpreter import Interpreter

    from expr3d.deploy import tflite

    manifest = web.check_web_folder(web_dir)
    path = os.path.join(web_dir, manifest["models"][variant]["file"])
    details = Interpreter(model_path=path).get_signature_runner("generator").get_input_details()
    assert list(details["image"]["shape_signature"]) == [1, 32, 32, 3]  # no -1: LiteRT.js rejects a dynamic batch
    assert list(details["condition"]["shape_signature"]) == [1, 8]
    faces = tflite.parity_images(exported["data_dir"], 32, 3)[0]
    conditions = tflite.conditions_for(3)
    reference = tflite.saved_model_generator(exported["version_dir"])(faces, conditions)
    model = tflite.LiteGenerator(path)
    got = np.concatenate([model(faces[i:i + 1], conditions[i:i + 1]) for i in range(3)])
    parity = manifest["models"][variant]["parity"]
    assert np.abs(got - reference).max() <= parity["max_abs_error"] + 1e-6
    assert parity["psnr_db"] > (60 if variant == "fp16" else 30)


def test_a_folder_from_an_older_export_is_refused_naming_the_missing_file(web_dir, tmp_path):
    old = tmp_path / "web"
    shutil.copytree(web_dir, old)
    os.remove(old / "face_detector.tflite")
    with pytest.raises(ValueError, match="has no face_detector.tflite"):
        web.check_web_folder(str(old))


def test_a_missing_detector_stops_the_export_before_any_work(exported, tmp_path):
    from expr3d.export import ExportError, export

    with pytest.raises(ExportError, match=r"--web: BlazeFace model .*nope.tflite does not exist"):
        export(exported["model_dir"], str(tmp_path / "out"), web=True, detector_model=str(tmp_path / "nope.tflite"))
    assert not os.path.exists(tmp_path / "out" / "1")


def test_a_transfer_run_is_refused(exported, tmp_path):
    from expr3d.export import ExportError, export

    run = tmp_path / "transfer_run"
    shutil.copytree(exported["model_dir"], run)
    config = json.load(open(run / "config.json"))
    config.setdefault("model_config", {})["family"] = "transfer"
    json.dump(config, open(run / "config.json", "w"))
    with pytest.raises(ExportError, match="--web: the browser app runs expression and action-unit generators"):
        export(str(run), str(tmp_path / "out"), web=True)


def test_trained_on_reads_the_dataset_card_and_the_tools_find_it_beside_a_model(tmp_path, exported):
    card = {"name": "synthetic64", "image_size": 64, "description": "Procedural 3D faces",
            "provenance": {"generator": "expr3d.data.synthetic"}}
    os.makedirs(tmp_path / "d")
    json.dump(card, open(tmp_path / "d" / "dataset_card.json", "w"))
    found = provenance.trained_on({"dataset": {"data_dir": str(tmp_path / "d")}})
    assert found["kind"] == "procedural" and found["dataset"] == "synthetic64" and found["image_size"] == 64
    card["provenance"] = {"tool": "python -m expr3d.data.prepare"}
    json.dump(card, open(tmp_path / "d" / "dataset_card.json", "w"))
    found = provenance.trained_on({"dataset": {"data_dir": str(tmp_path / "d")}})
    assert found["kind"] == "photos" and found["detector"] == "haar"  # a card from before BlazeFace in prepare
    card["provenance"]["detector"] = "blazeface"
    json.dump(card, open(tmp_path / "d" / "dataset_card.json", "w"))
    assert provenance.trained_on({"dataset": {"data_dir": str(tmp_path / "d")}})["detector"] == "blazeface"
    assert provenance.trained_on({})["kind"] == "unknown"
