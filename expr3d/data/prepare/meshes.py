# Over 400 lines: the OBJ and PLY readers and writers share one Mesh, its checks and the vectorised number parsing.
"""Vectorised readers for the triangle meshes face reconstruction tools write: Wavefront OBJ and PLY (ASCII/binary).

Only what depth rasterisation needs is read: vertex positions, triangle indices (polygons are fan-triangulated) and,
when the file has them, per-vertex normals and colours. Extreme 3D, 3DDFA-V2 and DECA write OBJ (`v x y z [r g b]`,
`f a b c` or `f a/t/n ...`) or PLY (`element vertex`, `element face` with `property list uchar int vertex_indices`).

Why not trimesh: it would be a new dependency for ~200 lines of parsing; it also merges vertices and repairs meshes by
default (`process=True`), which would silently change what the reconstruction tool wrote. Errors here name the file
and the line or element at fault.

Example:
    mesh = read_mesh("meshes/img_001.obj")
    mesh.vertices.shape, mesh.faces.shape  # (N, 3) float64, (F, 3) int64
"""
import dataclasses
import os
import re
import warnings

import numpy as np


class MeshError(ValueError):
    """A mesh file could not be read; the message names the file and what is wrong."""


@dataclasses.dataclass
class Mesh:
    """A triangle mesh as read from disk.

    Args:
        vertices: float64 [N, 3].
        faces: int64 [F, 3] 0-based vertex indices.
        normals: float64 [N, 3] per-vertex normals from the file, or None.
        colors: float64 [N, 3] per-vertex colours in [0, 1] from the file, or None.
    """

    vertices: np.ndarray
    faces: np.ndarray
    normals: np.ndarray | None = None
    colors: np.ndarray | None = None


MESH_EXTENSIONS = (".obj", ".ply")


def read_mesh(path):
    """Read an OBJ or PLY file (chosen by extension) and check indices; raises MeshError naming the file."""
    ext = os.path.splitext(path)[1].lower()
    try:
        if ext == ".obj":
            mesh = read_obj(path)
        elif ext == ".ply":
            mesh = read_ply(path)
        else:
            raise MeshError(f"{path}: unsupported mesh extension {ext!r} (expected one of {MESH_EXTENSIONS})")
    except MeshError:
        raise
    except (ValueError, IndexError, UnicodeDecodeError) as error:
        raise MeshError(f"{path}: malformed mesh ({error})") from None
    _check(mesh, path)
    return mesh


def _check(mesh, path):
    if mesh.vertices.ndim != 2 or mesh.vertices.shape[1] != 3 or len(mesh.vertices) == 0:
        raise MeshError(f"{path}: no vertices")
    if len(mesh.faces) == 0:
        raise MeshError(f"{path}: no faces (a point cloud cannot be rasterised)")
    if mesh.faces.min() < 0 or mesh.faces.max() >= len(mesh.vertices):
        raise MeshError(f"{path}: face indices span [{mesh.faces.min()}, {mesh.faces.max()}] but the mesh has "
                        f"{len(mesh.vertices)} vertices")
    if not np.all(np.isfinite(mesh.vertices)):
        bad = int(np.count_nonzero(~np.isfinite(mesh.vertices).all(axis=1)))
        raise MeshError(f"{path}: {bad} vertices have NaN or inf coordinates")


def _fan(polygons_by_size):
    """Fan-triangulate {n: int array [P, n]} into [F, 3]."""
    triangles = []
    for size, polygons in sorted(polygons_by_size.items()):
        if size < 3:
            raise MeshError(f"a face has {size} vertices (need at least 3)")
        for k in range(1, size - 1):  # fan triangles per polygon size, vectorised over polygons
            triangles.append(np.stack([polygons[:, 0], polygons[:, k], polygons[:, k + 1]], axis=-1))
    return np.concatenate(triangles) if triangles else np.zeros((0, 3), np.int64)


_SLASH_RE = re.compile(rb"/[^\s]*")
_V_RE = re.compile(rb"^v[ \t]+([^\n]*)", re.M)
_VN_RE = re.compile(rb"^vn[ \t]+([^\n]*)", re.M)
_F_RE = re.compile(rb"^f[ \t]+([^\n]*)", re.M)


