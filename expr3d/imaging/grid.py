"""Tile grids: equally sized images laid out in rows and columns with gutters, and a header strip naming the columns.

Every grid the project draws is built here: the training sample grids (expr3d.training.summaries), the evaluation
sample figure (expr3d.metrics.figures, which labels it with matplotlib at `cell_centres`), prepare's review contact
sheets, the synthetic dataset's contact sheet and synthesize's grid.png. Layout along each axis: `margin` pixels,
then per cell the tile and a `gutter`; a tile sits at the top-left of its cell. Column headers come in the three
typographies those outputs have always used (`HEADER_STYLES`), so their pixels are unchanged.
"""
import cv2
import numpy as np

GUTTER = 2
_FONT = cv2.FONT_HERSHEY_SIMPLEX

# "shared": one font scale for every label, the largest in [0.3, 0.45] at which the widest fits its column (text 7-10
#     px tall: legible, and "contempt" fits a 48 px tile at 0.3); labels too wide even then alternate between two
#     lines; centred over each column (training sample grids).
# "each": each label as large as fits: 75 % of the strip's height (max(14, cell // 8) px), at most 92 % of the
#     column; centred (the synthetic dataset's contact sheet).
# "fixed": scale 0.4, at most 14 characters, 2 px into the column, an 18 px strip (synthesize's grid.png).
HEADER_STYLES = ("shared", "each", "fixed")
_MIN_SCALE, _MAX_SCALE = 0.3, 0.45
_FIXED_SCALE, _FIXED_CHARACTERS, _FIXED_HEIGHT, _FIXED_BASELINE = 0.4, 14, 18, 13


def tile_grid(rows, cell=None, gutter=GUTTER, margin=None, columns=None, background=255):
    """One image of `rows` (lists of tiles [h, w, C]; None = an empty cell), rows left-aligned.

    Args:
        rows: the tiles, row by row; tiles may be smaller than the cell (placed at its top-left), not larger.
        cell: (height, width) of a cell; default: the shape of the first tile.
        gutter: pixels after each cell, along both axes.
        margin: pixels before the first cell (top and left); default: `gutter` (a gutter all around).
        columns: at least this many columns (default: the longest row).
        background: the fill value of gutters and empty cells.

    Returns an array of the tiles' dtype and channels, `margin + n * (cell + gutter)` along each axis.
    """
    tiles = [tile for row in rows for tile in row if tile is not None]
    if not tiles:
        raise ValueError("tile_grid: no tiles")
    first = np.asarray(tiles[0])
    cell_h, cell_w = first.shape[:2] if cell is None else cell
    margin = gutter if margin is None else margin
    count = max([len(row) for row in rows] + [columns or 0])
    grid = np.full((margin + len(rows) * (cell_h + gutter), margin + count * (cell_w + gutter)) + first.shape[2:],
                   background, first.dtype)
    for r, row in enumerate(rows):
        top = margin + r * (cell_h + gutter)
        for c, tile in enumerate(row):
            if tile is None:
                continue
            left = margin + c * (cell_w + gutter)
            grid[top:top + tile.shape[0], left:left + tile.shape[1]] = tile
    return grid


def cell_centres(count, cell, gutter=GUTTER, margin=None):
    """Pixel coordinates of the centres of `count` cells of side `cell` along one axis of a `tile_grid`."""
    margin = gutter if margin is None else margin
    return [margin + i * (cell + gutter) + cell / 2.0 for i in range(count)]


def _shared_layout(labels, cell, gutter):
    """(font scale, staggered, line height) of a "shared" header over columns of `cell` px."""
    pitch = cell + gutter

    def widest(scale):
        return max(cv2.getTextSize(label, _FONT, scale, 1)[0][0] for label in labels)

    scale = _MAX_SCALE
    while widest(scale) > pitch - 1 and scale > _MIN_SCALE:
        scale = round(scale - 0.01, 2)
    staggered = widest(scale) > pitch - 1
    (_, text_height), baseline = cv2.getTextSize("Ag", _FONT, scale, 1)
    return scale, staggered, text_height + baseline + 3


def _check_style(style):
    if style not in HEADER_STYLES:
        raise ValueError(f"header style must be one of {HEADER_STYLES}, got {style!r}")


def header_height(labels, cell, gutter=GUTTER, style="shared"):
    """Height in pixels of the strip `column_header` draws for these labels over columns `cell` px wide."""
    _check_style(style)
    if style == "fixed":
        return _FIXED_HEIGHT if labels else 0
    if style == "each":
        return max(14, cell // 8)
    _, staggered, line = _shared_layout(labels, cell, gutter)
    return line * (2 if staggered else 1) + 3


def column_header(labels, cell, width, gutter=GUTTER, margin=None, style="shared"):
    """A white uint8 strip [H, width, 3] naming the columns (left to right) of a `tile_grid` with cells `cell` px
    wide, in black text of one of `HEADER_STYLES`."""
    _check_style(style)
    margin = gutter if margin is None else margin
    height = header_height(labels, cell, gutter, style)
    strip = np.full((height, width, 3), 255, np.uint8)
    if style == "fixed":
        for column, label in enumerate(labels):
            left = margin + column * (cell + gutter) + 2
            cv2.putText(strip, str(label)[:_FIXED_CHARACTERS], (left, _FIXED_BASELINE), _FONT, _FIXED_SCALE,
                        (0, 0, 0), 1, cv2.LINE_AA)
        return strip
    if style == "each":
        for column, label in enumerate(labels):
            (w0, h0), _ = cv2.getTextSize(label, _FONT, 1.0, 1)
            scale = min(0.75 * height / h0, 0.92 * cell / w0)
            (w, h), _ = cv2.getTextSize(label, _FONT, scale, 1)
            left = margin + column * (cell + gutter) + max(0, (cell - w) // 2)
            cv2.putText(strip, label, (left, (height + h) // 2), _FONT, scale, (0, 0, 0), 1, cv2.LINE_AA)
        return strip
    scale, staggered, line = _shared_layout(labels, cell, gutter)
    text_height = cv2.getTextSize("Ag", _FONT, scale, 1)[0][1]
    for column, (label, centre) in enumerate(zip(labels, cell_centres(len(labels), cell, gutter, margin))):
        text_width = cv2.getTextSize(label, _FONT, scale, 1)[0][0]
        left = int(np.clip(round(centre - text_width / 2.0), 0, max(width - text_width, 0)))
        top = 2 + text_height + (line if staggered and column % 2 else 0)
        cv2.putText(strip, label, (left, top), _FONT, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return strip


def with_column_labels(grid, labels, cell, gutter=GUTTER, margin=None, style="shared"):
    """`grid` (a uint8 `tile_grid` with cells `cell` px wide) under a `column_header` naming its columns."""
    return np.concatenate([column_header(labels, cell, grid.shape[1], gutter, margin, style), grid], axis=0)
