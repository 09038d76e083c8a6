"""The transfer trainer's steps on tiny networks and hand-made batches (the data and CLI paths are tested with the
stage)."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from expr3d import losses
from expr3d.models import AUAdversary, DepthTranslator, PatchCritic, TransferDecoder, TransferEncoder
from expr3d.training.expression_transfer import (ExpressionTransferTrainer, action_unit_mask, exemplars,
                                                 teacher_code)

SIZE = 16


def _networks(seed=0):
    keras.utils.set_random_seed(seed)
    sizes = dict(conv_dim=4, num_down=2, num_res_blocks=1, code_dim=8)
    return {
        "encoder": TransferEncoder(**sizes), "decoder": TransferDecoder(**sizes),
        "adversary": AUAdversary(free_channels=16, conv_dim=4, num_bins=3),
        "d_rgb": PatchCritic(SIZE, 17, conv_dim=4, num_layers=2, name="d_rgb"),
        "d_swap": PatchCritic(SIZE, 1, conv_dim=4, num_layers=2, name="d_swap"),
        "g_depth": DepthTranslator(conv_dim=4, num_res_blocks=1, num_down=2, name="g_depth"),
        "d_depth": PatchCritic(SIZE, 17, conv_dim=4, num_layers=2, name="d_depth"),
    }


def _batch(batch_size=4, seed=0, identical=False):
    rng = np.random.default_rng(seed)
    image = rng.uniform(-1, 1, (batch_size, SIZE, SIZE, 3)).astype("float32")
    if identical:
        image[:] = image[0]
    aus = rng.uniform(0, 1, (batch_size, 17)).astype("float32")
    aus[0, 3] = np.nan  # an AU the source lacks
    return {"image": tf.constant(image), "geometry": tf.constant(rng.uniform(-1, 1, image.shape).astype("float32")),
            "action_units": tf.constant(aus), "has_action_units": tf.constant([True] * (batch_size - 1) + [False]),
            "alpha": tf.constant(rng.uniform(size=(batch_size, 1, 1, 1)).astype("float32")),
            "alpha_depth": tf.constant(rng.uniform(size=(batch_size, 1, 1, 1)).astype("float32"))}


def _trainer(networks, depth_weight=0.5, learning_rate=1e-3):
    trainer = ExpressionTransferTrainer(**networks, depth_weight=depth_weight, n_critic=1)
    trainer.compile({key: keras.optimizers.Adam(learning_rate, 0.5, 0.999, name=key) for key in networks})
    trainer.build_optimizers()
    return trainer


def _weights(model):
    return [w.copy() for w in model.get_weights()]


def _changed(before, model):
    return any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


def test_exemplars_roll_the_batch_and_the_mask_drops_missing_aus():
    np.testing.assert_array_equal(exemplars(tf.constant([0, 1, 2, 3])).numpy(), [3, 0, 1, 2])
    mask = action_unit_mask(_batch()).numpy()
    assert mask[0, 3] == 0 and mask[0].sum() == 16  # the NaN
    assert mask[3].sum() == 0  # a record without AUs
    assert mask[1:3].min() == 1
    # The pipeline's per-AU validity (OpenFace has no AU16) wins over the record-level flag.
    batch = _batch()
    batch["action_units_mask"] = tf.concat([tf.ones((4, 5)), tf.zeros((4, 1)), tf.ones((4, 11))], axis=1)
    mask = action_unit_mask(batch).numpy()
    assert mask[:, 5].sum() == 0 and mask[3].sum() == 16 and mask[0].sum() == 15


@pytest.mark.slow  # 3 s in the full suite
def test_each_step_updates_only_its_own_networks_and_logs_finite_terms():
    networks = _networks()
    trainer = _trainer(networks)
    before = {key: _weights(net) for key, net in networks.items()}
    logs = {k: float(v) for k, v in trainer.critic_step(_batch()).items()}
    assert len(trainer.trained_variables("d_swap")) == len(networks["d_swap"].trainable_variables) - 1
    assert set(logs) == {"dr_adv", "dr_au", "dr_gp", "dr_total", "ds_adv", "ds_gp", "ds_total", "adv_au", "dd_adv",
                         "dd_au", "dd_gp", "dd_total"}
    assert all(np.isfinite(v) for v in logs.values()), logs
    critics = {"d_rgb", "d_swap", "adversary", "d_depth"}
    for key, net in networks.items():
        assert _changed(before[key], net) == (key in critics), key
    before = {key: _weights(net) for key, net in networks.items()}
    logs = {k: float(v) for k, v in trainer.generator_step(_batch()).items()}
    assert set(trainer.log_names) == set(logs) | {"dr_adv", "dr_au", "dr_gp", "dr_total", "ds_adv", "ds_gp",
                                                  "ds_total", "adv_au", "dd_adv", "dd_au", "dd_gp", "dd_total"}
    assert all(np.isfinite(v) for v in logs.values()), logs
    for key, net in networks.items():
        assert _changed(before[key], net) == (key in {"encoder", "decoder", "g_depth"}), key
    np.testing.assert_allclose(logs["g_total"], logs["t_total"] + 0.5 * logs["gd_total"], rtol=1e-5)
    for net in networks.values():
        assert all(np.all(np.isfinite(w)) for w in net.get_weights())  # the NaN AU leaked nowhere


@pytest.mark.slow  # 2 s in the full suite
def test_without_depth_guidance_the_depth_networks_are_not_used():
    networks = _networks()
    trainer = _trainer(networks, depth_weight=0.0)
    assert set(trainer.optimizers) == {"encoder", "decoder", "adversary", "d_rgb", "d_swap"}
    before = {key: _weights(networks[key]) for key in ("g_depth", "d_depth")}
    logs = {**trainer.critic_step(_batch()), **trainer.generator_step(_batch())}
    assert not any(name.startswith(("gd_", "dd_")) for name in logs)
    assert not any(_changed(before[key], networks[key]) for key in before)
    with pytest.raises(ValueError, match="depth_weight > 0 needs g_depth"):
        ExpressionTransferTrainer(**{k: v for k, v in networks.items() if k not in ("g_depth", "d_depth")})


@pytest.mark.slow
def test_swap_consistency_on_identical_inputs_is_the_reconstruction():
    """Every face its own exemplar: the swap IS the self-reconstruction, so the swap critic sees the same image as
    real and fake (its WGAN term is exactly 0) and the swap-twice term equals the reconstruction's through the
    swap."""
    trainer = _trainer(_networks())
    batch = _batch(identical=True)
    outputs = trainer._swap(batch["image"], training=False)
    np.testing.assert_allclose(outputs["swapped"].numpy(), outputs["reconstruction"].numpy(), atol=1e-6)
    logs = trainer.critic_step(batch)
    assert abs(float(logs["ds_adv"])) < 1e-5


@pytest.mark.slow
def test_the_paired_term_is_the_self_transfer_to_the_true_render_and_needs_it():
    batch = _batch()
    rng = np.random.default_rng(5)
    target = batch["image"].numpy().copy()
    target[:, 4:10, 4:12] = rng.uniform(-1, 1, target[:, 4:10, 4:12].shape)  # the "expression" changes a region
    batch["target_image"] = tf.constant(target)
    initial = {key: _weights(net) for key, net in _networks().items()}
    results = {}
    for lambda_pair in (0.0, 2.0):
        networks = _networks()
        for key, net in networks.items():
            net.set_weights(initial[key])
        trainer = ExpressionTransferTrainer(**networks, depth_weight=0.0, n_critic=1, lambda_pair=lambda_pair)
        trainer.compile({key: keras.optimizers.SGD(0.1, name=key) for key in networks})
        trainer.build_optimizers()
        code, free, _ = networks["encoder"](batch["image"], training=True)
        target_code, _, _ = networks["encoder"](batch["target_image"], training=True)
        paired, mask, colour = networks["decoder"].with_attention([free, target_code, batch["image"]], training=True)
        region = losses.paired_edit_region(batch["image"], batch["target_image"])
        expected = float(losses.l1_loss(batch["target_image"], paired) + losses.mask_cross_entropy(region, mask)
                         + losses.l1_loss(batch["target_image"], colour, mask=region))
        results[lambda_pair] = (trainer.generator_step(batch), _weights(networks["decoder"]), expected, trainer)
    off, on = results[0.0], results[2.0]
    assert "t_pair" not in off[0] and "t_pair" not in off[3].log_names and "t_pair" in on[3].log_names
    np.testing.assert_allclose(float(on[0]["t_pair"]), on[2], rtol=1e-5)
    np.testing.assert_allclose(float(on[0]["t_total"]), float(off[0]["t_total"]) + 2.0 * on[2], rtol=1e-5)
    assert any(not np.array_equal(a, b) for a, b in zip(on[1], off[1]))  # the term reaches the decoder
    del batch["target_image"]
    with pytest.raises(ValueError, match="lambda_pair / lambda_guide_features / lambda_free_invariance > 0 need "
                                         "paired batches"):
        on[3].generator_step(batch)


def test_with_the_warp_decoder_the_paired_region_is_where_the_render_differs_from_the_moved_source():
    from expr3d.models import TransferGeneratorWarpDecoder

    networks = _networks()
    networks["decoder"] = TransferGeneratorWarpDecoder(conv_dim=4, num_down=2, num_res_blocks=1, code_dim=8)
    networks["decoder"].get_layer("flow_conv").bias.assign(np.array([0.0, np.arctanh(0.5)], np.float32))
    batch = _batch()
    encoder, decoder = networks["encoder"], networks["decoder"]
    # The true render as the moved source itself: all movement, nothing for the colour head (the region is empty,
    # though the render differs from the unmoved source in every column).
    code, free, _ = encoder(batch["image"], training=True)
    moved = decoder.with_attention_and_source([free, code, batch["image"]], training=True)[3]
    assert float(tf.reduce_max(losses.paired_edit_region(batch["image"], moved))) == 1.0
    batch["target_image"] = moved
    trainer = ExpressionTransferTrainer(**networks, depth_weight=0.0, n_critic=1, lambda_pair=2.0)
    trainer.compile({key: keras.optimizers.SGD(0.1, name=key) for key in networks})
    trainer.build_optimizers()
    target_code, _, _ = encoder(batch["target_image"], training=True)
    paired, mask, colour, source = decoder.with_attention_and_source([free, target_code, batch["image"]],
                                                                      training=True)
    region = losses.paired_edit_region(source, batch["target_image"])
    expected = float(losses.l1_loss(batch["target_image"], paired) + losses.mask_cross_entropy(region, mask)
                     + losses.l1_loss(batch["target_image"], colour, mask=region))
    np.testing.assert_allclose(float(trainer.generator_step(batch)["t_pair"]), expected, rtol=1e-5)


def test_with_a_swap_partner_the_paired_term_decodes_the_partner_s_code_to_the_true_render():
    batch = _batch()
    rng = np.random.default_rng(6)
    target = batch["image"].numpy().copy()
    target[:, 4:10, 4:12] = rng.uniform(-1, 1, target[:, 4:10, 4:12].shape)
    partner = rng.uniform(-1, 1, target.shape).astype("float32")  # another face, the target's AUs
    batch.update(target_image=tf.constant(target), partner_image=tf.constant(partner))
    networks = _networks()
    trainer = ExpressionTransferTrainer(**networks, depth_weight=0.0, n_critic=1, lambda_pair=1.0)
    trainer.compile({key: keras.optimizers.SGD(0.0, name=key) for key in networks})
    trainer.build_optimizers()
    _, free, _ = networks["encoder"](batch["image"], training=True)

    def paired_term(code_image):
        code, _, _ = networks["encoder"](code_image, training=True)
        paired, mask, colour = networks["decoder"].with_attention([free, code, batch["image"]], training=True)
        region = losses.paired_edit_region(batch["image"], batch["target_image"])
        return float(losses.l1_loss(batch["target_image"], paired) + losses.mask_cross_entropy(region, mask)
                     + losses.l1_loss(batch["target_image"], colour, mask=region))

    by_partner, by_target = paired_term(batch["partner_image"]), paired_term(batch["target_image"])
    assert abs(by_partner - by_target) > 1e-4  # the test can tell the two codes apart
    np.testing.assert_allclose(float(trainer.generator_step(batch)["t_pair"]), by_partner, rtol=1e-5)
    del batch["partner_image"]
    np.testing.assert_allclose(float(trainer.generator_step(batch)["t_pair"]), by_target, rtol=1e-5)


def test_the_free_invariance_term_compares_the_au_free_maps_of_a_face_and_its_paired_render():
    batch = _batch()
    rng = np.random.default_rng(7)
    target = batch["image"].numpy().copy()
    target[:, 4:10, 4:12] = rng.uniform(-1, 1, target[:, 4:10, 4:12].shape)
    batch["target_image"] = tf.constant(target)
    networks = _networks()
    trainer = ExpressionTransferTrainer(**networks, depth_weight=0.0, n_critic=1, lambda_free_invariance=3.0)
    trainer.compile({key: keras.optimizers.SGD(0.0, name=key) for key in networks})
    trainer.build_optimizers()
    _, free, _ = networks["encoder"](batch["image"], training=True)
    _, target_free, _ = networks["encoder"](batch["target_image"], training=True)
    expected = float(losses.free_invariance_loss(free, target_free))
    assert expected > 0.01 and "t_free" in trainer.log_names and "t_pair" not in trainer.log_names
    logs = trainer.generator_step(batch)
    np.testing.assert_allclose(float(logs["t_free"]), expected, rtol=1e-5)
    # the term reaches the AU-free branch: its gradient on free_conv is non-zero, and zero on the code's dense layer
    with tf.GradientTape() as tape:
        _, free, _ = networks["encoder"](batch["image"], training=True)
        _, target_free, _ = networks["encoder"](batch["target_image"], training=True)
        value = losses.free_invariance_loss(free, target_free)
    free_conv, code_dense = (networks["encoder"].get_layer(name).kernel for name in ("free_conv", "code_dense"))
    gradients = tape.gradient(value, [free_conv, code_dense])
    assert float(tf.reduce_max(tf.abs(gradients[0]))) > 0 and gradients[1] is None
    # identical renders: nothing to be invariant to
    same = dict(batch, target_image=batch["image"])
    assert float(trainer.generator_step(same)["t_free"]) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="does not combine with swap partners"):
        trainer.generator_step(dict(batch, partner_image=batch["target_image"]))
    del batch["target_image"]
    with pytest.raises(ValueError, match="need paired batches"):
        trainer.generator_step(batch)


@pytest.mark.parametrize("detached", [False, True])
def test_a_detached_code_learns_from_the_au_term_alone(detached):
    """`code_detached`: what the decoder draws reaches the code's own weights through no path (its swaps, its
    paired self-transfer, the swap-twice cycle), the AU term still does, and the AU-free map's trunk still learns
    from the decoder; off, the decoder's terms reach the code too."""
    batch = _batch()
    batch["target_image"] = tf.constant(np.flip(batch["image"].numpy(), axis=2))
    networks = _networks()
    trainer = ExpressionTransferTrainer(**networks, depth_weight=0.0, n_critic=1, lambda_pair=1.0,
                                        code_detached=detached)
    assert trainer.get_config()["code_detached"] is detached
    encoder = networks["encoder"]
    code_dense, free_conv = (encoder.get_layer(name).kernel for name in ("code_dense", "free_conv"))
    with tf.GradientTape(persistent=True) as tape:
        outputs = trainer._swap(batch["image"], training=True, target=batch["target_image"])
        drawn = tf.reduce_sum(outputs["swapped"]) + tf.reduce_sum(outputs["paired"])
        aus = tf.reduce_sum(outputs["aus"])
    assert (tape.gradient(drawn, code_dense) is None) is detached
    assert tape.gradient(drawn, free_conv) is not None and tape.gradient(aus, code_dense) is not None
    # A whole warm-up step (the cycle included) trains the code by its AU term alone: without it, not at all.
    silent = ExpressionTransferTrainer(**networks, depth_weight=0.0, n_critic=1, lambda_pair=1.0, lambda_au=0.0,
                                       code_detached=detached, generator_warmup_steps=1)
    silent.compile({key: keras.optimizers.SGD(0.1, name=key) for key in networks})
    silent.build_optimizers()
    before = _weights(encoder.get_layer("code_dense"))
    silent.generator_warmup_step(batch)
    assert _changed(before, encoder.get_layer("code_dense")) is not detached


