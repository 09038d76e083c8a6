"""Where the stage-2 critic step's time goes, at StarGAN's reference config (64 px, batch 8, full size, plain mode):
the trainer's critic step vs the same step WITHOUT the gradient penalty vs one with D(real) and D(fake) merged into
one batch-16 call. Alternated in one process, best of 4 each; prints the times and the ratios.

    python benchmarks/bench_critic_parts.py [float32|mixed_bfloat16]
"""
import os
import sys
import time

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # this checkout's expr3d first
import tensorflow as tf  # noqa: E402
from bench_train import build, random_batch  # noqa: E402

from expr3d import losses  # noqa: E402
from expr3d.training import common  # noqa: E402

gan, nets, size, bs = build("reference", 0.0, sys.argv[1] if len(sys.argv) > 1 else "float32")
batch = random_batch(size, bs)

def inputs_and_fake(batch):
    """The critic step's own preamble: real images, labels and G's (stopped) translation to the targets."""
    image, labels = batch["image"], batch["expression"]
    target = common.class_one_hot(batch["target"], gan.num_classes)
    return image, labels, tf.stop_gradient(gan.g_rgb([image, target], training=True))


def scaled(total):
    """Call inside the tape, so the scaling is recorded."""
    return common.scaled_for_update(total, [gan._optimizers["d_rgb"]])


def update_critic(tape, scaled_total, total):
    common.apply_updates(tape, scaled_total, [gan._optimizers["d_rgb"]], [gan.d_rgb.trainable_variables],
                         computed_first=[total])
    return {"d_total": total}


def new_critic(batch):
    image, labels, fake = inputs_and_fake(batch)
    with tf.GradientTape() as tape:
        src, cls = gan.d_rgb(tf.concat([image, tf.cast(fake, image.dtype)], 0), training=True)
        real_src, fake_src = tf.split(src, 2)
        real_cls = cls[:tf.shape(image)[0]]
        d_adv = losses.critic_adversarial_loss(real_src, fake_src)
        d_cls = losses.classification_loss(real_cls, labels)
        d_gp = common.gradient_penalty(gan.d_rgb, image, fake, batch["alpha"])
        total = d_adv + d_cls + 10 * d_gp
        scaled_total = scaled(total)
    return update_critic(tape, scaled_total, total)


def nogp_critic(batch):
    image, labels, fake = inputs_and_fake(batch)
    with tf.GradientTape() as tape:
        real_src, real_cls = gan.d_rgb(image, training=True)
        fake_src, _ = gan.d_rgb(fake, training=True)
        total = losses.critic_adversarial_loss(real_src, fake_src) + losses.classification_loss(real_cls, labels)
        scaled_total = scaled(total)
    return update_critic(tape, scaled_total, total)


fns = {"old": tf.function(gan.critic_step), "merged": tf.function(new_critic), "no_gp": tf.function(nogp_critic)}
for f in fns.values(): f(batch)["d_total"].numpy()
best = {k: 1e9 for k in fns}
for r in range(4):
    for k, f in fns.items():
        t = time.perf_counter(); f(batch)["d_total"].numpy(); best[k] = min(best[k], time.perf_counter() - t)
print("seconds (best of 4):", {k: round(v, 3) for k, v in best.items()})
print(f"gradient penalty share of the critic step: {1 - best['no_gp'] / best['old']:.0%}; "
      f"merged real/fake critic call / trainer's: {best['merged'] / best['old']:.3f}")
