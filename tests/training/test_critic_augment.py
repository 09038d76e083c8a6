import numpy as np
import pytest
import tensorflow as tf

from expr3d.training import critic_augment, inputs
from expr3d.training.config import TrainConfig, UsageError
from expr3d.training.depth_guided_stargan import DepthGuidedStarGAN
from tests.training.helpers import adam, fixed_batch, tiny_networks

SIZE = 16


def _images(batch=2, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (batch, SIZE, SIZE, 3)).astype(np.float32)


def _uniforms(batch=2, **values):
    """Uniforms that leave every policy's image unchanged (no shift, no colour change), but for `values`
    (name -> [per-example values]); the cutout centre is far outside unless set."""
    u = np.full((batch, critic_augment.NUM_UNIFORMS), 0.5, np.float32)
    u[:, 2:4] = 10.0  # a centre 10 sides away: the hole misses the image
    columns = {"shift_x": 0, "shift_y": 1, "cut_x": 2, "cut_y": 3, "brightness": 4, "saturation": 5, "contrast": 6}
    for name, value in values.items():
        u[:, columns[name]] = value
    return u


def test_parse_policy():
    assert critic_augment.parse_policy("") == ()
    assert critic_augment.parse_policy(None) == ()
    assert critic_augment.parse_policy(" translation, cutout ") == ("translation", "cutout")
    with pytest.raises(ValueError, match=r"--critic_augment: unknown blur; expected a comma list of translation"):
        critic_augment.parse_policy("translation,blur")
    with pytest.raises(ValueError, match="names a policy twice"):
        critic_augment.parse_policy("cutout,cutout")


def test_neutral_draws_leave_the_images_unchanged():
    images = _images()
    out = critic_augment.augment(images, _uniforms(), critic_augment.POLICIES).numpy()
    np.testing.assert_allclose(out, images, atol=1e-6)
    np.testing.assert_array_equal(critic_augment.augment(images, _uniforms(), ()).numpy(), images)


def test_translation_shifts_each_example_by_its_own_whole_pixels_and_fills_zeros():
    images = _images()
    # Limit 2 px at 16 px: u = 1 -> +2, u = 0 -> -2, u = 0.75 -> +1.
    out = critic_augment.augment(images, _uniforms(shift_x=[1.0, 0.5], shift_y=[0.5, 0.0]), ("translation",)).numpy()
    expected = np.zeros_like(images)
    expected[0, :, 2:] = images[0, :, :-2]       # right by 2
    expected[1, :-2, :] = images[1, 2:, :]       # up by 2
    np.testing.assert_allclose(out, expected, atol=1e-6)
    out = critic_augment.augment(images, _uniforms(shift_x=[0.75, 0.75]), ("translation",)).numpy()
    np.testing.assert_allclose(out[:, :, 1:], images[:, :, :-1], atol=1e-6)
    assert np.all(out[:, :, 0] == 0)


def test_cutout_zeroes_a_half_side_square_at_its_centre_only():
    images = _images()
    out = critic_augment.augment(images, _uniforms(cut_x=[0.5, 0.0], cut_y=[0.5, 0.0]), ("cutout",)).numpy()
    hole = np.zeros((2, SIZE, SIZE), bool)
    hole[0, 5:12, 5:12] = True  # |i - 8| < 4
    hole[1, :4, :4] = True      # centre (0, 0), clipped by the border
    assert np.all(out[hole] == 0)
    np.testing.assert_array_equal(out[~hole], images[~hole])


def test_colour_brightness_saturation_contrast():
    images = _images(batch=1)
    out = critic_augment.augment(images, _uniforms(batch=1, brightness=[0.75]), ("colour",)).numpy()
    np.testing.assert_allclose(out, images + 0.25, atol=1e-6)
    grey = critic_augment.augment(images, _uniforms(batch=1, saturation=[0.0]), ("colour",)).numpy()
    np.testing.assert_allclose(grey, np.repeat(images.mean(-1, keepdims=True), 3, -1), atol=1e-6)
    flat = critic_augment.augment(images, _uniforms(batch=1, contrast=[-0.5]), ("colour",)).numpy()
    np.testing.assert_allclose(flat, np.full_like(images, images.mean()), atol=1e-6)


def test_the_gradient_reaches_the_images_through_every_policy():
    images = tf.constant(_images())
    with tf.GradientTape() as tape:
        tape.watch(images)
        out = critic_augment.augment(images, _uniforms(shift_x=0.75, cut_x=0.5, cut_y=0.5, saturation=0.8),
                                     critic_augment.POLICIES)
        total = tf.reduce_sum(out * tf.constant(_images(seed=1)))
    gradient = tape.gradient(total, images).numpy()
    assert np.count_nonzero(gradient) > 0.5 * gradient.size  # all but the hole and the shifted-out column