def test_a_teacher_forced_decode_gets_the_true_aus_where_known_and_the_estimate_elsewhere():
    """`code_teacher`: each training decode (own, exemplar's, paired render's) gets the true AU intensities in place
    of the encoder's estimate where they are known (a NaN or a record without AUs keeps the estimate); the step runs
    on paired batches with the render's AUs and refuses paired batches without them; an encoder with a learned code
    is refused."""
    estimate = tf.constant([[0.2, 0.4], [0.6, 0.8]])
    truth = tf.constant([[1.0, np.nan], [0.0, 0.5]])
    known = tf.constant([[1.0, 0.0], [0.0, 1.0]])
    np.testing.assert_allclose(teacher_code(estimate, truth, known).numpy(), [[1.0, 0.4], [0.6, 0.5]])
    batch = _batch()
    batch["target_image"] = tf.constant(np.flip(batch["image"].numpy(), axis=2))
    batch["target_action_units"] = tf.constant(np.random.default_rng(5).uniform(0, 1, (4, 17)).astype("float32"))
    networks = _networks()
    keras.utils.set_random_seed(0)
    networks["encoder"] = TransferEncoder(conv_dim=4, num_down=2, num_res_blocks=1, code="action_units")
    networks["decoder"] = TransferDecoder(conv_dim=4, num_down=2, num_res_blocks=1, code_dim=17)
    trainer = ExpressionTransferTrainer(**networks, depth_weight=0.0, n_critic=1, lambda_pair=1.0, code_teacher=True)
    assert trainer.get_config()["code_teacher"] is True
    truths = trainer._teacher_truths(batch, with_target=True)
    outputs = trainer._swap(batch["image"], training=True, target=batch["target_image"], truths=truths)
    aus, mask = batch["action_units"].numpy(), action_unit_mask(batch).numpy()
    code = outputs["code"].numpy()
    expected = np.where(mask > 0.5, aus, code)
    np.testing.assert_allclose(outputs["decoded_code"].numpy(), expected)
    assert np.isfinite(expected).all() and expected[0, 3] == code[0, 3] and (expected[3] == code[3]).all()
    # The swap is the decoder's drawing of the exemplar's TRUE AUs (the estimate where the exemplar lacks them).
    exemplar_code = np.where(exemplars(mask).numpy() > 0.5, exemplars(aus).numpy(), exemplars(code).numpy())
    drawn = networks["decoder"]([outputs["free"], tf.constant(exemplar_code), batch["image"]], training=True)
    np.testing.assert_allclose(outputs["swapped"].numpy(), drawn.numpy(), atol=1e-5)
    # The paired self-transfer draws the render's AUs (all known here): the estimate of the render is unused.
    paired = networks["decoder"]([outputs["free"], batch["target_action_units"], batch["image"]], training=True)
    np.testing.assert_allclose(outputs["paired"].numpy(), paired.numpy(), atol=1e-5)
    trainer.compile({key: keras.optimizers.Adam(1e-3, name=key) for key in networks})
    trainer.build_optimizers()
    logs = trainer.generator_step(batch)
    assert np.isfinite(float(logs["g_total"]))
    assert np.isfinite(float(trainer.critic_step(batch)["dr_total"]))
    del batch["target_action_units"]
    with pytest.raises(ValueError, match="needs the paired render's AUs"):
        trainer.generator_step(batch)
    with pytest.raises(ValueError, match="needs an encoder whose code is its AU estimate"):
        ExpressionTransferTrainer(**_networks(), depth_weight=0.0, code_teacher=True)


