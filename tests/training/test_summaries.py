import glob

import numpy as np
import pytest
import tensorflow as tf

from expr3d.imaging import grid as tile_grids
from expr3d.training import summaries


def test_geometry_tiles_and_grid_layout():
    depth = np.zeros((4, 4, 3), np.float32)
    depth[0, 0] = 1.0  # nearest -> white
    tile = summaries.geometry_tile(depth, "depth")
    assert tile.shape == (4, 4, 3) and tile.dtype == np.uint8 and tuple(tile[0, 0]) == (255, 255, 255)
    normals = np.zeros((4, 4, 3), np.float32)
    normals[..., 2] = 1.0
    assert tuple(summaries.geometry_tile(normals, "normals")[1, 1]) == (128, 128, 255)
    samples = {"image": np.zeros((2, 8, 8, 3)), "geometry": np.zeros((2, 8, 8, 3))}
    outputs = [{"image": np.ones((2, 8, 8, 3)), "geometry": np.zeros((2, 8, 8, 3))} for _ in range(8)]
    grid = summaries.gan_stage_grid(samples, outputs, "depth")
    assert grid.shape == (4 * 8 + 5 * 2, 9 * 8 + 10 * 2, 3)
    assert summaries.gan_stage_grid(samples, outputs, "depth", show_geometry=False).shape[0] == 2 * 8 + 3 * 2
    assert grid[2, 2 + 8 + 2 + 1, 0] == 255 and grid[2, 2, 0] == 128  # generated tile (+1) vs source tile (0)


def test_events_carry_tensorboard_plugin_metadata(tmp_path):
    run = summaries.RunSummaries(str(tmp_path), "gan")
    run.scalars({"g_rec": 0.5}, step=3, learning_rates={"g_rgb": 1e-4})
    run.flags_text({"seed": 1}, step=0)
    path = run.grid(np.zeros((10, 12, 3), np.uint8), step=3)
    run.close()
    assert path.endswith("gan-000000003.png") and (tmp_path / "samples" / "gan-latest.png").exists()
    found = {}
    for event_file in glob.glob(str(tmp_path / "logs" / "gan" / "events.*")):
        for event in tf.compat.v1.train.summary_iterator(event_file):
            for value in event.summary.value:
                found[value.tag] = (value.metadata.plugin_data.plugin_name, tf.make_ndarray(value.tensor), event.step)
    assert found["gan/loss/g_rec"][0] == "scalars" and float(found["gan/loss/g_rec"][1]) == 0.5
    assert found["gan/learning_rate/g_rgb"][2] == 3
    assert found["gan/flags"][0] == "text" and b"--seed" in found["gan/flags"][1].item()
    kind, image, _ = found["gan/samples"]
    assert kind == "images" and image[0] == b"12" and image[1] == b"10"
    assert tf.io.decode_png(image[2]).shape == (10, 12, 3)


