"""Mixed precision: float16 trains through LossScaleOptimizers, bfloat16 without; losses and outputs stay float32."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from expr3d.training import runtime
from expr3d.training.depth_guided_stargan import DepthGuidedStarGAN
from expr3d.training.loop import make_distributed_step
from tests.training.helpers import fixed_batch, tiny_networks


@pytest.mark.slow
@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_one_depth_guided_iteration_under_mixed_precision(tiny_dataset, policy):
    """float16 runs XLA-compiled (--jit_compile), the GPU set-up: with the depth stage's test below, one iteration
    of each stage under float16, loss scaling and XLA."""
    batch = fixed_batch(tiny_dataset, batch_size=2)
    try:
        loss_scaled = runtime.set_precision(policy)
        assert loss_scaled == (policy == "mixed_float16")  # bfloat16 has float32's exponent range: no scaling
        networks = tiny_networks()
        gan = DepthGuidedStarGAN(**networks, depth_weight=0.5, n_critic=1)
        gan.compile(optimizers={k: runtime.make_optimizer(1e-3, 0.5, 0.999, loss_scaled, k) for k in networks})
        gan.build_optimizers()
        assert all(isinstance(o, keras.optimizers.LossScaleOptimizer) == loss_scaled for o in gan.optimizers.values())
        before = [w.copy() for w in networks["g_rgb"].get_weights()]
        step = make_distributed_step(tf.distribute.get_strategy(), gan, update_generator=True,
                                     jit_compile=policy == "mixed_float16")
        for iteration in range(10):
            logs = step(batch)
            assert all(v.dtype == tf.float32 and np.isfinite(float(v)) for v in logs.values())
            if not all(np.array_equal(a, b) for a, b in zip(before, networks["g_rgb"].get_weights())):
                break
        else:
            pytest.fail("G_rgb never changed")
        if loss_scaled:
            # Dynamic loss scaling: overflowing float16 steps are skipped and the scale halved until gradients fit.
            scale = float(gan.optimizers["g_rgb"].dynamic_scale.numpy())
            assert (iteration == 0) == (scale == 2.0**15), (iteration, scale)
        assert all(v.dtype == "float32" for v in networks["g_rgb"].weights)  # float32 master weights
        out = networks["g_rgb"]([batch["image"], tf.one_hot(batch["target"], 8)])
        src, cls = networks["d_depth"](batch["geometry"])
        assert out.dtype == src.dtype == cls.dtype == tf.float32  # final activations in float32
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_auto_precision_picks_bfloat16_only_where_the_cpu_computes_it(tmp_path, monkeypatch):
    from expr3d.training import runtime

    avx2 = tmp_path / "avx2"
    avx2.write_text("flags\t\t: fpu sse sse2 avx avx2 fma\n")
    amx = tmp_path / "amx"
    amx.write_text("flags\t\t: fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n")
    assert not runtime.cpu_has_native_bfloat16(str(avx2))
    assert runtime.cpu_has_native_bfloat16(str(amx))
    assert not runtime.cpu_has_native_bfloat16(str(tmp_path / "missing"))
    assert runtime.resolve_precision("float32") == "float32"
    monkeypatch.setattr(runtime, "cpu_has_native_bfloat16", lambda: False)
    assert runtime.resolve_precision("auto") == "float32"  # this test machine has no GPU
    monkeypatch.setattr(runtime, "cpu_has_native_bfloat16", lambda: True)
    assert runtime.resolve_precision("auto") == "mixed_bfloat16"


@pytest.mark.slow
def test_float16_with_loss_scaling_runs_a_depth_iteration(tiny_dataset):
    """GPU readiness, as far as a CPU can check it: --mixed_precision=mixed_float16 with loss scaling, one iteration
    of stage 1 through the training loop's distributed step (stage 2, XLA-compiled: the test above; XLA on this
    stage too cost 20 s of the suite's budget)."""
    from expr3d.training.depth_pretrainer import DepthPretrainer

    batch = fixed_batch(tiny_dataset, batch_size=2)
    try:
        assert runtime.set_precision("mixed_float16")
        networks = tiny_networks()
        optimizer = lambda name: runtime.make_optimizer(1e-3, 0.5, 0.999, True, name)  # noqa: E731
        depth = DepthPretrainer(networks["g_depth"], networks["d_depth"], perceptual_weight=0.0, n_critic=1)
        depth.compile(g_optimizer=optimizer("g"), d_optimizer=optimizer("d"))
        depth.build_optimizers()
        assert all(isinstance(o, keras.optimizers.LossScaleOptimizer) for o in depth.optimizers.values())
        step = make_distributed_step(tf.distribute.get_strategy(), depth, update_generator=True)
        logs = step(batch)
        assert logs and all(v.dtype == tf.float32 and np.isfinite(float(v)) for v in logs.values()), logs
    finally:
        keras.mixed_precision.set_global_policy("float32")
