import glob

import numpy as np
import tensorflow as tf

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
