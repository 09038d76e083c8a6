"""Bad input stops `expr3d.train` before any training with one clear line naming the flag (in-process: these
checks run before the first training step, so no subprocess is needed)."""
import os

import pytest

from expr3d import storage, train
from expr3d.data import dataset_card
from tests.training.conftest import IMAGE_SIZE

TINY = ["--g_conv_dim=8", "--g_num_res_blocks=0", "--d_conv_dim=8", "--d_num_layers=2", "--depth_g_conv_dim=8",
        "--depth_g_num_res_blocks=0", "--depth_d_conv_dim=8", "--depth_d_num_layers=2", "--perceptual_weight=0",
        "--batch_size=4"]


def run_in_process(args):
    """Parse `args` as the CLI would and call `train.run(config)` (raises `train.UsageError` on bad input)."""
    return train.run(train.parse_config(["expr3d.train"] + list(args)))


def usage_error(args):
    with pytest.raises(train.UsageError) as info:
        run_in_process(args)
    message = str(info.value)
    return message


def test_missing_and_empty_data_dir(tmp_path):
    message = usage_error([f"--data_dir={tmp_path}/nope", f"--model_dir={tmp_path}/run"] + TINY)
    assert message.startswith(f"--data_dir={tmp_path}/nope") and "does not exist" in message
    os.makedirs(tmp_path / "empty")
    message = usage_error([f"--data_dir={tmp_path}/empty", f"--model_dir={tmp_path}/run"] + TINY)
    assert "--data_dir=" in message and "empty" in message
    assert not os.path.exists(tmp_path / "run" / "config.json")  # nothing was started


def test_image_size_mismatch_names_the_flag(tiny_dataset, tmp_path):
    message = usage_error([f"--data_dir={tiny_dataset}", f"--model_dir={tmp_path}/run", "--image_size=64"] + TINY)
    assert message.startswith("--image_size=64 does not match the dataset card") and f"--image_size={IMAGE_SIZE}" in message


def test_schema_mismatch_names_the_card(tiny_dataset, tmp_path):
    data_dir = tmp_path / "data"
    os.makedirs(data_dir)
    card = dataset_card.read_dataset_card(tiny_dataset)
    card["schema_version"] = 99
    storage.atomic_write_json(os.path.join(data_dir, dataset_card.CARD_NAME), card)
    message = usage_error([f"--data_dir={data_dir}", f"--model_dir={tmp_path}/run"] + TINY)
    assert message.startswith(f"--data_dir={data_dir}") and "schema_version 99" in message


def test_data_with_dial_renders_is_refused_to_expression_runs_and_swap_partners(tiny_dataset, tmp_path):
    data_dir = tmp_path / "data"
    os.makedirs(data_dir)
    card = dataset_card.read_dataset_card(tiny_dataset)
    card[dataset_card.DIAL_RENDERS] = {"split": "train", "per_group": 8, "key_suffix": "_dial"}
    card[dataset_card.SWAP_PARTNERS] = {"split": "train", "groups_per_identity": 1}
    card["splits"]["train"]["num_pairs"] = 2
    storage.atomic_write_json(os.path.join(data_dir, dataset_card.CARD_NAME), card)
    message = usage_error([f"--data_dir={data_dir}", f"--model_dir={tmp_path}/run"] + TINY)
    assert message.startswith(f"--data_dir={data_dir}: its train split holds dial renders") and (
        "without --train_dial_renders for --condition=expression" in message)
    message = usage_error([f"--data_dir={data_dir}", f"--model_dir={tmp_path}/run", "--model=transfer",
                           "--target_mode=paired", "--lambda_pair=1", "--pair_exemplar=partner"] + TINY)
    assert message.startswith("--pair_exemplar=partner: ") and "holds dial renders" in message
    del card[dataset_card.DIAL_RENDERS]
    storage.atomic_write_json(os.path.join(data_dir, dataset_card.CARD_NAME), card)
    message = usage_error([f"--data_dir={data_dir}", f"--model_dir={tmp_path}/run", "--model=transfer",
                           "--target_mode=paired", "--lambda_pair=1", "--dial_pair_share=0.5"] + TINY)
    assert message.startswith("--dial_pair_share=0.5: ") and "holds no dial renders" in message
    assert not os.path.exists(tmp_path / "run" / "config.json")


