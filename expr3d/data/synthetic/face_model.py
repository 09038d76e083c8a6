# Over 400 lines: one head model; identity parameters, topology and shape height fields are tuned against each other.
"""A parametric 3D head: identity parameters, the head mesh and its expression-dependent shape.

The head is a closed latitude/longitude grid over a deformed ellipsoid (azimuth ``theta`` from the front toward the
subject's left, elevation ``phi``), denser on the face. Each vertex keeps its rest coordinates on the unit sphere;
the frontal face coordinates used by every feature are ``u = sin(theta) cos(phi)`` and ``v = V_SCALE * sin(phi)``
(face units, 1 unit ~ 7.5 cm, eyes near v = 0, lip line at ``action_units.V_LIP``).

Identity = a smooth shape (ellipsoid radii, jaw taper, chin) + feature height fields along the normal (brow ridge,
eye sockets and eyeballs, nose, cheekbones, lips, chin, ears, hair volume) + appearance (skin tone and texture,
hair, eyes, lips), all drawn by ``sample_identity``. Expressions add ``action_units.displacement``; the grid row
on the lip line is split (a second copy of its central vertices belongs to the jaw side) so the mouth opens into
a real hole behind which a mouth-cavity mesh (dark throat, teeth, tongue) sits.

The topology depends on the image size only (``topology(image_size)``, cached), so every identity and expression
of one size shares it.
"""
import dataclasses
import functools

import cv2
import numpy as np

from expr3d.data.synthetic import action_units
from expr3d.data.synthetic.action_units import V_LIP

V_SCALE = 1.45  # v = V_SCALE * sin(phi): frontal height in face units
METRES_PER_UNIT = 0.075

# Triangle materials (per triangle; the renderer shades each differently).
HEAD, NECK, HAIR, MOUTH, CLOTHES = 0, 1, 2, 3, 4


def _g(x, c, s):
    return np.exp(-0.5 * ((x - c) / s) ** 2)


def _smoothstep(e0, e1, x):
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def srgb_to_linear(c):
    c = np.asarray(c, np.float64)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


# --- identity -----------------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Identity:
    """Shape and appearance of one synthetic person (all lengths in face units, colours linear RGB).

    Build with `sample_identity(rng)`; fields are plain floats/arrays so identities pickle across processes.
    """

    head_width: float
    head_height: float
    head_depth: float
    jaw_width: float
    chin_width: float
    chin_prominence: float
    cheekbones: float
    brow_ridge: float
    nose_length: float
    nose_width: float
    nose_bridge: float
    nose_tip: float
    eye_x: float
    eye_v: float
    eye_half_width: float
    eye_tilt: float
    mouth_half_width: float
    lip_fullness: float
    brow_v: float
    brow_thickness: float
    brow_arch: float
    ear_size: float
    skin: np.ndarray
    blotch_amount: float
    freckles: float
    blush: float
    lip_color: np.ndarray
    hair_color: np.ndarray
    brow_color: np.ndarray
    hair_volume: float
    hairline_v: float
    temple_recession: float
    long_hair: bool
    bald: bool
    beard: float
    iris_color: np.ndarray
    clothes_color: np.ndarray
    texture_seed: int

    @property
    def nose_tip_v(self):
        return -0.3 * self.nose_length

    @functools.cached_property
    def textures(self):
        """Identity textures over (theta, phi): low-frequency blotches, freckles, hair strands."""
        rng = np.random.default_rng(self.texture_seed)
        blotch = cv2.resize(rng.normal(size=(12, 24)).astype(np.float32), (128, 64), interpolation=cv2.INTER_CUBIC)
        blotch += 0.5 * cv2.resize(rng.normal(size=(24, 48)).astype(np.float32), (128, 64),
                                   interpolation=cv2.INTER_CUBIC)
        freckle = np.zeros((128, 256), np.float32)
        if self.freckles > 0:
            count = int(300 * self.freckles)
            # Freckles cluster on the nose and cheeks: theta near 0, just below the eyes.
            cols = (128 + rng.normal(0, 22, count)).astype(int)
            rows = (64 + rng.normal(-4, 9, count)).astype(int)
            for r, c in zip(rows, cols):
                cv2.circle(freckle, (int(c), int(r)), 1, float(rng.uniform(0.4, 1.0)), -1)
            freckle = cv2.GaussianBlur(freckle, (0, 0), 0.6)
        strands = cv2.resize(rng.normal(size=(16, 256)).astype(np.float32), (256, 128), interpolation=cv2.INTER_LINEAR)
        strands = 0.6 * strands + 0.4 * cv2.resize(rng.normal(size=(8, 64)).astype(np.float32), (256, 128),
                                                   interpolation=cv2.INTER_CUBIC)
        return {"blotch": blotch, "freckle": freckle, "strands": strands}