def _numbers(lines, dtype=np.float64):
    """All whitespace-separated numbers of `lines` (bytes) parsed in C; None if any token is not a number."""
    text = b"\n".join(lines)
    if dtype == np.float64:
        try:  # bytes tokens -> float64 is parsed in C and ~2x faster than np.fromstring for floats
            return np.array(text.split(), dtype=np.float64)
        except ValueError:
            return None
    if not text.strip():
        return np.zeros(0, dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # numpy warns (not raises) on a bad token
        try:
            return np.fromstring(text, dtype=dtype, sep=" ")
        except (ValueError, DeprecationWarning):
            return None


def _line_blocks(data):
    """Contiguous byte blocks of the `v`, `vn` and `f` lines (keyword letters blanked), found with numpy on the raw
    bytes; a kind whose lines are not contiguous (interleaved groups, ...) maps to None and is read by regex."""
    arr = np.frombuffer(data, np.uint8)
    breaks = np.flatnonzero(arr == 10)
    starts = np.concatenate([[0], breaks + 1])
    ends = np.concatenate([breaks, [len(data)]])
    keep = starts < ends
    starts, ends = starts[keep], ends[keep]
    c0 = arr[starts]
    c1 = arr[np.minimum(starts + 1, len(arr) - 1)]
    c2 = arr[np.minimum(starts + 2, len(arr) - 1)]
    blank = (c1 == 32) | (c1 == 9)
    kinds = {"v": (c0 == ord("v")) & blank, "f": (c0 == ord("f")) & blank,
             "vn": (c0 == ord("v")) & (c1 == ord("n")) & ((c2 == 32) | (c2 == 9))}
    blocks = {}
    for kind, mask in kinds.items():  # three line kinds
        rows = np.flatnonzero(mask)
        if rows.size == 0:
            blocks[kind] = (b"", 0)
        elif rows[-1] - rows[0] + 1 == rows.size:
            text = data[starts[rows[0]]:ends[rows[-1]]]
            # Numbers never contain the letters v, n or f, so blanking them leaves only the values.
            blocks[kind] = (text.replace(b"v", b" ").replace(b"n", b" ") if kind == "vn" else
                            text.replace(kind.encode(), b" "), rows.size)
        else:
            blocks[kind] = None
    return blocks


def read_obj(path):
    """Wavefront OBJ: `v` (optionally with r g b), `vn` (used when there is one per vertex), `f` (any polygon size,
    `a/b/c` forms, negative relative indices)."""
    with open(path, "rb") as handle:
        data = handle.read().replace(b"\r", b"")
    blocks = _line_blocks(data)
    v_block = blocks["v"] if blocks["v"] is not None else (b"\n".join(_V_RE.findall(data)), None)
    v_lines = None
    if v_block[1] is None:
        v_lines = _V_RE.findall(data)
        v_block = (b"\n".join(v_lines), len(v_lines))
    text, n = v_block
    if n == 0:
        raise MeshError(f"{path}: no 'v' lines (is this an OBJ file?)")
    values = _numbers([text])
    colors = None
    if values is not None and values.size == 3 * n:
        vertices = values.reshape(n, 3)
    elif values is not None and values.size == 6 * n:
        table = values.reshape(n, 6)
        vertices, colors = table[:, :3], table[:, 3:]
        if colors.max() > 1.0:  # some writers store 0-255
            colors = colors / 255.0
    else:  # mixed widths (e.g. "v x y z w" on some lines) or bad numbers: parse line by line to name the line
        vertices = _rows(v_lines or _V_RE.findall(data), 3, path, "vertex")
    normals = None
    vn_block = blocks["vn"]
    if vn_block is None:
        vn_lines = _VN_RE.findall(data)
        vn_block = (b"\n".join(vn_lines), len(vn_lines))
    if vn_block[1] == n:
        parsed = _numbers([vn_block[0]])
        normals = parsed.reshape(n, 3) if parsed is not None and parsed.size == 3 * n else None
    faces = np.zeros((0, 3), np.int64)
    f_block = blocks["f"]
    if f_block is None:
        f_lines = _F_RE.findall(data)
        f_block = (b"\n".join(f_lines), len(f_lines))
    text, m = f_block
    if m:
        if b"/" in text:
            text = _SLASH_RE.sub(b"", text)
        flat = _numbers([text], np.int64)
        if flat is not None and flat.size == 3 * m and flat.min() > 0:
            faces = flat.reshape(m, 3) - 1
        elif flat is not None and flat.size == 4 * m and flat.min() > 0:
            faces = _fan({4: flat.reshape(m, 4) - 1})
        else:  # mixed polygon sizes or relative (negative) indices
            faces = _obj_faces_slow(data, path)
    return Mesh(vertices=vertices, faces=faces, normals=normals, colors=colors)


def _rows(lines, count, path, what):
    rows = [line.split()[:count] for line in lines]  # per-line fallback for irregular files
    for number, row in enumerate(rows, start=1):  # find the first bad line to name it
        try:
            if len(row) != count:
                raise ValueError
            [float(v) for v in row]
        except ValueError:
            raise MeshError(f"{path}: {what} #{number} is malformed: {lines[number - 1][:80]!r}") from None
    return np.array(rows, dtype=np.float64)


def _obj_faces_slow(data, path):
    """Faces of any polygon size and negative (relative) indices: a line-by-line pass."""
    vertices_so_far = 0
    stripped, before = [], []
    for line in data.split(b"\n"):  # irregular OBJ files only
        if line.startswith(b"v ") or line.startswith(b"v\t"):
            vertices_so_far += 1
        elif line.startswith(b"f ") or line.startswith(b"f\t"):
            stripped.append(_SLASH_RE.sub(b"", line).split()[1:])
            before.append(vertices_so_far)
    sizes = np.array([len(row) for row in stripped])
    before = np.array(before)
    polygons_by_size = {}
    for size in np.unique(sizes):  # one vectorised block per polygon size
        rows = np.flatnonzero(sizes == size)
        try:
            index = np.array([[int(t) for t in stripped[r]] for r in rows], dtype=np.int64)
        except ValueError:
            raise MeshError(f"{path}: a face line has a non-integer vertex index") from None
        # OBJ is 1-based; negative indices count back from the vertices defined so far.
        index = np.where(index > 0, index - 1, before[rows, None] + index)
        polygons_by_size[int(size)] = index
    return _fan(polygons_by_size)


_PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2", "ushort": "u2",
    "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4", "float": "f4", "float32": "f4",
    "double": "f8", "float64": "f8",
}


