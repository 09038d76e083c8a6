"""Render a procedural head through the z-buffer rasterizer: shaded RGB, exact depth, normals and mask.

Shading is Lambert + ambient (scaled by a cheap ambient occlusion) + a mild Blinn-Phong specular, in linear RGB
with a gamma-2.2 output. Skin, lips, brows, eyes, hair and beard are albedo functions of each pixel's rest face
coordinates (interpolated perspective-correctly by the rasterizer), so features stay crisp at any size and move
with the geometry of the expression.

Example:

```python
rng = np.random.default_rng(0)
face = face_model.sample_identity(rng)
out = render_face(face, action_units.sample_expression(3, rng), sample_pose(rng), sample_light(rng), 128)
out.image  # uint8 [128, 128, 3]
```
"""
import dataclasses

import cv2
import numpy as np

from expr3d.data import geometry
from expr3d.data.synthetic import action_units, face_model
from expr3d.data.synthetic.action_units import V_LIP
from expr3d.data.synthetic.face_model import V_SCALE

CAMERA_DISTANCE = 0.8  # metres
FRAME_HEIGHT = 0.25    # metres covered by the image height at the head's distance


@dataclasses.dataclass
class Pose:
    """Head pose in degrees (yaw turns toward the subject's left, pitch raises the chin) and framing jitter."""

    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0
    scale: float = 1.0
    shift_x: float = 0.0  # fraction of the image width
    shift_y: float = 0.0


@dataclasses.dataclass
class Light:
    """A directional key light (camera space, toward the light) plus ambient, and the background colours."""

    direction: tuple = (0.3, 0.4, 0.85)
    intensity: float = 0.95
    ambient: float = 0.35
    color: tuple = (1.0, 1.0, 1.0)
    specular: float = 1.0
    background_top: tuple = (0.2, 0.22, 0.26)
    background_bottom: tuple = (0.1, 0.11, 0.13)
    gaze: tuple = (0.0, 0.0)


@dataclasses.dataclass
class RenderedFace:
    """Arrays of one render: image uint8 [S,S,3], depth float32 [S,S] (z distance, 0 outside), mask bool [S,S],
    normals float32 [S,S,3] (camera space, 0 outside)."""

    image: np.ndarray
    depth: np.ndarray
    mask: np.ndarray
    normals: np.ndarray


def sample_pose(rng, max_yaw=15.0, max_pitch=10.0, max_roll=6.0):
    return Pose(yaw=float(rng.uniform(-max_yaw, max_yaw)), pitch=float(rng.uniform(-max_pitch, max_pitch)),
                roll=float(rng.uniform(-max_roll, max_roll)), scale=float(rng.uniform(0.94, 1.06)),
                shift_x=float(rng.uniform(-0.03, 0.03)), shift_y=float(rng.uniform(-0.03, 0.03)))


def sample_light(rng, subject=None):
    """Random key light, ambient, tint, gaze and background.

    `subject` (an Identity) keeps the backdrop's brightness away from the skin's, as a photographer would: a face
    that melts into its background is neither a good training image nor detectable.
    """
    azimuth = np.radians(rng.uniform(-55, 55))
    elevation = np.radians(rng.uniform(-5, 45))
    direction = (np.sin(azimuth) * np.cos(elevation), np.sin(elevation), np.cos(azimuth) * np.cos(elevation))
    tint = 1.0 + rng.normal(0, 0.04, 3)
    hue = rng.uniform(0, 1, 3)
    base = rng.uniform(0.12, 0.85)
    if subject is not None:
        skin = float(np.power(np.asarray(subject.skin), 1 / 2.2) @ np.array([0.3, 0.59, 0.11]))
        for _ in range(20):
            if abs(base - skin) >= 0.22:
                break
            base = rng.uniform(0.12, 0.85)
    top = np.clip(base * (0.75 + 0.5 * hue), 0.03, 1.0)
    bottom = np.clip(top * rng.uniform(0.45, 0.95), 0.02, 1.0)
    return Light(direction=tuple(float(x) for x in direction), intensity=float(rng.uniform(0.75, 1.05)),
                 ambient=float(rng.uniform(0.3, 0.5)), color=tuple(float(x) for x in tint / tint.mean()),
                 specular=float(rng.uniform(0.5, 1.3)), background_top=tuple(float(x) for x in top),
                 background_bottom=tuple(float(x) for x in bottom),
                 gaze=(float(rng.uniform(-0.25, 0.25)), float(rng.uniform(-0.15, 0.15))))


def _rotation(pose):
    y, p, r = np.radians([pose.yaw, pose.pitch, pose.roll])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    return rz @ ry @ rx


def camera_for(image_size):
    focal = image_size * CAMERA_DISTANCE / FRAME_HEIGHT
    return geometry.PerspectiveCamera(focal_px=focal, cx=image_size / 2.0, cy=image_size / 2.0)