@pytest.mark.slow  # traces both steps and runs 42 of them: ~30 s here
def test_the_adversary_learns_the_au_bins_and_the_confusion_term_pushes_back():
    """Critic steps alone: the adversary's cross-entropy falls on a fixed batch (it reads AUs from the AU-free map);
    generator steps alone then raise it again (the encoder hides them), the confusion term falling."""
    networks = _networks(seed=1)
    trainer = _trainer(networks, depth_weight=0.0, learning_rate=5e-3)
    batch = _batch(batch_size=8, seed=2)
    critic_step = tf.function(trainer.critic_step)  # graph mode: ~10x faster than eager here
    first = float(critic_step(batch)["adv_au"])
    for _ in range(20):
        learnt = float(critic_step(batch)["adv_au"])
    assert learnt < first - 0.1
    trainer.lambda_confusion = 100.0  # the confusion term alone decides the encoder's steps (read when traced)
    generator_step = tf.function(trainer.generator_step)
    confusion_before = float(generator_step(batch)["t_confusion"])
    for _ in range(20):
        confusion = float(generator_step(batch)["t_confusion"])
    assert confusion < confusion_before
    free = trainer.encoder(batch["image"])[1]
    hidden = float(losses.au_adversary_loss(trainer.adversary(free), batch["action_units"],
                                            action_unit_mask(batch)))
    assert hidden > learnt