_SKIN_SRGB = np.array([[0.96, 0.80, 0.70], [0.88, 0.68, 0.55], [0.74, 0.53, 0.39], [0.56, 0.38, 0.26],
                       [0.38, 0.25, 0.17], [0.26, 0.17, 0.12]])
_HAIR_SRGB = np.array([[0.06, 0.05, 0.05], [0.16, 0.10, 0.07], [0.30, 0.19, 0.11], [0.50, 0.36, 0.22],
                       [0.78, 0.64, 0.42], [0.55, 0.24, 0.10], [0.62, 0.60, 0.58], [0.10, 0.08, 0.07]])
_HAIR_P = np.array([0.22, 0.22, 0.16, 0.1, 0.1, 0.06, 0.06, 0.08])
_IRIS_SRGB = np.array([[0.30, 0.18, 0.09], [0.16, 0.10, 0.06], [0.40, 0.32, 0.15], [0.25, 0.40, 0.25],
                       [0.28, 0.45, 0.65], [0.45, 0.50, 0.55]])
_IRIS_P = np.array([0.35, 0.25, 0.12, 0.08, 0.14, 0.06])


def sample_identity(rng):
    """Draw a random Identity from a numpy Generator."""
    u = rng.uniform
    masculinity = u()
    tone = u() ** 1.1 * (len(_SKIN_SRGB) - 1)
    lo = int(np.floor(tone))
    hi = min(lo + 1, len(_SKIN_SRGB) - 1)
    skin_srgb = _SKIN_SRGB[lo] + (tone - lo) * (_SKIN_SRGB[hi] - _SKIN_SRGB[lo])
    skin_srgb = np.clip(skin_srgb * u(0.93, 1.07) + rng.normal(0, 0.015, 3), 0.05, 1.0)
    skin = srgb_to_linear(skin_srgb)
    dark = tone / (len(_SKIN_SRGB) - 1)
    hair_index = rng.choice(len(_HAIR_SRGB), p=_HAIR_P if dark < 0.5 else np.array([0.55, 0.3, 0.1, 0.0, 0.0, 0.0,
                                                                                     0.05, 0.0]))
    hair_srgb = np.clip(_HAIR_SRGB[hair_index] * u(0.85, 1.15), 0.02, 1.0)
    iris_index = rng.choice(len(_IRIS_SRGB), p=_IRIS_P if dark < 0.4 else np.array([0.5, 0.5, 0, 0, 0, 0]))
    lip_srgb = np.clip(skin_srgb * np.array([0.82, 0.52, 0.54]) * u(0.85, 1.0) + np.array([0.03, 0.0, 0.01]), 0, 1)
    clothes_srgb = rng.uniform(0.05, 0.85, 3) * u(0.5, 1.0)
    long_hair = u() < 0.55 * (1.0 - masculinity) + 0.08
    bald = (not long_hair) and u() < 0.12 * masculinity
    return Identity(
        head_width=u(0.92, 1.06) + 0.03 * masculinity,
        head_height=u(1.32, 1.46),
        head_depth=u(1.15, 1.32),
        jaw_width=u(0.8, 0.92) + 0.07 * masculinity,
        chin_width=u(0.5, 0.62) + 0.08 * masculinity,
        chin_prominence=u(0.02, 0.14),
        cheekbones=u(0.03, 0.12),
        brow_ridge=u(0.02, 0.06) + 0.05 * masculinity,
        nose_length=u(0.9, 1.12),
        nose_width=u(0.85, 1.25),
        nose_bridge=u(0.12, 0.26),
        nose_tip=u(0.30, 0.42),
        eye_x=u(0.36, 0.41),
        eye_v=u(-0.03, 0.05),
        eye_half_width=0.205 * u(0.9, 1.1),
        eye_tilt=u(-0.02, 0.05),
        mouth_half_width=u(0.33, 0.42),
        lip_fullness=u(0.6, 1.35) - 0.2 * masculinity,
        brow_v=u(0.27, 0.34),
        brow_thickness=u(0.035, 0.055) + 0.02 * masculinity,
        brow_arch=u(0.0, 0.05),
        ear_size=u(0.85, 1.15),
        skin=skin,
        blotch_amount=u(0.03, 0.09),
        freckles=u(0.3, 1.0) if (dark < 0.3 and u() < 0.3) else 0.0,
        blush=u(0.0, 0.25) * (1.0 - 0.7 * dark),
        lip_color=srgb_to_linear(lip_srgb),
        hair_color=srgb_to_linear(hair_srgb),
        # Brows are darker than the skin even for blond or grey hair (or the face loses its structure).
        brow_color=srgb_to_linear(np.minimum(hair_srgb * 0.75, skin_srgb * u(0.35, 0.5))),
        hair_volume=u(0.03, 0.16) + (0.06 if long_hair else 0.0),
        hairline_v=u(0.66, 0.86) + 0.06 * masculinity * u(),
        temple_recession=u(0.0, 0.12) * masculinity,
        long_hair=bool(long_hair),
        bald=bool(bald),
        beard=float(u(0.25, 0.9)) if (masculinity > 0.6 and u() < 0.35) else 0.0,
        iris_color=srgb_to_linear(_IRIS_SRGB[iris_index] * u(0.85, 1.15)),
        clothes_color=srgb_to_linear(clothes_srgb),
        texture_seed=int(rng.integers(2 ** 31)),
    )