def to_camera(mesh, face, pose, image_size):
    """Head-local face units -> camera-space metres (the shoulders do not turn with the head)."""
    rot = _rotation(pose)
    metres = face_model.METRES_PER_UNIT * pose.scale
    pivot = np.array([0.0, -0.9, -0.3])  # roughly the top of the neck
    local = mesh.vertices - pivot
    turned = local @ rot.T + pivot
    clothes_vertices = np.zeros(len(mesh.vertices), bool)
    clothes_vertices[mesh.faces[mesh.material == face_model.CLOTHES].reshape(-1)] = True
    verts = np.where(clothes_vertices[:, None], mesh.vertices, turned) * metres
    offset = np.array([pose.shift_x * FRAME_HEIGHT, 0.012 + pose.shift_y * FRAME_HEIGHT, -CAMERA_DISTANCE])
    return verts + offset


def _sample(texture, theta, phi, wrap=True):
    """Bilinear lookup of a texture spanning theta in [-pi, pi) (columns) and phi in [-pi/2, pi/2] (rows)."""
    h, w = texture.shape[:2]
    n = len(theta)
    # cv2.remap wants maps narrower than 32767: lay the points out as rows of 512.
    cols = 512
    padded = -(-n // cols) * cols
    mx = np.zeros(padded, np.float32)
    my = np.zeros(padded, np.float32)
    mx[:n] = (theta + np.pi) / (2 * np.pi) * w - 0.5
    my[:n] = (np.pi / 2 - phi) / np.pi * h - 0.5
    border = cv2.BORDER_WRAP if wrap else cv2.BORDER_REFLECT
    out = cv2.remap(texture, mx.reshape(-1, cols), my.reshape(-1, cols), cv2.INTER_LINEAR, borderMode=border)
    return out.reshape(-1)[:n]


def _g(x, c, s):
    return np.exp(-0.5 * ((x - c) / s) ** 2)


def _smoothstep(e0, e1, x):
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _mix(base, color, weight):
    weight = np.clip(weight, 0.0, 1.0)[:, None]
    return base * (1.0 - weight) + np.asarray(color)[None, :] * weight


def head_albedo(sphere, face, expression, light, pixel_size):
    """Per-pixel albedo [P, 3] and specular weight [P] of head pixels from their rest unit-sphere points [P, 3].

    `pixel_size` (face units per pixel) softens edges so small renders are antialiased.
    """
    sphere = sphere / np.maximum(np.linalg.norm(sphere, axis=-1, keepdims=True), 1e-9)
    sx, sy, cz = sphere[:, 0], sphere[:, 1], sphere[:, 2]
    theta = np.arctan2(sx, cz)
    phi = np.arcsin(np.clip(sy, -1, 1))
    u, v = sx, V_SCALE * sy
    au_ = np.abs(u)
    front = _smoothstep(0.0, 0.3, cz)
    soft = max(0.006, 0.7 * pixel_size)
    tex = face.textures
    # Skin: tone, blotches, freckles, blush.
    blotch = _sample(tex["blotch"], theta, phi)
    albedo = face.skin[None, :] * (1.0 + face.blotch_amount * blotch[:, None] * np.array([1.0, 1.15, 1.25]))
    if face.freckles > 0:
        freckle = _sample(tex["freckle"], theta * 2.0, phi * 2.0, wrap=False) * front
        albedo *= 1.0 - 0.35 * face.freckles * np.clip(freckle, 0, 1)[:, None] * np.array([0.6, 0.9, 1.1])
    blush = face.blush * _g(au_, 0.45, 0.16) * _g(v, face.eye_v - 0.35, 0.14) * front
    albedo *= 1.0 + blush[:, None] * np.array([0.25, -0.2, -0.15])
    ears = _g(np.abs(theta), 1.62, 0.12) * _g(v, -0.12, 0.22)
    albedo *= 1.0 + 0.12 * ears[:, None] * np.array([0.3, -0.3, -0.3])
    specular = np.full(len(u), 0.12) + 0.1 * _g(u, 0, 0.12) * _g(v, face.nose_tip_v + 0.1, 0.3)
    # Beard / stubble.
    if face.beard > 0:
        beard_zone = (_smoothstep(V_LIP + 0.28, V_LIP + 0.12, v) * _smoothstep(0.3, 0.5, cz)
                      * (1.0 - _smoothstep(0.1, 0.35, np.abs(theta) - 1.15)))
        beard_zone *= 1.0 - 0.8 * _g(u, 0, face.mouth_half_width * 0.9) * _g(v, V_LIP, 0.06)
        strands = _sample(tex["strands"], theta * 3.0, phi * 3.0)
        albedo = _mix(albedo, face.hair_color, face.beard * beard_zone * (0.7 + 0.15 * strands))
    # Lips.
    thin = np.where(u >= 0, action_units.lip_thinning(expression.left), action_units.lip_thinning(expression.right))
    wm = face.mouth_half_width
    across = np.clip(1.0 - (u / (wm * 1.02)) ** 2, 0.0, 1.0)
    bow = 1.0 - 0.35 * _g(u, 0.0, 0.045) + 0.12 * _g(au_, 0.08, 0.05)
    upper_top = V_LIP + 0.075 * face.lip_fullness * thin * across ** 0.45 * bow
    lower_bottom = V_LIP - 0.09 * face.lip_fullness * thin * across ** 0.5
    lip = (_smoothstep(-soft, soft, upper_top - v) * _smoothstep(-soft, soft, v - lower_bottom)
           * (across > 0) * front)
    albedo = _mix(albedo, face.lip_color, 0.9 * lip)
    specular += 0.12 * lip
    # Nostrils (on the underside of the nose, seen when the head tilts back) and the nose-wing creases.
    nostril = _g(au_, 0.058 * face.nose_width, 0.025) * _g(v, face.nose_tip_v - 0.06, 0.014) * front
    albedo *= (1.0 - 0.8 * np.clip(nostril * 1.5, 0, 1))[:, None]
    # Eyebrows.
    s_brow = (au_ - 0.09) / 0.62
    brow_centre = face.brow_v + face.brow_arch * np.sin(np.pi * np.clip(s_brow, 0, 1) ** 0.8) - 0.04 * np.clip(
        s_brow - 0.7, 0, None) / 0.3
    thickness = face.brow_thickness * (1.15 - 0.55 * np.clip(s_brow, 0, 1))
    strands = _sample(tex["strands"], theta * 4.0, phi * 2.0)
    brow = (_smoothstep(-soft, soft, thickness - np.abs(v - brow_centre))
            * _smoothstep(-0.03, 0.02, s_brow) * _smoothstep(-1.04, -0.96, -s_brow) * front)
    albedo = _mix(albedo, face.brow_color, brow * (0.8 + 0.12 * strands))
    # Hair (front hairline, sides, back) with strand texture.
    if face.hair_volume > 0:
        wiggle = np.clip(_sample(tex["blotch"], theta * 2.0, phi), -2.0, 2.0)
        boundary = face_model.hair_boundary(np.abs(theta), face) + 0.012 * wiggle
        hair = _smoothstep(-soft, soft + 0.02, v - boundary)
        hair_col = face.hair_color[None, :] * ((1.0 + 0.25 * strands) * (0.6 + 0.4 * _smoothstep(0.0, 0.6, cz)))[:, None]
        albedo = albedo * (1 - hair[:, None]) + hair_col * hair[:, None]
        specular = specular * (1 - hair) + 0.06 * hair
    # Eyes: sclera, iris, pupil under the lids; lash line; lid crease.
    t, base, side = face_model.eye_frame(u, v, face)
    open_l, open_r = action_units.eye_opening(expression.left), action_units.eye_opening(expression.right)
    upper, lower = face_model.lid_curves(t, base, np.where(u >= 0, open_l[0], open_r[0]),
                                         np.where(u >= 0, open_l[1], open_r[1]), face)
    in_x = np.abs(t) < 1.0
    inside = _smoothstep(-soft, soft, v - lower) * _smoothstep(-soft, soft, upper - v) * in_x * front
    ew = face.eye_half_width
    iris_c_u = side * face.eye_x + light.gaze[0] * ew * 0.35
    iris_c_v = face.eye_v + light.gaze[1] * ew * 0.2 - 0.005
    r = np.sqrt((u - iris_c_u) ** 2 + (v - iris_c_v) ** 2)
    r_iris = 0.46 * ew
    sclera = np.array([0.5, 0.47, 0.43]) * (1.0 - 0.35 * np.clip(np.abs(t), 0, 1) ** 3)[:, None]
    iris_col = face.iris_color[None, :] * (0.7 + 0.6 * (r / r_iris))[:, None]
    eye_col = sclera
    iris_w = _smoothstep(-soft, soft, r_iris - r)
    eye_col = eye_col * (1 - iris_w[:, None]) + iris_col * iris_w[:, None]
    eye_col = _mix(eye_col, np.array([0.01, 0.01, 0.01]), _smoothstep(-soft, soft, 0.42 * r_iris - r))
    eye_col = _mix(eye_col, np.array([0.04, 0.03, 0.03]), 0.6 * _g(r, r_iris, max(soft, 0.008)))
    lid_shadow = 1.0 - 0.45 * np.exp(-np.maximum(upper - v, 0) / (0.25 * 0.42 * ew))
    eye_col *= lid_shadow[:, None]
    albedo = albedo * (1 - inside[:, None]) + eye_col * inside[:, None]
    specular = specular * (1 - inside) + 0.35 * inside
    lash_w = 0.012 + 0.006 * np.clip(1 - np.abs(t), 0, 1)
    lash = (_smoothstep(-soft, soft, lash_w + soft * 0.5 - np.abs(v - upper - 0.4 * lash_w))
            * _smoothstep(-1.08, -0.95, -np.abs(t)) * front)
    albedo = _mix(albedo, np.array([0.02, 0.015, 0.015]), 0.85 * lash)
    lower_lash = _smoothstep(-soft, soft, 0.006 + soft * 0.5 - np.abs(v - lower + 0.004)) * in_x * front
    albedo = _mix(albedo, np.array([0.05, 0.03, 0.03]), 0.45 * lower_lash)
    crease = _g(v, upper + 0.055, 0.012) * _smoothstep(-1.1, -0.8, -np.abs(t)) * front
    albedo *= (1.0 - 0.25 * crease)[:, None]
    # Soft darkening of the sockets around the eyes (shadow under the brow, lashes' shade, natural pigment).
    socket = np.exp(-0.5 * (((u - side * face.eye_x) / (1.3 * ew)) ** 2 + ((v - face.eye_v - 0.03) / 0.1) ** 2))
    albedo *= (1.0 - 0.4 * socket * (1.0 - inside) * front)[:, None]
    return np.clip(albedo, 0.0, 1.0), specular


def render_face(face, expression, pose, light, image_size, cull_backfaces=False):
    """Render identity `face` (face_model.Identity) with `expression` (action_units.Expression) -> RenderedFace."""
    mesh = face_model.build_head(face, expression, image_size)
    camera = camera_for(image_size)
    verts = to_camera(mesh, face, pose, image_size)
    raster = geometry.rasterize(verts, mesh.faces, camera, image_size, image_size, attributes=mesh.attributes,
                               cull_backfaces=cull_backfaces)
    mask_all = raster.mask
    tri = raster.triangle_id[mask_all]
    material = mesh.material[tri]
    attrs = raster.attributes[mask_all].astype(np.float64)
    normals = raster.normals[mask_all].astype(np.float64)
    albedo = attrs[:, 3:6].copy()
    specular = np.full(len(tri), 0.05)
    specular[material == face_model.HAIR] = 0.05
    specular[material == face_model.MOUTH] = 0.15
    head = material == face_model.HEAD
    if head.any():
        pixel_size = FRAME_HEIGHT / face_model.METRES_PER_UNIT / image_size
        albedo[head], specular[head] = head_albedo(attrs[head, :3], face, expression, light, pixel_size)
    # Lambert + ambient (occlusion-weighted) + Blinn-Phong, in camera space with the view along +z.
    direction = np.asarray(light.direction, np.float64)
    direction /= np.linalg.norm(direction)
    n_dot_l = np.clip(normals @ direction, 0.0, None)
    occlusion = attrs[:, 6]
    half = direction + np.array([0.0, 0.0, 1.0])
    half /= np.linalg.norm(half)
    shininess = np.where(head, 30.0, 12.0)
    if head.any():
        # Eyes are glossy: a small sharp highlight rather than a silver sheen.
        shininess[head] = np.where(specular[head] > 0.3, 250.0, 30.0)
        specular[head] = np.where(specular[head] > 0.3, 3.0, specular[head])
    spec = light.specular * specular * np.clip(normals @ half, 0.0, None) ** shininess * (n_dot_l > 0)
    color = np.asarray(light.color)[None, :]
    shade = albedo * color * (light.ambient * occlusion[:, None] + light.intensity * n_dot_l[:, None]
                              * (0.5 + 0.5 * occlusion[:, None]))
    shade += spec[:, None] * color * 0.5
    # Background: a vertical gradient (linear RGB), then gamma for the whole image.
    rows = np.linspace(0.0, 1.0, image_size)[:, None, None]
    top = face_model.srgb_to_linear(light.background_top)
    bottom = face_model.srgb_to_linear(light.background_bottom)
    linear = np.broadcast_to(top * (1 - rows) + bottom * rows, (image_size, image_size, 3)).copy()
    linear[mask_all] = shade
    image = np.clip(np.power(np.clip(linear, 0, None), 1 / 2.2) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    # The mask is the head (face, hair, neck): clothes count as background like in prepared real data.
    head_mask = mask_all.copy()
    head_mask[mask_all] = material != face_model.CLOTHES
    depth = np.where(head_mask, raster.depth, 0.0).astype(np.float32)
    normals_img = np.where(head_mask[..., None], raster.normals, 0.0).astype(np.float32)
    return RenderedFace(image=image, depth=depth, mask=head_mask, normals=normals_img)
