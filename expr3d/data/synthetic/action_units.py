"""FACS action units as displacement fields on the procedural head, and the EMFACS prototypes of the eight classes.

Every field is a function of a vertex's *rest* frontal coordinates ``(u, v)`` in face units (1 unit ~ 7.5 cm;
``u`` grows toward the subject's left = camera +x, ``v`` up; the eyes sit near ``v = 0``, the lip line at
``V_LIP``) and returns a displacement ``(du, dv, dz)`` in the head's local frame. Intensities come per side
(``left``/``right`` arrays of 17 in ``expr3d.labels.ACTION_UNITS`` order) so unilateral AUs (contempt) work.

Lids are not moved by displacement: the eye opening is a shape function of the AUs (``eye_opening``) used by both
the geometry and the per-pixel shading, so it stays crisp at every image size.
"""
import dataclasses

import numpy as np

from expr3d.labels import ACTION_UNITS, EXPRESSIONS, NUM_ACTION_UNITS

# Rest height of the lip line in face units; the head mesh keeps a grid row exactly here and splits it.
V_LIP = -0.7

AU_INDEX = {au: i for i, au in enumerate(ACTION_UNITS)}

# EMFACS prototypes: (required AUs, optional AUs). Contempt is unilateral (one side only).
PROTOTYPES = {
    "neutral": ((), ()),
    "happy": ((6, 12), (25,)),
    "sad": ((1, 4, 15), (17,)),
    "surprise": ((1, 2, 5, 26), ()),
    "fear": ((1, 2, 4, 5, 7, 20, 26), ()),
    "disgust": ((9, 15, 16), (10,)),
    "anger": ((4, 5, 7, 23), (17,)),
    "contempt": ((12, 14), ()),
}
UNILATERAL = {"contempt"}
assert set(PROTOTYPES) == set(EXPRESSIONS)


@dataclasses.dataclass
class Expression:
    """AU intensities of one rendered expression.

    Args:
        expression: class id 0-7.
        intensities: float32 [17], the label (per AU, the larger of the two sides).
        left: float32 [17] applied on the subject's left half (camera +x).
        right: float32 [17] applied on the subject's right half.
    """

    expression: int
    intensities: np.ndarray
    left: np.ndarray
    right: np.ndarray


def prototype_mask(expression):
    """(required bool [17], allowed bool [17]) of class id `expression`."""
    required, optional = PROTOTYPES[EXPRESSIONS[int(expression)]]
    req = np.zeros(NUM_ACTION_UNITS, bool)
    allowed = np.zeros(NUM_ACTION_UNITS, bool)
    for au in required:
        req[AU_INDEX[au]] = allowed[AU_INDEX[au]] = True
    for au in optional:
        allowed[AU_INDEX[au]] = True
    return req, allowed


# The overall strength of a class's prototype: strong enough to read at 64 px. A dataset may ask for a wider range
# (`--expression_strength`), e.g. slight expressions as real photos hold them.
DEFAULT_STRENGTH = (0.7, 1.0)


def sample_expression(expression, rng, strength=DEFAULT_STRENGTH):
    """Random intensities of the prototype of class id `expression`: its required AUs at an overall strength drawn
    uniformly from `strength`, each jittered by +-15 % (clipped to [0, 1]); its optional AUs each with probability
    1/2 at a level in [0.4, 0.9]."""
    name = EXPRESSIONS[int(expression)]
    required, optional = PROTOTYPES[name]
    values = np.zeros(NUM_ACTION_UNITS, np.float32)
    overall = rng.uniform(*strength)
    for au in required:
        # (The clip's floor was 0.4, which the default strengths never reach: their renders are unchanged.)
        values[AU_INDEX[au]] = np.clip(overall * rng.uniform(0.85, 1.15), 0.0, 1.0)
    for au in optional:
        if rng.uniform() < 0.5:
            values[AU_INDEX[au]] = rng.uniform(0.4, 0.9)
    left, right = values.copy(), values.copy()
    if name in UNILATERAL:
        (right if rng.uniform() < 0.5 else left)[:] = 0.0
    return Expression(int(expression), values, left, right)


def dialled(expression, rng):
    """`expression` with ONE action unit (uniform over the 17) set to a uniform level in [0, 1] on both sides: a
    user's dial, rendered (`train_dial_renders`). Draws two numbers from `rng`."""
    unit = int(rng.integers(NUM_ACTION_UNITS))
    level = np.float32(rng.uniform(0.0, 1.0))
    values, left, right = expression.intensities.copy(), expression.left.copy(), expression.right.copy()
    values[unit] = left[unit] = right[unit] = level
    return Expression(expression.expression, values, left, right)