def test_the_inputs_draw_the_uniforms_on_their_own_stream(tiny_dataset):
    dataset = lambda augment: inputs.training_dataset(tiny_dataset, 4, 32, "depth", 8, seed=3,  # noqa: E731
                                                      critic_augment=augment)
    plain, augmented = next(iter(dataset(False))), next(iter(dataset(True)))
    assert "critic_augment" not in plain
    uniforms = augmented.pop("critic_augment").numpy()
    assert uniforms.shape == (4, critic_augment.DRAWS, critic_augment.NUM_UNIFORMS)
    assert 0.0 <= uniforms.min() and uniforms.max() < 1.0 and uniforms.std() > 0.1
    assert plain.keys() == augmented.keys()
    for key in plain:  # every other draw (targets, penalty weights) is the same
        np.testing.assert_array_equal(plain[key].numpy(), augmented[key].numpy())


@pytest.mark.slow  # in-process; traces the stage-2 steps three times
def test_d_rgb_sees_the_augmented_images_in_both_steps(tiny_dataset):
    batch = fixed_batch(tiny_dataset)
    batch["critic_augment"] = tf.constant(
        np.broadcast_to(_uniforms(batch=4)[:, None], (4, critic_augment.DRAWS, critic_augment.NUM_UNIFORMS)).copy())

    def logs_of(policy, batch):
        networks = tiny_networks(seed=2)
        gan = DepthGuidedStarGAN(**networks, depth_weight=0.0, n_critic=1, critic_augment=policy)
        gan.compile(optimizers={key: adam(key) for key in networks})
        gan.build_optimizers()
        critic = {k: float(v) for k, v in gan.critic_step(batch).items()}
        generator = {k: float(v) for k, v in gan.generator_step(batch).items()}
        return critic, generator

    plain = logs_of((), batch)
    neutral = logs_of(("translation", "cutout"), batch)  # neutral draws: D_rgb sees the same images
    for a, b in zip(plain, neutral):
        assert a.keys() == b.keys()
        np.testing.assert_allclose([a[k] for k in a], [b[k] for k in a], rtol=1e-5, atol=1e-6)
    shifted = dict(batch)
    uniforms = batch["critic_augment"].numpy()
    uniforms[:, :, 2:4] = 0.5  # a hole in the middle of every image D_rgb sees, in every draw
    shifted["critic_augment"] = tf.constant(uniforms)
    critic, generator = logs_of(("translation", "cutout"), shifted)
    assert abs(critic["d_cls"] - plain[0]["d_cls"]) > 1e-4
    assert abs(generator["g_cls"] - plain[1]["g_cls"]) > 1e-4
    assert generator["g_rec"] == pytest.approx(plain[1]["g_rec"], rel=1e-5)  # G_rgb's own terms: unaugmented
    missing = dict(batch)
    del missing["critic_augment"]
    with pytest.raises(ValueError, match="critic_augment needs batches"):
        logs_of(("cutout",), missing)


def test_config_checks_the_policy_and_keeps_it_to_the_stargan_family():
    base = dict(data_dir="data", model_dir="runs/a")
    TrainConfig(**base, critic_augment="translation,colour").validate()
    with pytest.raises(UsageError, match="--critic_augment: unknown blur"):
        TrainConfig(**base, critic_augment="blur").validate()
    with pytest.raises(UsageError, match="--critic_augment=cutout is a setting of --model=stargan"):
        TrainConfig(**base, critic_augment="cutout", model="transfer").validate()


@pytest.mark.slow  # a training process: ~10 s
def test_train_cli_trains_with_the_augmentation_and_records_it(tiny_dataset, tmp_path):
    import json

    from tests import forked_cli
    from tests.training.test_train import TINY_FLAGS

    model_dir = tmp_path / "run"
    done = forked_cli.run(["-m", "expr3d.train", f"--data_dir={tiny_dataset}", f"--model_dir={model_dir}",
                           *TINY_FLAGS, "--depth_weight=0", "--num_steps_gan=2", "--checkpoint_every=0",
                           "--sample_every=0", "--num_samples=2", "--progress=false",
                           "--critic_augment=translation,cutout,colour"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    config = json.loads((model_dir / "config.json").read_text())
    assert config["flags"]["critic_augment"] == "translation,cutout,colour" and config["progress"]["gan"] == 2
    done = forked_cli.run(["-m", "expr3d.train", f"--data_dir={tiny_dataset}", f"--model_dir={tmp_path / 'bad'}",
                           "--critic_augment=blur"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        "expr3d.train: error: --critic_augment: unknown blur; expected a comma list of translation, cutout, colour "
        "(empty = off)"], done.stderr
