import numpy as np

from expr3d.metrics import identity
from tests.metrics import fixtures


def test_distances_of_identical_embeddings_are_zero():
    e = np.random.default_rng(0).normal(size=(5, 7))
    l2, l2_unit, cosine = identity.embedding_distances(e, e)
    np.testing.assert_allclose(l2, 0, atol=1e-12)
    np.testing.assert_allclose(cosine, 0, atol=1e-12)
    l2, _, cosine = identity.embedding_distances(e, -e)
    np.testing.assert_allclose(cosine, 2.0)
    np.testing.assert_allclose(l2, 2 * np.linalg.norm(e, axis=1))


def test_keras_file_and_savedmodel_give_the_same_embeddings(tmp_path):
    model = fixtures.embedding_model()
    keras_path = str(tmp_path / "embed.keras")
    model.save(keras_path)
    saved_model = str(tmp_path / "embed_savedmodel")
    model.export(saved_model, verbose=False)
    images = np.random.default_rng(1).uniform(-1, 1, (3, 32, 32, 3)).astype(np.float32)
    from_keras = identity.EmbeddingModel(keras_path)(images)
    from_savedmodel = identity.EmbeddingModel(saved_model)(images)
    assert from_keras.shape == (3, 6)
    np.testing.assert_allclose(from_keras, from_savedmodel, rtol=1e-4, atol=1e-5)
    # the [-1, 1] -> [0, 255] rescaling changes what the model sees
    assert not np.allclose(identity.EmbeddingModel(keras_path, input_range="0,255")(images), from_keras)