def neutral():
    zeros = np.zeros(NUM_ACTION_UNITS, np.float32)
    return Expression(0, zeros, zeros.copy(), zeros.copy())


def _g(x, c, s):
    return np.exp(-0.5 * ((x - c) / s) ** 2)


def _smoothstep(e0, e1, x):
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def eye_opening(au):
    """(upper, lower) lid opening factors (1 = rest) for one side's intensities `au` [17]."""
    a = {k: float(au[i]) for k, i in AU_INDEX.items()}
    upper = 1.0 + 1.15 * a[5] - 0.35 * a[7] - 0.25 * a[6] - 0.3 * a[4] - 0.25 * a[9]
    lower = 1.0 - 0.85 * a[7] - 0.65 * a[6] - 0.35 * a[9] + 0.2 * a[5]
    return max(upper, 0.12), max(lower, 0.08)


def lip_thinning(au):
    """Factor on lip fullness (geometry and colour) from lip tightening/stretching; one side's [17]."""
    return float(np.clip(1.0 - 0.7 * au[AU_INDEX[23]] - 0.25 * au[AU_INDEX[20]] - 0.15 * au[AU_INDEX[12]], 0.3, 1.0))


def mouth_profile(u, half_width):
    """How far the lips can part across the mouth: 1 at the centre, 0 at and beyond the corners."""
    return np.clip(1.0 - (u / half_width) ** 2, 0.0, 1.0) ** 0.6


def nasolabial(u, v, face):
    """Soft indicator of the nasolabial fold (from the nose wing to beyond the mouth corner)."""
    au_ = np.abs(u)
    p0 = np.array([0.15 * face.nose_width, face.nose_tip_v - 0.02])
    p1 = np.array([face.mouth_half_width + 0.1, V_LIP - 0.12])
    d = p1 - p0
    t = np.clip(((au_ - p0[0]) * d[0] + (v - p0[1]) * d[1]) / (d @ d), 0.0, 1.0)
    dist2 = (au_ - p0[0] - t * d[0]) ** 2 + (v - p0[1] - t * d[1]) ** 2
    return np.exp(-0.5 * dist2 / 0.035 ** 2) * np.sin(np.pi * t) ** 0.5


