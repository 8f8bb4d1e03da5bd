import pytest
import torch
from torch import nn

from lipkit.models import count_parameters, decodernw, deep_decoder, deep_decoder_input, network_input, skip_net
from lipkit.pruning.masks import prunable_weights


def n_bn(net):
    return sum(p.numel() for m in net.modules() if isinstance(m, nn.BatchNorm2d) for p in m.parameters())


def test_lip_backbone_counts():
    net = skip_net()
    assert count_parameters(net) == 2_217_831
    convs = prunable_weights(net)
    assert len(convs) == 26
    assert sum(w.numel() for w in convs.values()) == 2_208_768
    assert sum(m.bias.numel() for m in net.modules() if isinstance(m, nn.Conv2d)) == 2_583
    assert n_bn(net) == 6_480
    assert sum(isinstance(m, nn.BatchNorm2d) for m in net.modules()) == 30


def test_lip_backbone_layers_match_the_reference():
    net = skip_net()
    assert any(isinstance(m, nn.ReflectionPad2d) for m in net.modules())
    assert any(isinstance(m, nn.Sigmoid) for m in net.modules())
    ups = [m for m in net.modules() if isinstance(m, nn.Upsample)]
    assert len(ups) == 5 and all(u.mode == "bilinear" and u.align_corners is False for u in ups)
    acts = [m for m in net.modules() if isinstance(m, nn.LeakyReLU)]
    assert acts and all(a.negative_slope == 0.2 for a in acts)
    strided = [m for m in net.modules() if isinstance(m, nn.Conv2d) and m.stride == (2, 2)]
    assert len(strided) == 5


def test_state_dict_names_follow_dip():
    # The official LIP code keeps '1.0.1.1' and '1.1.1.1' (the convs reading z) dense.
    convs = prunable_weights(skip_net())
    assert convs["1.0.1.1.weight"].shape == (4, 32, 1, 1)
    assert convs["1.1.1.1.weight"].shape == (128, 32, 3, 3)


@pytest.mark.parametrize("kwargs,expected", [
    # counts worked out by hand in the shared reference (section 1.12)
    (dict(num_output_channels=1), 2_217_573),
    (dict(num_input_channels=3, num_channels_down=[8, 16, 32, 64, 128], num_channels_up=[8, 16, 32, 64, 128],
          num_channels_skip=[0, 0, 0, 4, 4]), 572_827),
    (dict(num_input_channels=2, num_channels_skip=[0] * 5, upsample_mode="nearest"), 2_157_955),
    (dict(num_channels_skip=[128] * 5, upsample_mode="nearest"), 3_002_627),
    (dict(num_input_channels=1, num_channels_down=[16, 32, 64, 128, 128, 128],
          num_channels_up=[16, 32, 64, 128, 128, 128], num_channels_skip=[0] * 6, filter_size_down=5,
          filter_size_up=3, upsample_mode="nearest", need1x1_up=False), 2_996_467),
])
def test_other_dip_configurations(kwargs, expected):
    assert count_parameters(skip_net(**kwargs)) == expected


def test_skip_net_shapes_and_bad_sizes():
    net = skip_net(num_input_channels=4, num_channels_down=[8, 8], num_channels_up=[8, 8], num_channels_skip=[2, 2])
    z = network_input(net, 16, 24)
    assert z.shape == (1, 4, 16, 24)
    out = net(z)
    assert out.shape == (1, 3, 16, 24) and out.min() >= 0 and out.max() <= 1
    with pytest.raises(ValueError, match="multiples of 4"):
        network_input(net, 18, 24)


def test_skip_net_rejects_eval_and_bad_arguments():
    net = skip_net(num_channels_down=[8], num_channels_up=[8], num_channels_skip=[2])
    with pytest.raises(RuntimeError, match="train mode"):
        net.eval()
    with pytest.raises(ValueError, match="equal lengths"):
        skip_net(num_channels_down=[8, 8], num_channels_up=[8], num_channels_skip=[2])
    with pytest.raises(ValueError, match="upsample_mode"):
        skip_net(upsample_mode="bicubic")


def test_lanczos_downsampling_mode_builds_and_runs():
    net = skip_net(num_input_channels=2, num_channels_down=[4, 4], num_channels_up=[4, 4],
                   num_channels_skip=[1, 1], downsample_mode="lanczos2")
    assert net(torch.rand(1, 2, 32, 32)).shape == (1, 3, 32, 32)


