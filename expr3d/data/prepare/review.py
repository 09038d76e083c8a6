"""The manual pass the paper did by hand: contact sheets (RGB | depth | normals, with id and score) and a plain-text
reject list the user edits and passes back with --reject_list.

Review ids look like `train-00003/017` (shard, position of the face in the shard's plan); they are stable across
reruns of the same configuration, so the reject list may name faces by review id or by key.
"""
import hashlib
import os

import cv2
import numpy as np

from expr3d import storage
from expr3d.imaging.grid import tile_grid
from expr3d.imaging.pixels import to_uint8
from expr3d.labels import EXPRESSIONS

LABEL_HEIGHT = 14


def review_id(split, index, position):
    return f"{split}-{index:05d}/{position:03d}"


def depth_image(depth, mask):
    """uint8 [H, W] rendering of depth: nearest white, farthest dark grey, background black."""
    out = np.zeros(depth.shape, np.uint8)
    if mask.any():
        values = depth[mask]
        lo, hi = float(values.min()), float(values.max())
        t = (hi - depth) / max(hi - lo, 1e-12)
        out[mask] = np.clip(55 + 200 * t[mask], 0, 255).astype(np.uint8)
    return out


def normals_image(normals, mask):
    """uint8 [H, W, 3] RGB rendering of normals ((n + 1) / 2), black background."""
    out = to_uint8(normals, rounding="truncate")
    out[~mask] = 0
    return out


def tile(rgb, depth, mask, normals, label, size=96, rejected=False):
    """One face as RGB | depth | normals thumbnails with a label line below (red when auto-rejected)."""
    def thumb(image):
        return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)

    strip = np.concatenate([thumb(rgb), thumb(np.repeat(depth_image(depth, mask)[..., None], 3, axis=2)),
                            thumb(normals_image(normals, mask))], axis=1)
    bar = np.full((LABEL_HEIGHT, strip.shape[1], 3), (90, 20, 20) if rejected else (30, 30, 30), np.uint8)
    cv2.putText(bar, label, (3, LABEL_HEIGHT - 4), cv2.FONT_HERSHEY_PLAIN, 0.8, (255, 255, 255), 1, cv2.LINE_AA)
    return np.concatenate([strip, bar], axis=0)


def contact_sheets(tiles, columns=4, rows=8):
    """Pack tiles (same shape) into sheets of columns x rows; return a list of uint8 RGB images."""
    per_sheet = columns * rows
    sheets = []
    for start in range(0, len(tiles), per_sheet):  # one sheet per page of tiles
        page = tiles[start:start + per_sheet]
        grid_rows = [page[k:k + columns] for k in range(0, len(page), columns)]
        sheets.append(tile_grid(grid_rows, gutter=2, margin=0, columns=columns))
    return sheets


def write_png(path, rgb):
    ok, buffer = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise IOError(f"PNG encoding failed for {path}")
    storage.atomic_write_bytes(path, buffer.tobytes())


def read_reject_list(path):
    """Entries (keys or review ids) of a reject list: first token of each line, '#' starts a comment."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--reject_list {path}: no such file")
    entries = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            text = line.split("#", 1)[0].strip()
            if text:
                entries.append(text.split()[0])
    return entries


TEMPLATE_HEADER = """\
# expr3d prepare: reject list.
# Look at the contact sheets in this folder (RGB | depth | normals; label = review id, score, class), then
# UNCOMMENT (delete the leading '# ') the line of every face to reject, or add a line with its key or review id.
# Rerun the same command with --reject_list={path}: only the shards holding changed entries are rebuilt.
# Faces are listed worst score first. Auto-rejected faces (quality thresholds) are already excluded; they are
# listed at the end for reference.
"""


def reject_template(path, written, auto_rejected):
    """Text of the editable reject list: every written face commented out (worst first), then the auto-rejected."""
    lines = [TEMPLATE_HEADER.format(path=path)]
    for record in sorted(written, key=lambda r: (r["scores"]["score"], r["review_id"])):
        lines.append(f"# {record['review_id']}  {record['key']}  score={record['scores']['score']:.3f}  "
                     f"{EXPRESSIONS[record['expression']]}\n")
    if auto_rejected:
        lines.append("#\n# --- auto-rejected (already excluded) ---\n")
        for record in sorted(auto_rejected, key=lambda r: r["review_id"]):
            lines.append(f"## {record['review_id']}  {record['key']}  {record['detail']}\n")
    return "".join(lines)


def sha256_file(path):
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()