def displacement(u, v, lower, front, face, left, right):
    """Expression displacement (du, dv, dz) of vertices at rest coordinates (u, v).

    Args:
        u, v: float [N] rest frontal coordinates in face units.
        lower: bool [N], the vertex belongs to the jaw side of the lip split (below the lip line).
        front: float [N] in [0, 1], 1 on the face, 0 on the back of the head.
        face: the identity (`face_model.Identity`) giving feature positions.
        left, right: float [17] intensities per side.

    Returns:
        float [N, 3].
    """
    side_w = _smoothstep(-0.12, 0.12, u)[:, None]
    a_all = side_w * left[None, :] + (1.0 - side_w) * right[None, :]

    def a(au):
        return a_all[:, AU_INDEX[au]]

    s = np.tanh(u / 0.05)  # lateral direction: +1 on the subject's left
    au_ = np.abs(u)
    upper = ~lower
    du = np.zeros_like(u)
    dv = np.zeros_like(u)
    dz = np.zeros_like(u)
    wm = face.mouth_half_width
    ev = face.eye_v
    vb = face.brow_v

    # --- brows and forehead (AU1, AU2, AU4, AU9) ---------------------------------------------------------------
    brow = (_smoothstep(ev + 0.07, ev + 0.22, v) * (1.0 - _smoothstep(vb + 0.2, vb + 0.75, v))
            * (1.0 - _smoothstep(0.7, 0.95, au_)))
    inner = _g(au_, 0.13, 0.14)
    outer = _g(au_, 0.55, 0.17)
    dv += brow * (0.16 * a(1) * inner + 0.13 * a(2) * outer)
    forehead = _smoothstep(vb + 0.05, vb + 0.15, v) * (1.0 - _smoothstep(vb + 0.35, vb + 0.55, v))
    wrinkles = np.sin(2.0 * np.pi * (v - vb) / 0.085)
    dz += 0.012 * forehead * wrinkles * (a(1) * _g(au_, 0.0, 0.3) + a(2) * _g(au_, 0.45, 0.2))
    dv -= brow * (0.17 * a(4) * (inner + 0.4 * outer) + 0.05 * a(9) * inner)
    du -= brow * 0.07 * a(4) * s * inner
    dz += brow * 0.03 * a(4) * inner
    glabella = _g(au_, 0.055, 0.022) * _g(v, vb - 0.03, 0.07)
    dz -= 0.045 * a(4) * glabella

    # --- eyes' surroundings (AU6, AU7) ----------------------------------------------------------------------
    cheek = _g(au_, 0.42, 0.2) * _g(v, ev - 0.32, 0.15)
    dv += 0.08 * a(6) * cheek
    dz += 0.06 * a(6) * cheek
    crows = _g(au_, face.eye_x + face.eye_half_width + 0.08, 0.04) * _g(v, ev, 0.07)
    dz += 0.015 * a(6) * crows * np.sin(2.0 * np.pi * v / 0.05)
    lower_lid = _g(au_, face.eye_x, face.eye_half_width) * _g(v, ev - 0.1, 0.04)
    dz += 0.025 * a(7) * lower_lid

    # --- nose (AU9) -------------------------------------------------------------------------------------------
    nose = _g(u, 0.0, 0.17) * _g(v, face.nose_tip_v + 0.08, 0.16)
    dv += 0.05 * a(9) * nose
    bridge = _g(u, 0.0, 0.08) * _g(v, ev - 0.04, 0.07)
    dz += 0.025 * a(9) * bridge * np.sin(2.0 * np.pi * (v - ev) / 0.05)
    fold = nasolabial(u, v, face)
    dz -= fold * (0.04 * a(9) + 0.045 * a(12) + 0.03 * a(10) + 0.03 * a(6))

    # --- mouth corners (AU12, AU14, AU15, AU20, AU23) ---------------------------------------------------------
    corner = _g(au_, wm, 0.17) * _g(v, V_LIP, 0.15)
    wide_corner = _g(au_, wm, 0.24) * _g(v, V_LIP, 0.2)
    du += s * corner * (0.11 * a(12) - 0.035 * a(14) - 0.04 * a(23)) + s * wide_corner * 0.13 * a(20)
    dv += corner * (0.13 * a(12) + 0.025 * a(14) - 0.15 * a(15)) - wide_corner * 0.035 * a(20)
    dz -= corner * (0.04 * a(12) + 0.04 * a(14)) + wide_corner * 0.03 * a(20)
    smile_cheek = _g(au_, 0.45, 0.15) * _g(v, V_LIP + 0.28, 0.15)
    dz += 0.05 * a(12) * smile_cheek
    dimple = _g(au_, wm + 0.1, 0.045) * _g(v, V_LIP - 0.02, 0.05)
    dz -= 0.05 * a(14) * dimple
    lips = _g(u, 0.0, wm * 0.8) * _g(v, V_LIP, 0.09)
    dz -= 0.035 * a(23) * lips

    # --- lips apart (AU10, AU16, AU25) and jaw (AU17, AU26) ---------------------------------------------------
    profile = mouth_profile(u, wm)
    near_upper = upper * _g(v, V_LIP, 0.14) * (v >= V_LIP - 1e-9)
    near_lower = lower * _g(np.minimum(v, V_LIP), V_LIP, 0.22)
    upper_lip_raise = upper * _smoothstep(V_LIP + 0.42, V_LIP, v) * (v >= V_LIP - 1e-9)
    raise_shape = np.clip(1.0 - (u / (wm * 1.05)) ** 2, 0.0, 1.0) ** 0.5 * (0.75 + 0.35 * _g(au_, 0.16, 0.1))
    dv += 0.13 * a(10) * upper_lip_raise * raise_shape + 0.035 * a(9) * upper_lip_raise * raise_shape
    dz += 0.02 * a(10) * upper_lip_raise * raise_shape
    dv += 0.025 * a(25) * profile * near_upper
    dv -= 0.07 * a(25) * profile * near_lower
    lower_lip = lower * profile * _g(np.minimum(v, V_LIP), V_LIP - 0.05, 0.12)
    dv -= 0.1 * a(16) * lower_lip
    dz += 0.015 * a(16) * lower_lip
    chin = _g(u, 0.0, 0.3) * _g(v, -1.12, 0.22) * lower
    dv += 0.06 * a(17) * chin
    dz += 0.05 * a(17) * chin
    dv += 0.035 * a(17) * lower_lip
    dz += 0.05 * a(17) * lower_lip
    jaw = jaw_weight(u, v, lower, wm)
    drop = 0.36 * a(26)
    dv -= drop * jaw
    dz -= 0.3 * drop * jaw
    return np.stack([du, dv, dz], axis=-1) * front[:, None]


def jaw_weight(u, v, lower, mouth_half_width):
    """How much a vertex follows the jaw: 1 for the lower lip and chin, 0 above the lip line and beside the mouth."""
    below = np.maximum(V_LIP - v, 0.0)
    w = _smoothstep(0.0, 1.0, below / 0.38 + mouth_profile(u, mouth_half_width))
    w *= 1.0 - _smoothstep(0.55, 0.95, np.abs(u))
    return np.where(lower, w, 0.0)