def test_attention_masks_add_a_row_under_each_source():
    size = 8
    samples = {"image": np.zeros((2, size, size, 3)), "geometry": np.zeros((2, size, size, 3))}
    mask = np.zeros((2, size, size, 1), np.float32)
    mask[:, :, size // 2:] = 1.0  # right half edited
    outputs = [{"image": np.ones((2, size, size, 3)), "geometry": np.zeros((2, size, size, 3)), "attention": mask}
               for _ in range(8)]
    grid = summaries.gan_stage_grid(samples, outputs, "depth")
    assert grid.shape == (6 * size + 7 * 2, 9 * size + 10 * 2, 3)  # image, mask and geometry rows per source
    top = 2 + size + 2  # the first mask row
    first_mask = 2 + size + 2  # column of the first output's mask
    assert tuple(grid[top, first_mask]) == (0, 0, 0) and tuple(grid[top, first_mask + size - 1]) == (255, 255, 255)
    assert np.all(grid[top:top + size, 2:2 + size] == 255)  # no mask under the source: an empty slot
    tile = summaries.mask_tile(np.full((2, 2, 1), 0.5, np.float32))
    assert tile.shape == (2, 2, 3) and tile.dtype == np.uint8 and np.all(tile == 128)
    assert summaries.gan_stage_grid(samples, outputs, "depth", show_geometry=False).shape[0] == 4 * size + 5 * 2


def test_grids_carry_a_header_naming_each_column():
    from expr3d.labels import EXPRESSIONS

    assert summaries.gan_column_labels() == ("source",) + tuple(EXPRESSIONS)
    for size in (32, 48, 64, 128):
        labels = summaries.gan_column_labels()
        grid = np.full((2 * size + 3 * 2, 9 * size + 10 * 2, 3), 128, np.uint8)
        labelled = tile_grids.with_column_labels(grid, labels, size)
        height = tile_grids.header_height(labels, size)
        assert 12 <= height <= 40 and labelled.shape == (height + grid.shape[0],) + grid.shape[1:]
        assert np.array_equal(labelled[height:], grid)
        header = labelled[:height]
        for column in range(len(labels)):  # dark text over every column, nothing but white in the gutters' edges
            left = 2 + column * (size + 2)
            assert header[:, left:left + size].min() < 100, (size, labels[column])
        assert header[0].min() == 255 and header[-1].min() == 255  # a blank line above and below the text
    # One label per column at 48 px and up; the wider depth-stage labels alternate over two lines at 48 px.
    assert tile_grids.header_height(summaries.gan_column_labels(), 48) < tile_grids.header_height(
        summaries.depth_column_labels("depth"), 48)


@pytest.mark.slow  # 2 s in the full suite
def test_training_samples_are_different_identities(tmp_path):
    from expr3d.training import inputs
    from tests.metrics import fixtures

    # A paired test split stored identity by identity: the first 8 examples are ONE person under 8 expressions.
    data = fixtures.write_paired_dataset(str(tmp_path / "data"), num_pairs=4)
    samples = inputs.sample_batch(data, 4, 32, "depth")
    assert sorted(samples["identity"].tolist()) == [0, 1, 2, 3]
    assert samples["expression"].tolist() == [0, 1, 2, 3]  # and different source expressions
    assert samples["image"].shape == (4, 32, 32, 3) and samples["geometry"].shape == (4, 32, 32, 3)
    more = inputs.sample_batch(data, 6, 32, "depth")  # fewer identities than sources: filled with other faces
    assert len(more["identity"]) == 6 and set(more["identity"].tolist()) == {0, 1, 2, 3}


def test_tensorboard_reads_back_scalars_image_and_flags(tmp_path):
    """What TensorBoard itself loads from the event file: every scalar step, the sample grid and the flags table."""
    from tensorboard.backend.event_processing import event_accumulator

    run = summaries.RunSummaries(str(tmp_path), "depth")
    run.flags_text({"batch_size": 16, "seed": 1})
    for step in (10, 20):
        run.scalars({"g_pix": step / 100.0}, step=step, learning_rates={"g_depth": 2e-4})
    grid = np.zeros((6, 9, 3), np.uint8)
    grid[..., 0] = 255  # red
    run.grid(grid, step=20)
    run.flush()  # what the loop does before a SIGTERM'd run exits: nothing may wait for close()

    events = event_accumulator.EventAccumulator(str(tmp_path / "logs" / "depth"), size_guidance={"tensors": 0})
    events.Reload()
    tags = events.Tags()["tensors"]
    assert {"depth/loss/g_pix", "depth/learning_rate/g_depth", "depth/samples", "depth/flags"} <= set(tags), tags
    g_pix = events.Tensors("depth/loss/g_pix")
    assert [e.step for e in g_pix] == [10, 20]
    assert np.allclose([tf.make_ndarray(e.tensor_proto) for e in g_pix], [0.1, 0.2])
    assert np.isclose(tf.make_ndarray(events.Tensors("depth/learning_rate/g_depth")[-1].tensor_proto), 2e-4)
    assert events.SummaryMetadata("depth/loss/g_pix").plugin_data.plugin_name == "scalars"
    (image_event,) = events.Tensors("depth/samples")
    width, height, png = tf.make_ndarray(image_event.tensor_proto)
    assert (width, height, image_event.step) == (b"9", b"6", 20)
    assert np.array_equal(tf.io.decode_png(png).numpy(), grid)
    assert events.SummaryMetadata("depth/samples").plugin_data.plugin_name == "images"
    flags = tf.make_ndarray(events.Tensors("depth/flags")[0].tensor_proto).item().decode()
    assert "| --batch_size | `16` |" in flags
    assert events.SummaryMetadata("depth/flags").plugin_data.plugin_name == "text"
    run.close()