def _au_guide(seed=1):
    from expr3d.metrics.expression_classifier import build_classifier

    keras.utils.set_random_seed(seed)
    return build_classifier(SIZE, num_classes=17, width=4)


@pytest.mark.slow  # ~5 s
def test_the_au_guide_reads_the_exemplar_s_aus_in_each_swap_and_compares_the_paired_stage_maps():
    from expr3d.training.guide import with_features

    batch = _batch()
    batch["target_image"] = tf.reverse(batch["image"], axis=[0])  # any other faces as the "true renders"
    guide = _au_guide()
    guide_before = _weights(guide)
    initial = {key: _weights(net) for key, net in _networks().items()}
    results = {}
    for weights in ((0.0, 0.0), (3.0, 2.0)):
        networks = _networks()
        for key, net in networks.items():
            net.set_weights(initial[key])
        trainer = ExpressionTransferTrainer(**networks, depth_weight=0.0, n_critic=1, au_guide=guide,
                                            lambda_guide=weights[0], lambda_guide_features=weights[1])
        trainer.compile({key: keras.optimizers.SGD(0.1, name=key) for key in networks})
        trainer.build_optimizers()
        outputs = trainer._swap(batch["image"], training=True, target=batch["target_image"])
        results[weights] = (trainer, outputs, trainer.generator_step(batch), _weights(networks["decoder"]))
    off, on = results[(0.0, 0.0)], results[(3.0, 2.0)]
    assert off[0].au_guide is None and "g_guide" not in off[2] and "g_guide" not in off[0].log_names
    assert {"g_guide", "g_guide_features"} <= set(on[0].log_names)
    # g_guide: the guide's squared AU error on each swap against its exemplar's AUs (missing AUs masked).
    aus = batch["action_units"].numpy()
    mask = action_unit_mask(batch).numpy()
    exemplar_aus, exemplar_mask = np.roll(aus, 1, axis=0), np.roll(mask, 1, axis=0)
    read = tf.sigmoid(guide(on[1]["swapped"], training=False)).numpy()
    valid = exemplar_mask > 0.5
    expected_guide = np.mean(np.square(read - np.nan_to_num(exemplar_aus))[valid])
    np.testing.assert_allclose(float(on[2]["g_guide"]), expected_guide, rtol=1e-4)
    # g_guide_features: the paired self-transfer's stage maps against the true render's.
    features = with_features(guide)
    ours, theirs = features(on[1]["paired"])[1:], features(batch["target_image"])[1:]
    expected_features = np.mean([float(tf.reduce_mean(tf.abs(a - b))) for a, b in zip(ours, theirs)])
    np.testing.assert_allclose(float(on[2]["g_guide_features"]), expected_features, rtol=1e-4)
    np.testing.assert_allclose(float(on[2]["t_total"]),
                               float(off[2]["t_total"]) + 3.0 * expected_guide + 2.0 * expected_features, rtol=1e-4)
    assert any(not np.array_equal(a, b) for a, b in zip(off[3], on[3]))  # the terms reach the decoder
    # The guide is frozen: read, never trained.
    assert all(np.array_equal(a, b) for a, b in zip(guide_before, guide.get_weights()))
    with pytest.raises(ValueError, match="lambda_pair / lambda_guide_features / lambda_free_invariance > 0 need "
                                         "paired batches"):
        on[0].generator_step({k: v for k, v in batch.items() if k != "target_image"})
    with pytest.raises(ValueError, match="need an au_guide"):
        ExpressionTransferTrainer(**_networks(), depth_weight=0.0, lambda_guide=1.0)