def _ply_header(data, path):
    end = data.find(b"end_header")
    if not data.startswith(b"ply") or end < 0:
        raise MeshError(f"{path}: not a PLY file (missing 'ply' magic or 'end_header')")
    newline = data.find(b"\n", end)
    body_start = newline + 1 if newline >= 0 else len(data)
    header = data[:end].decode("ascii", errors="replace").splitlines()
    fmt = None
    elements = []  # [name, count, [(prop_name, type) or (prop_name, ("list", count_type, item_type))]]
    for line in header[1:]:
        words = line.split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        if words[0] == "format":
            fmt = words[1]
        elif words[0] == "element":
            elements.append([words[1], int(words[2]), []])
        elif words[0] == "property":
            if not elements:
                raise MeshError(f"{path}: PLY property before any element")
            if words[1] == "list":
                kinds = (words[2], words[3])
                if any(k not in _PLY_TYPES for k in kinds):
                    raise MeshError(f"{path}: unknown PLY list type {kinds}")
                elements[-1][2].append((words[4], ("list", _PLY_TYPES[words[2]], _PLY_TYPES[words[3]])))
            else:
                if words[1] not in _PLY_TYPES:
                    raise MeshError(f"{path}: unknown PLY property type {words[1]!r}")
                elements[-1][2].append((words[2], _PLY_TYPES[words[1]]))
    if fmt not in ("ascii", "binary_little_endian", "binary_big_endian"):
        raise MeshError(f"{path}: unsupported PLY format {fmt!r}")
    return fmt, elements, body_start