def test_generate_synthetic_renders_the_asked_strength_and_refuses_data_rendered_otherwise(tmp_path):
    """--generate_synthetic on a data_dir that already holds procedural data uses it only as asked: a flag added to a
    flagfile after its data was rendered must not train silently on the old data."""
    data_dir = tmp_path / "data"
    common = [f"--data_dir={data_dir}", f"--model_dir={tmp_path}/run", "--generate_synthetic",
              "--synthetic_identities=4", "--synthetic_images_per_identity=8", "--image_size=32"] + TINY
    config = train.parse_config(["expr3d.train", "--synthetic_expression_strength=0.1,1.0"] + common)
    config.validate()
    config, card = train._prepare_data(config)  # renders it (4 identities at 32 px)
    assert card["provenance"]["expression_strength"] == [0.1, 1.0]
    message = usage_error(common)  # the flag left out: the default strength asked, another one rendered
    assert message == (f"--generate_synthetic: --data_dir={data_dir} already holds a procedural dataset rendered with "
                       f"expression_strength=0.1,1 (its dataset card), not the asked --synthetic_expression_strength="
                       f"0.7,1: pass a new --data_dir to render one, or --nogenerate_synthetic to train on it as it is")
    message = usage_error(common + ["--synthetic_expression_strength=0.1,1.0", "--synthetic_seed=3"])
    assert "rendered with seed=0 (its dataset card), not the asked --synthetic_seed=3" in message
    # As asked: the check passes and the next one (the image size) speaks.
    message = usage_error(common + ["--synthetic_expression_strength=0.1,1.0", "--image_size=48"])
    assert message.startswith("--image_size=48 does not match the dataset card")
    # --nogenerate_synthetic trains on the data as it is.
    message = usage_error(common + ["--nogenerate_synthetic", "--image_size=48"])
    assert message.startswith("--image_size=48 does not match the dataset card")
    assert not os.path.exists(tmp_path / "run" / "config.json")


def test_stage_two_needs_the_stage_one_checkpoint(tiny_dataset, tmp_path):
    message = usage_error([f"--data_dir={tiny_dataset}", f"--model_dir={tmp_path}/run", "--stage=gan",
                           "--depth_weight=0.1"] + TINY)
    assert message.startswith("--stage=gan with --depth_weight=0.1 needs the stage-1 checkpoint")


def test_architecture_flags_are_validated(tiny_dataset, tmp_path):
    message = usage_error([f"--data_dir={tiny_dataset}", f"--model_dir={tmp_path}/run"] + TINY + ["--d_num_layers=6"])
    assert "d_num_layers=6 needs image_size divisible by 64" in message
    message = usage_error([f"--data_dir={tiny_dataset}", f"--model_dir={tmp_path}/run", "--jit_compile",
                           "--strategy=mirrored"] + TINY)
    assert message.startswith("--jit_compile")


def test_missing_vgg_weights_names_the_flag(tiny_dataset, tmp_path):
    args = [f"--data_dir={tiny_dataset}", f"--model_dir={tmp_path}/run"] + TINY
    args = [a for a in args if not a.startswith("--perceptual_weight")]
    message = usage_error(args + ["--perceptual_weight=1", f"--vgg19_weights={tmp_path}/vgg.h5"])
    assert message.startswith(f"--vgg19_weights={tmp_path}/vgg.h5: no such file") and "--perceptual_weight=0" in message


REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.parametrize("name", ["affectnet", "rafd", "affectnet_stargan"])
def test_paper_flagfiles_parse_and_stop_at_the_missing_data(name, monkeypatch, tmp_path):
    monkeypatch.chdir(REPO)  # flagfiles name each other and data/ relative to the repository
    path = os.path.join("experiments", f"{name}.flags")
    with open(path) as handle:
        header = handle.readline()
    assert header.startswith("# ") and "Table" in header
    message = usage_error([f"--flagfile={path}", f"--model_dir={tmp_path}/run",
                           f"--data_dir={tmp_path}/no_data"])
    assert message.startswith(f"--data_dir={tmp_path}/no_data")
    config = train.parse_config(["expr3d.train", f"--flagfile={path}"])
    expected = {"affectnet": (0.1, 0.1), "rafd": (0.1, 0.1), "affectnet_stargan": (0.0, 0.0)}[name]
    assert (config.depth_weight, config.confidence_penalty) == expected
    assert (config.batch_size, config.batch_size_depth, config.n_critic) == (8, 15, 5)
    assert config.geometry == "depth" and config.image_size == 256
    # StarGAN's PyTorch initialisation and Adam epsilon; the penalty on the critic (PAPER.md).
    assert (config.init, config.adam_epsilon, config.adam_epsilon_mode) == ("stargan", 1e-8, "pytorch")
    assert config.confidence_penalty_on == "critic"


def test_adam_epsilon_must_be_positive(tiny_dataset, tmp_path):
    # A bound: checked by the flag's validator while parsing, before anything runs (exit code 2 from the CLI).
    from absl import flags

    with pytest.raises(flags.IllegalFlagValueError, match=r"flag --adam_epsilon=0.0: must be > 0"):
        train.parse_config(["expr3d.train", f"--data_dir={tiny_dataset}", f"--model_dir={tmp_path}/run",
                            "--adam_epsilon=0"] + TINY)