@pytest.mark.slow  # 3 s in the full suite
def test_the_generator_warmup_trains_the_encoder_and_decoder_alone_on_the_critic_free_terms():
    batch = _batch()
    target = batch["image"].numpy().copy()
    target[:, 4:10, 4:12] *= -1.0
    batch["target_image"] = tf.constant(target)
    results = {}
    for cycle in (True, False):
        networks = _networks()
        trainer = ExpressionTransferTrainer(**networks, depth_weight=0.5, n_critic=2, lambda_pair=2.0,
                                            generator_warmup_steps=3, generator_warmup_cycle=cycle)
        trainer.compile({key: keras.optimizers.Adam(1e-3, 0.5, 0.999, name=key) for key in networks})
        trainer.build_optimizers()
        assert [trainer.step_kind(step) for step in range(7)] == ["generator_warmup"] * 3 + ["critic", "both"] * 2
        before = {key: _weights(net) for key, net in networks.items()}
        logs = {k: float(v) for k, v in trainer.generator_warmup_step(batch).items()}
        for key, net in networks.items():
            assert _changed(before[key], net) == (key in {"encoder", "decoder"}), key
        results[cycle] = logs
    assert set(results[True]) == {"t_rec", "t_cycle", "t_au", "t_mask", "t_pair", "t_total", "g_total"}
    assert set(results[False]) == set(results[True]) - {"t_cycle"}
    on = results[True]
    np.testing.assert_allclose(on["t_total"], on["t_au"] + 10 * (on["t_rec"] + on["t_cycle"]) + 0.1 * on["t_mask"]
                               + 2.0 * on["t_pair"], rtol=1e-5)
    assert on["g_total"] == on["t_total"]  # no depth term in the warm-up
    with pytest.raises(ValueError, match="generator_warmup_steps > 0 trains on the paired term"):
        ExpressionTransferTrainer(**_networks(), generator_warmup_steps=3)


