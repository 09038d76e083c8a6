"""The small synthetic dataset shared by tests/data/synthetic (built once per worker)."""
import pytest

from expr3d.data.synthetic import dataset
from tests.data.synthetic.fixtures import SMALL


@pytest.fixture(scope="package")
def small_dataset(tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("synthetic") / "d")
    card = dataset.generate_dataset(directory, seed=3, workers=1, progress=False, **SMALL)
    return directory, card
