"""A tiny real dataset (TFRecords written by expr3d.data.records) shared by the training tests."""
import numpy as np
import pytest

from expr3d.data import dataset_card, records
from tests.data.fixtures import hemisphere_example

IMAGE_SIZE = 32


def write_tiny_dataset(data_dir, size=IMAGE_SIZE, per_class_train=3, per_class_test=1):
    """8 expressions x `per_class_train` train faces (+ test): hemispheres whose colour and radius follow the class."""
    index = 0
    for split, per_class in (("train", per_class_train), ("test", per_class_test)):
        with records.ShardedWriter(data_dir, split=split, examples_per_shard=16) as writer:
            for expression in range(8):
                for i in range(per_class):
                    example = hemisphere_example(size=size, expression=expression, identity=index % 5,
                                                 key=f"{split}-{index}", radius=0.2 + 0.03 * expression, seed=index)
                    # A class-dependent tint, so the class is visible in RGB as well as in depth.
                    tint = np.array([(expression * 37) % 255, (expression * 91) % 255, 128], np.uint8)
                    example.image = ((example.image.astype(np.uint16) + tint) // 2).astype(np.uint8)
                    writer.write(example)
                    index += 1
    dataset_card.write_dataset_card(data_dir, name="tiny-hemispheres", image_size=size)
    return data_dir


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    return write_tiny_dataset(str(tmp_path_factory.mktemp("tiny_data")))
