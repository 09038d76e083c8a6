import pytest

from benchmarks.flops import forward_flops
from expr3d.models import PatchCritic, StarGANGenerator, VGG19Features


def _critic_macs(size, cin, conv_dim, num_layers, num_classes):
    macs, channels, s = 0, cin, size
    for i in range(num_layers):
        s //= 2
        out = conv_dim * 2**i
        macs += s * s * out * 16 * channels
        channels = out
    macs += s * s * 1 * 9 * channels  # src head, stride 1, same padding
    macs += 1 * 1 * num_classes * s * s * channels  # cls head covers the whole map
    return macs


def _generator_macs(size, cond_dim, conv_dim, num_res_blocks, num_down):
    macs = size * size * conv_dim * 49 * (3 + cond_dim)
    channels, s = conv_dim, size
    for _ in range(num_down):
        s //= 2
        macs += s * s * channels * 2 * 16 * channels
        channels *= 2
    macs += num_res_blocks * 2 * s * s * channels * 9 * channels
    for _ in range(num_down):
        macs += s * s * channels * 16 * (channels // 2)  # transposed: every input pixel
        s *= 2
        channels //= 2
    macs += size * size * 3 * 49 * channels
    return macs


@pytest.mark.parametrize("batch", [1, 4])
def test_critic_flops_match_hand_count(batch):
    d = PatchCritic(32, 8, conv_dim=8, num_layers=3)
    assert forward_flops(d, (batch, 32, 32, 3)) == 2 * batch * _critic_macs(32, 3, 8, 3, 8)


def test_generator_flops_match_hand_count_at_any_size():
    g = StarGANGenerator(cond_dim=5, conv_dim=8, num_res_blocks=2)
    for size in (16, 32):
        flops, per_layer = forward_flops(g, [(3, size, size, 3), (3, 5)], per_layer=True)
        assert flops == 2 * 3 * _generator_macs(size, 5, 8, 2, 2)
        assert len(per_layer) == 1 + 2 + 2 * 2 + 2 + 1 and sum(per_layer.values()) == flops
    # The walker leaves the layers' call methods as they were.
    assert all("call" not in layer.__dict__ for layer in g.layers)


def test_full_size_stargan_generator_flops():
    # StarGAN at 128 px with 8 classes: ~10.1 G multiply-accumulates per image.
    g = StarGANGenerator(cond_dim=8)
    assert forward_flops(g, [(1, 128, 128, 3), (1, 8)]) == 2 * _generator_macs(128, 8, 64, 6, 2)


def test_nested_models_are_walked():
    vgg = VGG19Features(weights=None, layers=("block1_conv2",))
    # block1_conv1 (3 -> 64) and block1_conv2 (64 -> 64), 3x3, at full resolution.
    assert forward_flops(vgg, (2, 16, 16, 3)) == 2 * 2 * 16 * 16 * 64 * 9 * (3 + 64)


def test_batch_sizes_must_agree():
    g = StarGANGenerator(cond_dim=2, conv_dim=4, num_res_blocks=0)
    with pytest.raises(ValueError, match="batch"):
        forward_flops(g, [(2, 16, 16, 3), (3, 2)])
