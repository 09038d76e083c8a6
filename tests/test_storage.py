import json
import os

from expr3d import storage


def test_atomic_json_is_complete_with_ordinary_permissions_and_no_temporary(tmp_path):
    path = tmp_path / "results.json"
    storage.atomic_write_json(str(path), {"b": 1, "a": [1, 2]})
    assert json.loads(path.read_text()) == {"b": 1, "a": [1, 2]} and path.read_text().endswith("\n")
    assert list(json.loads(path.read_text())) == ["b", "a"]  # key order kept
    assert os.stat(path).st_mode & 0o777 == storage.default_permissions()
    storage.atomic_write_bytes(str(path), b"replaced")
    assert path.read_bytes() == b"replaced" and os.listdir(tmp_path) == ["results.json"]


def test_library_versions_are_the_ones_asked_for_in_that_order():
    import numpy as np

    import expr3d

    versions = storage.library_versions("python", "numpy", "expr3d", "json")
    assert list(versions) == ["python", "numpy", "expr3d", "json"]
    assert versions["numpy"] == np.__version__ and versions["expr3d"] == expr3d.__version__
    assert versions["python"].count(".") == 2
    assert versions["json"] == json.__version__
    assert storage.library_versions("os") == {"os": "unknown"}  # a package without __version__