# --- eye opening (shared by geometry and shading) -----------------------------------------------------------------

def eye_frame(u, v, face):
    """Per point: (t, upper_lid_v, lower_lid_v) of the eye on the point's side; t in [-1, 1] across the eye."""
    side = np.where(u >= 0, 1.0, -1.0)
    t = (u - side * face.eye_x) / face.eye_half_width
    tc = np.clip(t, -1.0, 1.0)
    base = face.eye_v + face.eye_tilt * tc * side
    return t, base, side


def lid_curves(t, base, opening_upper, opening_lower, face):
    """Upper and lower lid heights at eye coordinate t (arrays) for the given opening factors."""
    tc = np.clip(t, -1.0, 1.0)
    shape = np.clip(1.0 - tc ** 2, 0.0, 1.0)
    ew = face.eye_half_width
    upper = base + 0.48 * ew * opening_upper * shape ** 0.75
    lower = base - 0.3 * ew * opening_lower * shape ** 0.9
    return upper, lower


def per_side(values_left, values_right, u):
    return np.where(u >= 0, values_left, values_right)


# --- topology -----------------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Topology:
    """The head grid of one resolution: rest angles per vertex, triangles, and the lip split."""

    theta: np.ndarray      # [N] rest azimuth of each head vertex
    phi: np.ndarray        # [N] rest elevation
    lower: np.ndarray      # [N] bool: jaw side of the lip split
    faces: np.ndarray      # [F, 3] head triangles (outward, counter-clockwise)
    grid_shape: tuple      # (rows, cols) of the regular part (vertices [0, rows*cols))
    lip_row: int
    split_source: np.ndarray  # [K] grid vertex index each lip-split copy duplicates
    cavity_shape: tuple    # (rows, cols) of the mouth-cavity grid


def _warped_samples(n, lo, hi, centre, width, floor, endpoint):
    x = np.linspace(lo, hi, 4097)
    density = floor + np.exp(-0.5 * ((x - centre) / width) ** 2)
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (density[1:] + density[:-1]) * np.diff(x))])
    cdf /= cdf[-1]
    targets = np.linspace(0.0, 1.0, n + (0 if endpoint else 1))[: n]
    return np.interp(targets, cdf, x)


