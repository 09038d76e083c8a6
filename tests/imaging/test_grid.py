"""expr3d.imaging.grid: tile layout on known tiles (gutters, margin, empty cells, smaller tiles, float grids) and the
column headers of each style."""
import numpy as np
import pytest

from expr3d.imaging import grid


def _tile(value, height=3, width=4, dtype=np.uint8):
    return np.full((height, width, 3), value, dtype)


def test_tiles_gutters_and_empty_cells():
    rows = [[_tile(10), _tile(20), _tile(30)], [None, _tile(40)]]
    out = grid.tile_grid(rows)  # 2 px gutter all around
    assert out.shape == (2 + 2 * (3 + 2), 2 + 3 * (4 + 2), 3) and out.dtype == np.uint8
    assert np.all(out[2:5, 2:6] == 10) and np.all(out[2:5, 8:12] == 20) and np.all(out[2:5, 14:18] == 30)
    assert np.all(out[7:10, 2:6] == 255)  # the empty cell
    assert np.all(out[7:10, 8:12] == 40) and np.all(out[7:10, 14:18] == 255)  # short row: left-aligned
    assert np.all(out[:2] == 255) and np.all(out[:, :2] == 255) and np.all(out[5:7] == 255) and np.all(out[-2:] == 255)
    assert (out != 255).sum() == 4 * 3 * 4 * 3


def test_margin_columns_cell_and_background():
    # No leading margin, a trailing gutter, at least 3 columns (prepare's review pages).
    out = grid.tile_grid([[_tile(1)]], gutter=2, margin=0, columns=3)
    assert out.shape == (3 + 2, 3 * (4 + 2), 3) and np.all(out[:3, :4] == 1) and (out != 255).sum() == 36
    # Cells larger than the tiles: each tile at its cell's top-left (synthesize's grid.png).
    out = grid.tile_grid([[_tile(7, 2, 3), _tile(8, 5, 1)]], cell=(5, 5), gutter=1)
    assert out.shape == (1 + 5 + 1, 1 + 2 * 6, 3)
    assert np.all(out[1:3, 1:4] == 7) and np.all(out[3:6, 1:6] == 255) and np.all(out[1:6, 7:8] == 8)
    # Float tiles on a white (1.0) background, no gutters (the evaluation figure, the synthetic contact sheet).
    out = grid.tile_grid([[_tile(0.25, dtype=np.float32)] * 2], gutter=0, background=1.0)
    assert out.dtype == np.float32 and out.shape == (3, 8, 3) and np.all(out == 0.25)
    with pytest.raises(ValueError, match="no tiles"):
        grid.tile_grid([[None]])


def test_cell_centres():
    assert grid.cell_centres(3, 4) == [4.0, 10.0, 16.0]
    assert grid.cell_centres(2, 5, gutter=1, margin=0) == [2.5, 8.5]


@pytest.mark.parametrize("style", grid.HEADER_STYLES)
def test_headers_name_every_column(style):
    labels = ["source", "happy", "surprise", "contempt"]
    cell = 48
    body = np.full((cell + 4, 4 * (cell + 2) + 2, 3), 128, np.uint8)
    labelled = grid.with_column_labels(body, labels, cell, style=style)
    height = grid.header_height(labels, cell, style=style)
    assert labelled.shape == (height + body.shape[0],) + body.shape[1:] and np.array_equal(labelled[height:], body)
    header = labelled[:height]
    assert header.dtype == np.uint8 and set(np.unique(header[..., 0])) > {255}
    for column in range(len(labels)):  # dark text over every column
        left = 2 + column * (cell + 2)
        assert header[:, left:left + cell].min() < 100, (style, labels[column])
    assert header[0].min() == 255  # a blank line above the text
    assert {"shared": 17, "each": 14, "fixed": 18}[style] == height
    with pytest.raises(ValueError, match="header style"):
        grid.column_header(labels, cell, body.shape[1], style="bold")