def _vertex_fields(table, names, path):
    def column(*candidates):
        for name in candidates:
            if name in names:
                return table[name].astype(np.float64)
        return None

    xyz = [column(axis) for axis in "xyz"]
    if any(c is None for c in xyz):
        raise MeshError(f"{path}: PLY vertex element lacks x, y or z")
    vertices = np.stack(xyz, axis=-1)
    normal = [column(axis) for axis in ("nx", "ny", "nz")]
    normals = np.stack(normal, axis=-1) if all(c is not None for c in normal) else None
    color = [column(c, c[0]) for c in ("red", "green", "blue")]
    colors = None
    if all(c is not None for c in color):
        colors = np.stack(color, axis=-1)
        if colors.max() > 1.0:
            colors = colors / 255.0
    return vertices, normals, colors


def read_ply(path):
    """PLY in ASCII or binary (either endianness) with `vertex` and `face` elements; other elements are skipped."""
    with open(path, "rb") as handle:
        data = handle.read()
    fmt, elements, offset = _ply_header(data, path)
    if fmt == "ascii":
        return _read_ply_ascii(data[offset:], elements, path)
    endian = "<" if fmt == "binary_little_endian" else ">"
    vertices = normals = colors = None
    faces = np.zeros((0, 3), np.int64)
    for name, count, props in elements:
        has_list = any(isinstance(kind, tuple) for _, kind in props)
        if not has_list:
            dtype = np.dtype([(p, endian + kind) for p, kind in props])
            size = dtype.itemsize * count
            if offset + size > len(data):
                raise MeshError(f"{path}: PLY element '{name}' is truncated")
            table = np.frombuffer(data, dtype, count, offset)
            offset += size
            if name == "vertex":
                vertices, normals, colors = _vertex_fields(table, dtype.names, path)
            continue
        # Elements with a list: fast path when every list has the same length as the first (all triangles).
        first = _first_list_length(data, offset, props, endian)
        fields = []
        for p, kind in props:
            if isinstance(kind, tuple):
                fields.append((p + "__n", endian + kind[1]))
                fields.append((p, endian + kind[2], (first,)))
            else:
                fields.append((p, endian + kind))
        dtype = np.dtype(fields)
        size = dtype.itemsize * count
        fixed = offset + size <= len(data)
        if fixed:
            table = np.frombuffer(data, dtype, count, offset)
            list_names = [p for p, kind in props if isinstance(kind, tuple)]
            fixed = all(np.all(table[p + "__n"] == first) for p in list_names)
        if fixed:
            offset += size
            if name == "face":
                index_name = _face_index_name(props, path)
                faces = _fan({first: table[index_name].astype(np.int64)})
            continue
        table_lists, offset = _read_variable_lists(data, offset, count, props, endian, path, name)
        if name == "face":
            index_name = _face_index_name(props, path)
            by_size = {}
            for polygon in table_lists[index_name]:  # rare slow path: mixed polygon sizes
                by_size.setdefault(len(polygon), []).append(polygon)
            faces = _fan({size: np.array(polys, np.int64) for size, polys in by_size.items()})
    if vertices is None:
        raise MeshError(f"{path}: PLY has no 'vertex' element")
    return Mesh(vertices=vertices, faces=faces, normals=normals, colors=colors)


def _face_index_name(props, path):
    for p, kind in props:
        if isinstance(kind, tuple) and p in ("vertex_indices", "vertex_index"):
            return p
    raise MeshError(f"{path}: PLY face element has no 'vertex_indices' list")


def _first_list_length(data, offset, props, endian):
    for p, kind in props:
        if isinstance(kind, tuple):
            return int(np.frombuffer(data, endian + kind[1], 1, offset)[0]) if offset < len(data) else 0
        offset += np.dtype(kind).itemsize
    return 0


def _read_variable_lists(data, offset, count, props, endian, path, name):
    lists = {p: [] for p, kind in props if isinstance(kind, tuple)}
    for _ in range(count):  # per-element walk, only for polygon soups of mixed sizes
        for p, kind in props:
            if isinstance(kind, tuple):
                n_type = np.dtype(endian + kind[1])
                if offset + n_type.itemsize > len(data):
                    raise MeshError(f"{path}: PLY element '{name}' is truncated")
                n = int(np.frombuffer(data, n_type, 1, offset)[0])
                offset += n_type.itemsize
                item = np.dtype(endian + kind[2])
                if offset + n * item.itemsize > len(data):
                    raise MeshError(f"{path}: PLY element '{name}' is truncated")
                lists[p].append(np.frombuffer(data, item, n, offset).astype(np.int64))
                offset += n * item.itemsize
            else:
                offset += np.dtype(kind).itemsize
    return lists, offset


