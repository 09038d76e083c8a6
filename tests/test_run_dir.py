import json
import os

import pytest

from expr3d import run_dir
from expr3d.run_dir import RunDir, RunDirError


def _tiny_model():
    import keras

    return keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])


def _model_config():
    from expr3d.models import ModelConfig

    return ModelConfig(image_size=32, d_num_layers=3, depth_d_num_layers=3).to_dict()


def test_a_written_config_is_version_2_and_reads_back(tmp_path):
    run = RunDir(str(tmp_path))
    run.write_config({"format_version": 1, "flags": {"geometry": "normals", "data_dir": "data/x"},
                      "model_config": _model_config(), "step": 7})
    with open(run.config_path) as handle:
        saved = json.load(handle)
    assert list(saved)[0] == "format_version" and saved["format_version"] == run_dir.FORMAT_VERSION == 2
    config = run.config()
    assert run_dir.format_version(config) == 2 and config == run.read_config()
    assert run.geometry(config) == "normals" and run.data_dir(config) == "data/x" and run.step(config) == 7
    assert run.generator(config) == "stargan"  # ModelConfig's default, written out


def test_a_config_without_a_format_version_reads_as_version_1(tmp_path):
    """A run written before config.json had a version (and before model_config.generator existed)."""
    model_config = _model_config()
    del model_config["generator"]
    (tmp_path / "config.json").write_text(json.dumps({"flags": {"data_dir": "d"}, "model_config": model_config}))
    run = RunDir(str(tmp_path))
    config = run.config()
    assert run_dir.format_version(config) == 1
    assert run.generator(config) == "stargan" and run.geometry(config) == "depth" and run.step(config) == -1
    assert run.data_dir(config) == "d" and run.model_config(config) == model_config


def test_a_newer_format_or_a_bad_geometry_is_refused_naming_the_file(tmp_path):
    run = RunDir(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({"format_version": 3, "model_config": {}}))
    with pytest.raises(RunDirError, match=r"config.json: format_version 3 is not one this expr3d reads \(1 to 2\)"):
        run.config()
    with pytest.raises(RunDirError, match=r"flags.geometry='mesh'"):
        run.geometry({"flags": {"geometry": "mesh"}})
    with pytest.raises(RunDirError, match='has no "model_config" object'):
        run.model_config({"flags": {}})


def test_missing_or_invalid_run_directories_name_the_file(tmp_path):
    with pytest.raises(RunDirError, match=r"--model_dir='.*nowhere' is not a directory \(expected a training run"):
        RunDir(str(tmp_path / "nowhere")).config()
    run = RunDir(str(tmp_path))
    with pytest.raises(RunDirError, match=r"config.json is missing: .* is not a run directory written by "
                                          r"`python -m expr3d.train`"):
        run.config()
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(RunDirError, match="config.json is not valid JSON"):
        run.config()
    assert RunDir(str(tmp_path / "new")).read_config() is None  # the trainer's "nothing to resume"


def test_networks_save_atomically_load_and_list(tmp_path):
    from expr3d.storage import default_permissions

    run = RunDir(str(tmp_path))
    assert run.networks() == ()
    run.save_networks({"g_depth": _tiny_model(), "d_depth": _tiny_model()})
    assert sorted(os.listdir(run.models_dir)) == ["d_depth.keras", "g_depth.keras"]  # no temporaries left
    assert os.stat(run.model_path("g_depth")).st_mode & 0o777 == default_permissions()
    assert run.networks() == ("g_depth", "d_depth")
    assert run.load_network("g_depth").output_shape == (None, 1)
    assert run.load_network("g_rgb", required=False) is None
    with pytest.raises(RunDirError, match=r"models/g_rgb.keras is missing"):
        run.load_network("g_rgb")
    (tmp_path / "models" / "d_rgb.keras").write_bytes(b"not a zip")
    with pytest.raises(RunDirError, match=r"cannot load .*d_rgb.keras: "):
        run.load_network("d_rgb")


def test_keras_files_get_ordinary_permissions(tmp_path):
    from expr3d.storage import default_permissions

    RunDir(str(tmp_path)).save_networks({"tiny": _tiny_model()})
    saved = tmp_path / "models" / "tiny.keras"
    assert os.stat(saved).st_mode & 0o777 == default_permissions()
    assert sorted(os.listdir(tmp_path / "models")) == ["tiny.keras"]


def test_a_run_without_g_rgb_says_why(tmp_path):
    run = RunDir(str(tmp_path))
    with pytest.raises(RunDirError, match=r"g_rgb.keras is missing, so .* cannot be evaluated: it has neither"):
        run.require_generator("evaluated")
    os.makedirs(run.checkpoint_dir("depth") + "/ckpt-000000002")
    with pytest.raises(RunDirError, match=r"cannot be exported: it has checkpoints but no exported models"):
        run.require_generator("exported")


def test_load_generators_of_a_version_1_run(tmp_path):
    model_config = _model_config()
    (tmp_path / "config.json").write_text(json.dumps({"flags": {"geometry": "normals"}, "model_config": model_config,
                                                      "step": 4}))
    run = RunDir(str(tmp_path))
    with pytest.raises(RunDirError, match="g_rgb.keras is missing, so .* cannot be exported"):
        run.load_generators()
    run.save_networks({"g_rgb": _tiny_model()})
    loaded = run.load_generators()
    assert (loaded.image_size, loaded.geometry, loaded.step, loaded.g_depth) == (32, "normals", 4, None)
    assert loaded.g_rgb is not None and loaded.config["model_config"] == model_config


def test_foreign_entries_are_what_a_run_does_not_hold(tmp_path):
    for name in ("config.json", ".config.json.abc.tmp", "models", "logs"):
        (tmp_path / name).mkdir()
    (tmp_path / "holiday.jpg").write_bytes(b"")
    assert RunDir(str(tmp_path)).foreign_entries() == ["holiday.jpg"]


def test_a_transfer_run_given_to_the_expression_tools_names_both_families(tmp_path):
    from expr3d.models import ModelConfig

    run = RunDir(str(tmp_path))
    config = ModelConfig(image_size=32, d_num_layers=3, depth_d_num_layers=3, family="transfer").to_dict()
    run.write_config({"flags": {"geometry": "depth"}, "model_config": config})
    os.makedirs(run.models_dir)
    for purpose, call in (("evaluated", lambda: run.require_generator("evaluated")),
                          ("loaded as an expression generator", run.load_generators)):
        with pytest.raises(RunDirError) as info:
            call()
        assert str(info.value) == (f"{tmp_path} holds a --model=transfer run, so it cannot be {purpose} here: this "
                                   f"tool takes --model=stargan runs")
    assert RunDir.family({"model_config": config}) == "transfer"
    assert RunDir.family({"model_config": _model_config()}) == "stargan"
    old = {k: v for k, v in _model_config().items() if k != "family"}  # a run from before the field
    assert RunDir.family({"model_config": old}) == "stargan"
