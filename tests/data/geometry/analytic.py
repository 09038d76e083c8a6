"""Analytic references for the geometry tests: spheres and planes seen by the cameras, angles between normals."""

import numpy as np

from expr3d.data import geometry

SIZE = 96


def angle_deg(a, b):
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b / np.linalg.norm(b, axis=-1, keepdims=True)
    return np.degrees(np.arccos(np.clip(np.sum(a * b, axis=-1), -1.0, 1.0)))


def ortho_sphere(camera, center, radius, size=SIZE):
    """Analytic depth, normals and disc mask of a sphere under an orthographic camera."""
    u, v = geometry.pixel_centers(size, size)
    x = (u - camera.cx) / camera.scale - center[0]
    y = -(v - camera.cy) / camera.scale - center[1]
    r2 = (x**2 + y**2) / radius**2
    inside = r2 < 1.0
    dz = radius * np.sqrt(np.clip(1.0 - r2, 0.0, None))
    depth = camera.depth_offset - (center[2] + dz)
    normals = np.stack([x, y, dz], axis=-1) / radius
    return depth, normals, inside, np.sqrt(r2)


def perspective_sphere(camera, center, radius, size=SIZE):
    """Ray-sphere intersection per pixel centre: depth, normals, hit mask, discriminant."""
    u, v = geometry.pixel_centers(size, size)
    d = np.stack([(u - camera.cx) / camera.focal_px, -(v - camera.cy) / camera.focal_px, -np.ones_like(u)], axis=-1)
    c = np.asarray(center, np.float64)
    dd = np.sum(d * d, axis=-1)
    dc = d @ c
    disc = dc**2 - dd * (c @ c - radius**2)
    hit = disc > 0
    t = (dc - np.sqrt(np.clip(disc, 0.0, None))) / dd  # z_depth, since d_z = -1
    points = d * t[..., None]
    normals = (points - c) / radius
    return np.where(hit, t, 0.0), normals, hit, disc / (dd * radius**2)


def plane_mesh(a, b, c, extent=4.0, n=24):
    """Grid mesh of the plane z = a*x + b*y + c over [-extent, extent]^2."""
    xs, ys = np.meshgrid(np.linspace(-extent, extent, n), np.linspace(-extent, extent, n))
    return geometry.grid_mesh(xs, ys, a * xs + b * ys + c)



def disc_mask(size, cx, cy, radius):
    u, v = geometry.pixel_centers(size, size)
    return (u - cx) ** 2 + (v - cy) ** 2 < radius**2