@functools.lru_cache(maxsize=8)
def topology(image_size):
    """The (cached) head topology for `image_size` pixels: a few thousand triangles at 64 px."""
    cols = max(48, int(round(0.82 * image_size)))
    rows = max(40, int(round(0.68 * image_size)))
    theta = _warped_samples(cols, -np.pi, np.pi, 0.0, 0.75, 0.3, endpoint=False)
    phi = _warped_samples(rows, -1.45, 1.48, -0.15, 0.6, 0.3, endpoint=True)
    phi_lip = np.arcsin(V_LIP / V_SCALE)
    lip_row = int(np.argmin(np.abs(phi - phi_lip)))
    phi[lip_row] = phi_lip
    th, ph = np.meshgrid(theta, phi)  # [rows, cols]
    grid = np.arange(rows * cols).reshape(rows, cols)
    nxt = np.roll(grid, -1, axis=1)
    a, b, c, d = grid[:-1], nxt[:-1], nxt[1:], grid[1:]
    # Two counter-clockwise triangles per cell (outward: +theta x +phi points out of the sphere).
    cell_faces = np.stack([np.stack([a, b, c], -1), np.stack([a, c, d], -1)], axis=2).reshape(-1, 3)
    bottom_pole = rows * cols
    top_pole = bottom_pole + 1
    ring0, ring0n = grid[0], nxt[0]
    ringt, ringtn = grid[-1], nxt[-1]
    bottom = np.stack([np.full(cols, bottom_pole), ring0n, ring0], -1)
    top = np.stack([ringt, ringtn, np.full(cols, top_pole)], -1)
    faces = np.concatenate([cell_faces, bottom, top])
    theta_v = np.concatenate([th.reshape(-1), [0.0, 0.0]])
    phi_v = np.concatenate([ph.reshape(-1), [-np.pi / 2, np.pi / 2]])
    # Split the lip row across the mouth: its central vertices get a jaw-side copy used by the cells below.
    u_lip = np.sin(theta) * np.cos(phi_lip)
    split_cols = np.flatnonzero((np.abs(u_lip) < 0.62) & (np.cos(theta) > 0))
    split_source = grid[lip_row, split_cols]
    copies = len(theta_v) + np.arange(len(split_cols))
    remap = np.arange(len(theta_v) + len(split_cols))
    remap[split_source] = copies
    below = np.zeros(len(faces), bool)
    below[: 2 * (rows - 1) * cols] = np.repeat(np.arange(rows - 1) == lip_row - 1, 2 * cols)
    faces[below] = remap[faces[below]]
    theta_v = np.concatenate([theta_v, theta_v[split_source]])
    phi_v = np.concatenate([phi_v, phi_v[split_source]])
    lower = np.concatenate([(phi_v[: rows * cols + 2] < phi_lip - 1e-9), np.ones(len(split_cols), bool)])
    cavity = (max(10, image_size // 6), max(16, image_size // 3))
    return Topology(theta_v, phi_v, lower, faces.astype(np.int64), (rows, cols), lip_row, split_source, cavity)


# --- shape --------------------------------------------------------------------------------------------------------

def _width_profile(v, face):
    """Horizontal scale of the head at height v: the jaw tapers to the chin."""
    knots_v = np.array([-1.6, -1.3, -1.1, -0.75, -0.3, 0.2, 0.9, 1.6])
    knots_w = np.array([face.chin_width * 0.75, face.chin_width, face.chin_width + 0.35 * (face.jaw_width
                        - face.chin_width), face.jaw_width, 0.97, 1.0, 0.98, 0.92])
    fine_v = np.linspace(-1.6, 1.6, 321)
    fine_w = np.interp(fine_v, knots_v, knots_w)
    fine_w = np.convolve(np.pad(fine_w, 20, mode="edge"), np.hanning(41) / np.hanning(41).sum(), mode="valid")
    return np.interp(v, fine_v, fine_w)


def base_surface(theta, phi, face):
    """Base head surface (before feature heights): positions [N, 3] and unit normals [N, 3]."""
    sy = np.sin(phi)
    v = V_SCALE * sy
    # A rounder (less pointed) cranium: widen the upper latitudes.
    ring = np.cos(phi) ** np.where(phi > 0, 0.8, 1.0)
    sx, cz = np.sin(theta) * ring, np.cos(theta) * ring
    w = _width_profile(v, face)
    # The face is flatter than an ellipsoid: a power < 1 on the front's depth.
    exponent = np.where(v < 0.6, 0.55, 0.55 + 0.3 * _smoothstep(0.6, 1.3, v))
    z = face.head_depth * np.sign(cz) * np.abs(cz) ** np.where(cz > 0, exponent, 1.0)
    y = face.head_height * sy
    x = face.head_width * sx * w
    pos = np.stack([x, y, z], -1)
    normal = np.stack([sx / face.head_width, sy / face.head_height, cz / face.head_depth], -1)
    normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
    return pos, normal


def hair_boundary(abs_theta, face):
    """Lowest v of the hair at azimuth |theta| (front hairline, temples, sideburns, over the ears, nape)."""
    hl = face.hairline_v
    if face.bald:
        knots = [hl + 0.55, hl + 0.55, hl + 0.4, 0.45, 0.45, 0.2, -0.3, -0.4]
    else:
        knots = [hl, hl + 0.02, hl + face.temple_recession, 0.05, 0.32, 0.12, -0.45, -0.55]
    return np.interp(abs_theta, [0.0, 0.35, 0.75, 1.25, 1.5, 1.78, 2.3, np.pi], knots)


def feature_heights(u, v, theta, cz, face, openings):
    """Identity feature heights along the normal (face units), with the lids at `openings`."""
    h = np.zeros_like(u)
    on_face = cz > 0.05
    if on_face.any():
        h[on_face] = _face_heights(u[on_face], v[on_face], cz[on_face], face, openings)
    # Ears (at the sides) and hair volume (everywhere).
    abs_theta = np.abs(theta)
    h += 0.16 * face.ear_size * _g(abs_theta, 1.62, 0.09) * _g(v, -0.12, 0.2 * face.ear_size)
    if face.hair_volume > 0:
        boundary = hair_boundary(abs_theta, face)
        h += face.hair_volume * _smoothstep(boundary, boundary + 0.18, v) * 0.9
    return h


def _face_heights(u, v, cz, face, openings):
    front = _smoothstep(0.05, 0.45, cz)
    au_ = np.abs(u)
    h = np.zeros_like(u)
    ev, vb = face.eye_v, face.brow_v
    # Brow ridge, cheekbones, muzzle, chin.
    h += face.brow_ridge * _g(v, vb - 0.02, 0.08) * (1 - _smoothstep(0.55, 0.85, au_))
    h += face.cheekbones * _g(au_, 0.56, 0.19) * _g(v, ev - 0.17, 0.14)
    h -= 0.05 * _g(au_, 0.5, 0.15) * _g(v, -0.55, 0.15) * (1.3 - face.cheekbones * 6)
    h += 0.11 * _g(u, 0.0, 0.36) * _g(v, V_LIP - 0.05, 0.3)
    h += face.chin_prominence * _g(u, 0.0, 0.24) * _g(v, -1.18, 0.13)
    # Eye sockets, eyeballs and lids.
    t, base, side = eye_frame(u, v, face)
    eye_u = u - side * face.eye_x
    d2 = eye_u ** 2 + (v - ev) ** 2
    h -= 0.11 * np.exp(-0.5 * (eye_u ** 2 / 0.22 ** 2 + (v - ev - 0.03) ** 2 / 0.14 ** 2))
    h += 0.09 * np.exp(-0.5 * d2 / (0.75 * face.eye_half_width) ** 2)
    upper, lower = lid_curves(t, base, per_side(openings[0][0], openings[1][0], u),
                              per_side(openings[0][1], openings[1][1], u), face)
    margin = 0.012
    inside = (_smoothstep(-margin, margin, v - lower) * _smoothstep(-margin, margin, upper - v)
              * _smoothstep(-1.0, -0.9, -np.abs(t)))
    near_eye = _smoothstep(-1.35, -1.0, -np.abs(t)) * _g(v, ev, 0.12)
    h += 0.03 * near_eye * (1.0 - inside)
    h += 0.018 * _g(v, upper + 0.035, 0.018) * near_eye  # the lid fold above the upper lid
    # Nose: a ridge from the bridge to the tip, the tip ball and the wings.
    tip_v = face.nose_tip_v
    top_v = ev + 0.06
    along = np.clip((top_v - v) / (top_v - tip_v), 0.0, None)
    ridge = np.where(v > tip_v, face.nose_bridge + (face.nose_tip - face.nose_bridge) * np.clip(along, 0, 1) ** 1.7,
                     face.nose_tip * np.exp(-((tip_v - v) / 0.055) ** 2))
    ridge *= np.where(v > top_v, np.exp(-((v - top_v) / 0.07) ** 2), 1.0)
    sigma = face.nose_width * (0.05 + 0.045 * np.clip(along, 0, 1.2))
    h += ridge * np.exp(-0.5 * (u / sigma) ** 2)
    h += 0.05 * _g(u, 0.0, 0.055) * _g(v, tip_v + 0.01, 0.045)
    h += 0.15 * _g(au_, 0.1 * face.nose_width, 0.05) * _g(v, tip_v - 0.02, 0.04)
    # Lips, philtrum, the fold under the lower lip.
    h += 0.055 * face.lip_fullness * _g(u, 0.0, face.mouth_half_width * 0.7) * _g(v, V_LIP + 0.045, 0.04)
    h += 0.065 * face.lip_fullness * _g(u, 0.0, face.mouth_half_width * 0.65) * _g(v, V_LIP - 0.055, 0.045)
    h -= 0.018 * _g(u, 0.0, 0.025) * _g(v, V_LIP + 0.14, 0.06)
    h -= 0.025 * _g(u, 0.0, 0.2) * _g(v, V_LIP - 0.17, 0.05)
    return h * front


@dataclasses.dataclass
class Mesh:
    """Triangles in head-local face units with per-vertex attributes for the renderer.

    attributes: [N, 7] = rest unit-sphere point (3; head only), linear RGB (3; non-head parts), occlusion (1).
    material: [F] per-triangle material (HEAD, NECK, HAIR, MOUTH, CLOTHES).
    """

    vertices: np.ndarray
    faces: np.ndarray
    attributes: np.ndarray
    material: np.ndarray


def build_head(face, expression, image_size):
    """Head (+ mouth cavity, neck, hair mass, shoulders) of `face` under `expression` (action_units.Expression)."""
    topo = topology(image_size)
    theta, phi = topo.theta, topo.phi
    sx, sy, cz = np.sin(theta) * np.cos(phi), np.sin(phi), np.cos(theta) * np.cos(phi)
    u, v = sx, V_SCALE * sy
    openings = (action_units.eye_opening(expression.left), action_units.eye_opening(expression.right))
    thin = (action_units.lip_thinning(expression.left), action_units.lip_thinning(expression.right))
    face_t = dataclasses.replace(face, lip_fullness=face.lip_fullness * 0.5 * (thin[0] + thin[1]))
    pos, normal = base_surface(theta, phi, face)
    heights = feature_heights(u, v, theta, cz, face_t, openings)
    front = _smoothstep(-0.1, 0.35, cz)
    disp = np.zeros((len(u), 3))
    moving = front > 0
    disp[moving] = action_units.displacement(u[moving], v[moving], topo.lower[moving], front[moving], face,
                                             expression.left, expression.right)
    verts = pos + heights[:, None] * normal + disp
    occlusion = _occlusion(heights + disp[:, 2], topo)
    attrs = np.zeros((len(verts), 7))
    attrs[:, 0], attrs[:, 1], attrs[:, 2] = sx, sy, cz
    attrs[:, 6] = occlusion
    parts = [Mesh(verts, topo.faces, attrs, np.full(len(topo.faces), HEAD))]
    parts.append(_mouth_cavity(face_t, expression, topo))
    parts.append(_neck(face, image_size))
    if face.long_hair:
        parts.append(_hair_mass(face, image_size))
    parts.append(_shoulders(face, image_size))
    return merge(parts)


def merge(parts):
    offset = 0
    faces = []
    for part in parts:
        faces.append(part.faces + offset)
        offset += len(part.vertices)
    return Mesh(np.concatenate([p.vertices for p in parts]), np.concatenate(faces),
                np.concatenate([p.attributes for p in parts]), np.concatenate([p.material for p in parts]))


def _occlusion(relief, topo):
    """Cheap ambient occlusion: how far a vertex lies below the blurred relief around it (creases, sockets)."""
    rows, cols = topo.grid_shape
    grid = relief[: rows * cols].reshape(rows, cols).astype(np.float32)
    sigma = max(1.0, cols / 70.0)
    wrapped = np.concatenate([grid[:, -8:], grid, grid[:, :8]], axis=1)
    blurred = cv2.GaussianBlur(wrapped, (0, 0), sigma)[:, 8:-8]
    concavity = (blurred - grid).reshape(-1)
    occ = np.ones(len(relief))
    occ[: rows * cols] = np.clip(1.0 - 4.0 * np.maximum(concavity, 0.0), 0.6, 1.0)
    occ[rows * cols: rows * cols + 2] = 1.0
    occ[rows * cols + 2:] = occ[topo.split_source]
    return occ


@functools.lru_cache(maxsize=64)
def _grid_faces(rows, cols, wrap=False):
    grid = np.arange(rows * cols).reshape(rows, cols)
    if wrap:
        nxt = np.roll(grid, -1, axis=1)
        a, b, c, d = grid[:-1], nxt[:-1], nxt[1:], grid[1:]
    else:
        a, b, c, d = grid[:-1, :-1], grid[:-1, 1:], grid[1:, 1:], grid[1:, :-1]
    faces = np.stack([np.stack([a, b, c], -1), np.stack([a, c, d], -1)], axis=2).reshape(-1, 3)
    faces.flags.writeable = False  # cached and shared
    return faces


def surface_point(u, v, face, lower=False):
    """Neutral head surface at frontal coordinates (u, v) (front half only): positions [N, 3]."""
    phi = np.arcsin(np.clip(v / V_SCALE, -1, 1))
    theta = np.arcsin(np.clip(u / np.cos(phi), -1, 1))
    cz = np.cos(theta) * np.cos(phi)
    pos, normal = base_surface(theta, phi, face)
    rest = ((1.0, 1.0), (1.0, 1.0))
    h = feature_heights(u, v, theta, cz, face, rest)
    return pos + h[:, None] * normal


def _mouth_cavity(face, expression, topo):
    """A curved dark surface behind the lips: upper teeth fixed, lower teeth and tongue following the jaw."""
    rows, cols = topo.cavity_shape
    wm = face.mouth_half_width
    s = np.linspace(0.0, 1.0, rows)[:, None] * np.ones((1, cols))   # 0 = top (palate), 1 = bottom (lower teeth)
    t = np.ones((rows, 1)) * np.linspace(-1.0, 1.0, cols)[None, :]
    u = t * (wm + 0.24)
    # Rest height: from above the lip line down to well below it; the bottom part rides on the jaw.
    v_rest = V_LIP + 0.24 - 0.5 * s
    anchor = surface_point(u[0], np.full(cols, V_LIP), face)
    depth_back = 0.1 + 0.3 * t[0] ** 2
    x = anchor[:, 0] * 0.92
    z = anchor[:, 2] - depth_back
    jaw_side = s > 0.5
    # Displace the jaw side like the lower lip at this column.
    lower = np.ones(cols, bool)
    upper = np.zeros(cols, bool)
    front = np.ones(cols)
    d_low = action_units.displacement(u[0], np.full(cols, V_LIP - 1e-6), lower, front, face, expression.left,
                                      expression.right)
    d_up = action_units.displacement(u[0], np.full(cols, V_LIP), upper, front, face, expression.left,
                                     expression.right)
    height_scale = face.head_height / V_SCALE
    y = v_rest * height_scale
    verts = np.zeros((rows, cols, 3))
    verts[..., 0] = x[None, :]
    verts[..., 1] = y
    verts[..., 2] = z[None, :] - 0.06 * s
    verts += np.where(jaw_side[..., None], d_low[None], d_up[None])
    colors = np.empty((rows, cols, 3))
    throat = srgb_to_linear(np.array([0.22, 0.06, 0.06]))
    colors[:] = throat * (0.4 + 0.6 * (1 - np.abs(t)))[..., None]
    teeth = srgb_to_linear(np.array([0.8, 0.76, 0.66]))
    gaps = 0.8 + 0.2 * np.cos(np.pi * t * 7.0) ** 2
    upper_teeth = (s > 0.25) & (s < 0.42) & (np.abs(t) < 0.62)
    lower_teeth = (s > 0.6) & (s < 0.72) & (np.abs(t) < 0.58)
    colors[upper_teeth] = (teeth * gaps[..., None])[upper_teeth]
    colors[lower_teeth] = (teeth * 0.85 * gaps[..., None])[lower_teeth]
    tongue = (s > 0.72) & (s < 0.85) & (np.abs(t) < 0.5)
    colors[tongue] = srgb_to_linear(np.array([0.55, 0.22, 0.22]))
    attrs = np.zeros((rows * cols, 7))
    attrs[:, 3:6] = colors.reshape(-1, 3)
    attrs[:, 6] = 1.0
    faces = _grid_faces(rows, cols)
    # Rows run downward: flip the winding so the surface faces the camera (+z).
    faces = faces[:, ::-1]
    return Mesh(verts.reshape(-1, 3), faces, attrs, np.full(len(faces), MOUTH))


def _cylinder(center, radii, y_top, y_bottom, rows, cols, theta_range=(-np.pi, np.pi)):
    th = np.linspace(theta_range[0], theta_range[1], cols, endpoint=False)
    ys = np.linspace(y_bottom, y_top, rows)
    tt, yy = np.meshgrid(th, ys)
    verts = np.stack([center[0] + radii[0] * np.sin(tt), yy, center[2] + radii[1] * np.cos(tt)], -1)
    return verts.reshape(-1, 3), _grid_faces(rows, cols, wrap=True)


def _neck(face, image_size):
    cols = max(24, image_size // 4)
    verts, faces = _cylinder((0, 0, -0.2), (0.62 * face.head_width * face.jaw_width, 0.62), -0.3, -3.6, 6, cols)
    attrs = np.zeros((len(verts), 7))
    shade = np.clip(0.75 + 0.25 * _smoothstep(-1.9, -1.2, verts[:, 1]), 0, 1)  # in the chin's shadow higher up
    attrs[:, 3:6] = face.skin[None, :] * 0.92 * shade[:, None]
    attrs[:, 6] = 1.0 - 0.35 * _smoothstep(-1.6, -1.1, verts[:, 1])
    return Mesh(verts, faces, attrs, np.full(len(faces), NECK))


def _hair_mass(face, image_size):
    """Long hair: the back and sides of a larger ellipsoid behind the head, falling to the shoulders."""
    rows, cols = max(16, image_size // 5), max(24, image_size // 3)
    th = np.linspace(0.95, 2 * np.pi - 0.95, cols)
    ph = np.linspace(-1.35, 1.45, rows)
    tt, pp = np.meshgrid(th, ph)
    rx = face.head_width * 1.12 + face.hair_volume
    verts = np.stack([rx * np.sin(tt) * np.cos(pp),
                      -0.35 + (face.head_height + 0.25) * np.sin(pp),
                      -0.15 + (face.head_depth + 0.1) * np.cos(tt) * np.cos(pp)
                      * np.where(np.cos(tt) < 0, 0.45, 1.0)], -1).reshape(-1, 3)  # flat at the back: depth range
    faces = _grid_faces(rows, cols)
    faces = np.concatenate([faces, faces[:, ::-1]])  # two-sided: its inside shows behind the neck
    attrs = np.zeros((len(verts), 7))
    rng = np.random.default_rng(face.texture_seed + 1)
    streak = np.interp(np.linspace(0, 1, cols), np.linspace(0, 1, 40), rng.uniform(0.75, 1.15, 40))
    attrs[:, 3:6] = (face.hair_color[None, None, :] * streak[None, :, None] * np.ones((rows, 1, 1))).reshape(-1, 3)
    attrs[:, 6] = 0.6  # the mass behind the head is mostly in its shadow
    return Mesh(verts, faces, attrs, np.full(len(faces), HAIR))


def _shoulders(face, image_size):
    rows, cols = 10, max(24, image_size // 4)
    th = np.linspace(-np.pi, np.pi, cols, endpoint=False)
    ph = np.linspace(-np.pi / 2 + 0.1, np.pi / 2 - 0.1, rows)
    tt, pp = np.meshgrid(th, ph)
    verts = np.stack([2.5 * np.sin(tt) * np.cos(pp), -3.0 + 1.0 * np.sin(pp),
                      -0.5 + 1.0 * np.cos(tt) * np.cos(pp)], -1).reshape(-1, 3)
    faces = _grid_faces(rows, cols, wrap=True)
    attrs = np.zeros((len(verts), 7))
    attrs[:, 3:6] = face.clothes_color
    attrs[:, 6] = 1.0
    return Mesh(verts, faces, attrs, np.full(len(faces), CLOTHES))