def _read_ply_ascii(body, elements, path):
    lines = body.decode("ascii", errors="replace").splitlines()
    lines = [line for line in lines if line.strip()]
    cursor = 0
    vertices = normals = colors = None
    faces = np.zeros((0, 3), np.int64)
    for name, count, props in elements:
        block = lines[cursor:cursor + count]
        if len(block) < count:
            raise MeshError(f"{path}: PLY element '{name}' has {len(block)} lines, header says {count}")
        cursor += count
        has_list = any(isinstance(kind, tuple) for _, kind in props)
        if not has_list:
            try:
                table = np.array([line.split()[:len(props)] for line in block], dtype=np.float64)
            except ValueError:
                raise MeshError(f"{path}: PLY element '{name}' has a malformed line") from None
            if name == "vertex":
                if table.ndim != 2 or table.shape[1] != len(props):
                    raise MeshError(f"{path}: PLY vertex lines have fewer than {len(props)} values")
                names = [p for p, _ in props]
                vertices, normals, colors = _vertex_fields({n: table[:, i] for i, n in enumerate(names)}, names,
                                                           path)
            continue
        if name == "face":
            if props[0][0] not in ("vertex_indices", "vertex_index") or not isinstance(props[0][1], tuple):
                raise MeshError(f"{path}: ASCII PLY face element must start with the vertex_indices list")
            rows = [line.split() for line in block]
            by_size = {}
            for row in rows:  # per-face tokenising; ASCII PLY is the small-file case
                n = int(row[0])
                by_size.setdefault(n, []).append(row[1:n + 1])
            faces = _fan({n: np.array(polys, np.int64) for n, polys in by_size.items()})
    if vertices is None:
        raise MeshError(f"{path}: PLY has no 'vertex' element")
    return Mesh(vertices=vertices, faces=faces, normals=normals, colors=colors)


def write_obj(path, vertices, faces, colors=None):
    """Write a minimal OBJ (used by tests and benchmarks to make fixtures)."""
    vertices = np.asarray(vertices, np.float64)
    faces = np.asarray(faces, np.int64) + 1
    if colors is not None:
        v = np.concatenate([vertices, np.asarray(colors, np.float64)], axis=1)
        v_text = "\n".join("v " + " ".join(f"{x:.6f}" for x in row) for row in v)
    else:
        v_text = "\n".join(f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in vertices)
    f_text = "\n".join(f"f {a} {b} {c}" for a, b, c in faces)
    with open(path, "w", encoding="ascii") as handle:
        handle.write(v_text + "\n" + f_text + "\n")


def write_ply(path, vertices, faces, binary=True):
    """Write a minimal PLY (binary little-endian or ASCII) with float vertices and uchar/int triangle lists."""
    vertices = np.asarray(vertices, np.float32)
    faces = np.asarray(faces, np.int32)
    header = (f"ply\nformat {'binary_little_endian' if binary else 'ascii'} 1.0\ncomment expr3d\n"
              f"element vertex {len(vertices)}\nproperty float x\nproperty float y\nproperty float z\n"
              f"element face {len(faces)}\nproperty list uchar int vertex_indices\nend_header\n")
    with open(path, "wb") as handle:
        handle.write(header.encode("ascii"))
        if binary:
            handle.write(vertices.astype("<f4").tobytes())
            table = np.zeros(len(faces), np.dtype([("n", "u1"), ("i", "<i4", (3,))]))
            table["n"] = 3
            table["i"] = faces
            handle.write(table.tobytes())
        else:
            handle.write("\n".join(f"{x} {y} {z}" for x, y, z in vertices).encode() + b"\n")
            handle.write("\n".join(f"3 {a} {b} {c}" for a, b, c in faces).encode() + b"\n")
