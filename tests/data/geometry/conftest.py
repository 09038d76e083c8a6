"""Shared fixture of the geometry tests: a finely tessellated unit sphere."""

import pytest

from expr3d.data import geometry


@pytest.fixture(scope="module")
def fine_sphere():
    return geometry.uv_sphere_mesh(1.0, num_lat=96, num_lon=192)