def test_a_guide_code_reads_with_a_frozen_copy_of_the_au_guide_that_no_step_changes():
    """`code="guide"`: the trainer copies its AU guide into the encoder's reader (frozen), a teacher-forced generator
    step and a critic step leave that copy as it was while the AU-free map's trunk learns; without a guide it is
    refused."""
    guide = _au_guide()
    networks = _networks()
    networks["encoder"] = TransferEncoder(conv_dim=4, num_down=2, num_res_blocks=1, code="guide", reader_width=4)
    networks["decoder"] = TransferDecoder(conv_dim=4, num_down=2, num_res_blocks=1, code_dim=17)
    with pytest.raises(ValueError, match="code='guide' reads its code with a copy of the AU guide"):
        ExpressionTransferTrainer(**networks, depth_weight=0.0)
    trainer = ExpressionTransferTrainer(**networks, depth_weight=0.0, n_critic=1, au_guide=guide, code_teacher=True)
    reader = networks["encoder"].get_layer("code_reader")
    for mine, theirs in zip(reader.get_weights(), guide.get_weights(), strict=True):
        np.testing.assert_array_equal(mine, theirs)
    trainer.compile({key: keras.optimizers.Adam(1e-2, name=key) for key in networks})
    trainer.build_optimizers()
    before, trunk = _weights(reader), _weights(networks["encoder"].get_layer("free_conv"))
    batch = _batch()
    for step in (trainer.critic_step, trainer.generator_step):
        assert np.isfinite(float(step(batch)[{"critic_step": "dr_total"}.get(step.__name__, "g_total")]))
    assert not _changed(before, reader) and _changed(trunk, networks["encoder"].get_layer("free_conv"))