def test_a_run_from_before_the_init_option_resumes_as_keras_init_only(tmp_path):
    import json

    from expr3d.models import ModelConfig

    current = ModelConfig(image_size=32, d_num_layers=2, depth_d_num_layers=2).to_dict()
    old = {key: value for key, value in current.items() if key not in ("init", "generator")}
    stream = {"data_dir": "/data", "seed": 0}
    with open(tmp_path / "config.json", "w") as f:
        json.dump({"model_config": old, "geometry": "depth", "data_stream": stream}, f)
    config = train.TrainConfig(data_dir="/data", model_dir=str(tmp_path))
    # This expr3d records how workers share the data too; a run from before multi-worker training read it as one.
    # And whose code the transfer's paired term decodes with: a run from before --pair_exemplar used the target's;
    # and where contempt's one-sided change goes: before --contempt_side, as rendered; before --dial_pair_share, none.
    now = dict(stream, worker_sharding="data", pair_exemplar="target", contempt_side="as_rendered",
               dial_pair_share=0.0)
    train._check_resume(config, {"model_config": current, "geometry": "depth", "data_stream": now})  # "keras"
    with pytest.raises(train.UsageError, match='"init": "stargan"'):
        train._check_resume(config, {"model_config": dict(current, init="stargan"), "geometry": "depth",
                                     "data_stream": now})
    with pytest.raises(train.UsageError, match='"contempt_side": "image_left"'):
        train._check_resume(config, {"model_config": current, "geometry": "depth",
                                     "data_stream": dict(now, contempt_side="image_left")})
    with pytest.raises(train.UsageError, match='"dial_pair_share": 0.5'):
        train._check_resume(config, {"model_config": current, "geometry": "depth",
                                     "data_stream": dict(now, dial_pair_share=0.5)})
    with pytest.raises(train.UsageError, match='"worker_sharding": "file over 2 workers"'):
        train._check_resume(config, {"model_config": current, "geometry": "depth",
                                     "data_stream": dict(stream, worker_sharding="file over 2 workers")})


def test_model_dir_must_be_a_run_or_new(tiny_dataset, tmp_path):
    from tests.file_snapshots import snapshot, unchanged

    (tmp_path / "a_file").write_text("not a folder")
    message = usage_error([f"--data_dir={tiny_dataset}", f"--model_dir={tmp_path}/a_file"] + TINY)
    assert message.startswith(f"--model_dir={tmp_path}/a_file is a file")
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "holiday.jpg").write_bytes(b"\xff\xd8 a photo")
    (photos / "logs").mkdir()  # a name a run has too: the other entry still gives it away
    before = snapshot(tmp_path)
    message = usage_error([f"--data_dir={tiny_dataset}", f"--model_dir={photos}"] + TINY)
    assert message.startswith(f"--model_dir={photos} is not an expr3d run (it holds holiday.jpg)")
    assert not unchanged(before, snapshot(tmp_path)) and sorted(os.listdir(photos)) == ["holiday.jpg", "logs"]


def test_worker_sharding_by_file_where_each_worker_has_a_shard_else_by_data(tmp_path):
    import json

    from expr3d.training.cluster import WorkerRole
    from expr3d.training.config import TrainConfig

    def role(workers):
        return WorkerRole("worker", 0, tuple(f"127.0.0.1:{9000 + i}" for i in range(workers)), 0)

    def card(shards):
        return {"splits": {"train": {"shards": [{"num_examples": 8}] * shards}}}

    def sharding(workers, shards, **flags):
        config = TrainConfig(data_dir="/data", model_dir=str(tmp_path / "run"), strategy="multi_worker", **flags)
        return train._worker_sharding(config, role(workers) if workers else None, card(shards))

    assert sharding(None, 8) == "data" and sharding(1, 8) == "data"  # one process reads everything
    assert sharding(2, 2) == "file" and sharding(4, 3) == "data"
    assert sharding(2, 8, target_mode="paired") == "data" and sharding(2, 8, worker_sharding="data") == "data"
    with pytest.raises(train.UsageError, match=r"^--worker_sharding=file needs a train shard per worker: /data has 3 "
                                               r"train shard\(s\) for 4 workers \(use --worker_sharding=data\)$"):
        sharding(4, 3, worker_sharding="file")
    # A resumed run keeps how it started: its data positions depend on it (a run of one process: by data).
    (tmp_path / "run").mkdir()
    for started, expected in (("data", "data"), ("file over 2 workers", "file"), (None, "data")):
        stream = {"seed": 0} if started is None else {"seed": 0, "worker_sharding": started}
        (tmp_path / "run" / "config.json").write_text(json.dumps({"data_stream": stream}))
        assert sharding(2, 8) == expected
    assert train._sharding_stream("file", role(3)) == "file over 3 workers"
    assert train._sharding_stream("data", role(3)) == "data"