@pytest.mark.parametrize("k", [32, 64, 128, 256, 316])
def test_deep_decoder_count_formula(k):
    assert count_parameters(deep_decoder(k)) == 6 * k * k + 15 * k


def test_deep_decoder_reference_counts():
    assert count_parameters(deep_decoder(128)) == 100_224
    assert count_parameters(decodernw(4, [256] * 5)) == 397_312  # the RGBA poster notebook
    assert count_parameters(deep_decoder(128, layers=6)) == 116_864
    net = deep_decoder(128)
    assert all(m.bias is None and m.kernel_size == (1, 1) for m in net.modules() if isinstance(m, nn.Conv2d))


def test_deep_decoder_input_and_output():
    net = deep_decoder(16)
    z = deep_decoder_input(net, 64, 96)
    assert z.shape == (1, 16, 2, 3)
    assert net(z).shape == (1, 3, 64, 96)
    with pytest.raises(ValueError, match="divisible by 32"):
        deep_decoder_input(net, 50, 64)


@pytest.mark.parametrize("shape", [(1, 8, 4, 4), (2, 3, 5, 7), (1, 132, 64, 64), (1, 4, 9, 4), (1, 4, 3, 6)])
def test_reflection_pad_gradient_is_pytorchs_bit_for_bit(shape, monkeypatch):
    from lipkit.models.common import ReflectionPad

    monkeypatch.setattr(ReflectionPad, "min_numel", 0)  # the fast path for small tensors too

    gen = torch.Generator().manual_seed(sum(shape))
    x = torch.randn(shape, generator=gen, requires_grad=True)
    g = torch.randn(shape[0], shape[1], shape[2] + 2, shape[3] + 2, generator=gen)
    ours = ReflectionPad(1)(x)
    (g_ours,) = torch.autograd.grad(ours, x, g)
    theirs = nn.functional.pad(x, (1, 1, 1, 1), mode="reflect")
    (g_theirs,) = torch.autograd.grad(theirs, x, g)
    assert torch.equal(ours, theirs) and torch.equal(g_ours, g_theirs)


def test_reflection_pad_works_under_vmap():
    from torch.func import grad, vmap

    from lipkit.models.common import ReflectionPad

    x = torch.randn(3, 1, 2, 6, 6)
    pad = ReflectionPad(1)
    pad.min_numel = 0
    per_sample = vmap(grad(lambda t: (pad(t) ** 3).sum()))(x)
    expected = torch.stack([torch.autograd.grad((nn.functional.pad(t, (1, 1, 1, 1), mode="reflect") ** 3).sum(),
                                                t)[0] for t in x.clone().requires_grad_().unbind()])
    assert torch.equal(per_sample, expected)


def test_reflection_pad_takes_the_fast_path_where_it_pays(monkeypatch):
    from lipkit.models import common

    calls = []
    monkeypatch.setattr(common, "_reflection_pad1_backward",
                        lambda g: calls.append(g.shape) or nn.functional.pad(g, (-1, -1, -1, -1)))
    for shape in [(1, 64, 64, 64), (1, 32, 64, 64)]:
        x = torch.randn(shape, requires_grad=True)
        common.ReflectionPad(1)(x).sum().backward()
    assert calls == [torch.Size([1, 64, 66, 66])]  # 262,144 elements: fast; 131,072: PyTorch's


def test_theta0_is_drawn_on_the_cpu_whatever_the_default_device():
    # every study's initial weights come from models.theta0; under another default device (here
    # "meta", which holds no numbers) it still draws the seed's weights on the CPU
    from lipkit.models import theta0

    arch = dict(num_channels_down=[8] * 5, num_channels_up=[8] * 5)
    for build, kwargs in ((skip_net, arch), (deep_decoder, dict(k=8, layers=2, out_channels=3))):
        plain = theta0(3, build, **kwargs).state_dict()
        with torch.device("meta"):
            guarded = theta0(3, build, **kwargs).state_dict()
        assert all(t.device.type == "cpu" for t in guarded.values())
        assert all(torch.equal(plain[k], guarded[k]) for k in plain)
        other = theta0(4, build, **kwargs).state_dict()
        assert any(not torch.equal(plain[k], other[k]) for k in plain if plain[k].is_floating_point())
