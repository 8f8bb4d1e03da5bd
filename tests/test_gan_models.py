import hashlib
import math
import pickle
import sys
import types

import pytest
import torch
import torch.nn.functional as F

from lipkit.models.dcgan import DCGANCritic, DCGANGenerator, from_gan_face_generate
from lipkit.models.pggan import (
    CELEBAHQ_256_FILE,
    PGGANDiscriminator,
    PGGANGenerator,
    load_pgan_zoo_checkpoint,
    minibatch_stddev,
)

TINY = (16, 16, 8)


def test_dcgan_family_shapes_and_sizes():
    g, d = DCGANGenerator(nz=32, ngf=16, nc=1, size=32), DCGANCritic(ndf=16, nc=1, size=32)
    x = g(torch.randn(5, 32, 1, 1)).detach()
    assert x.shape == (5, 1, 32, 32) and float(x.abs().max()) <= 1
    assert d(x).shape == (5,)
    face = DCGANGenerator(nz=100, ngf=64, nc=3, size=64)
    assert sum(p.numel() for p in face.parameters()) == 3_576_704  # the gan-face-generate network
    assert face(torch.randn(1, 100)).shape == (1, 3, 64, 64)
    with pytest.raises(ValueError, match="size must be one of"):
        DCGANGenerator(size=48)


def test_face_generator_from_the_wheel_or_a_clear_error(monkeypatch):
    pytest.importorskip("gan_face_generate")
    g = from_gan_face_generate()
    x = g(torch.randn(2, 100, generator=torch.Generator().manual_seed(0))).detach()
    assert x.shape == (2, 3, 64, 64) and float(x.std()) > 0.1
    monkeypatch.setitem(sys.modules, "gan_face_generate", None)  # as if not installed
    with pytest.raises(ModuleNotFoundError, match="pip install --no-deps gan-face-generate==1.1.1"):
        from_gan_face_generate()


def test_pggan_celebahq256_sizes_and_names():
    g, d = PGGANGenerator(), PGGANDiscriminator()
    assert sum(p.numel() for p in g.parameters()) == 23_051_989
    assert sum(p.numel() for p in d.parameters()) == 23_052_353
    names = set(g.state_dict())
    assert {"formatLayer.module.weight", "groupScale0.0.module.bias", "scaleLayers.5.1.module.weight",
            "toRGBLayers.6.module.weight"} <= names
    assert {"fromRGBLayers.6.module.weight", "groupScaleZero.0.module.weight", "groupScaleZero.1.module.weight",
            "decisionLayer.module.bias"} <= set(d.state_dict())
    assert d.groupScaleZero[0].module.in_channels == 513  # the minibatch-stddev channel


def test_equalized_lr_scales_the_output_bias_included():
    g = PGGANGenerator(TINY, latent_dim=8)
    conv = g.toRGBLayers[-1]
    with torch.no_grad():
        conv.module.bias.fill_(0.5)
    x = torch.randn(2, 8, 4, 4)
    c = math.sqrt(2 / 8)  # gain sqrt(2) even for toRGB; fan_in = 8 channels x 1 x 1
    expected = F.conv2d(x, conv.module.weight * c, conv.module.bias * c)
    assert torch.allclose(conv(x), expected, atol=1e-6)
    # weights are stored at N(0, 1) scale
    assert 0.7 < float(g.scaleLayers[0][0].module.weight.detach().std()) < 1.3
    # z is pixel-normalised first: its scale does not matter
    z = torch.randn(3, 8)
    assert torch.allclose(g(z), g(5 * z), atol=1e-5)
    assert g(z).shape == (3, 3, 16, 16)


def test_minibatch_stddev_groups_are_strided():
    x = torch.zeros(8, 2, 4, 4)
    x[1::2] = torch.arange(4.0).view(4, 1, 1, 1)  # samples 1, 3, 5, 7 differ; 0, 2, 4, 6 are equal
    out = minibatch_stddev(x)
    assert out.shape == (8, 3, 4, 4)
    assert torch.allclose(out[0::2, 2], torch.full((4, 4, 4), 1e-4), atol=1e-6)
    assert torch.allclose(out[1::2, 2], torch.full((4, 4, 4), float(torch.arange(4.0).std())), atol=1e-5)


def _write_tiny_checkpoint(path, monkeypatch, legacy_keys=False):
    """A checkpoint of the real file's structure: config pickled as models.utils.config.BaseConfig."""
    for name in ["models", "models.utils", "models.utils.config"]:
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))

    class BaseConfig:
        pass

    BaseConfig.__module__, BaseConfig.__qualname__ = "models.utils.config", "BaseConfig"
    sys.modules["models.utils.config"].BaseConfig = BaseConfig
    cfg = BaseConfig()
    cfg.__dict__.update(depthScale0=16, depthOtherScales=[16, 8], latentVectorDim=8, noiseVectorDim=8,
                        dimOutput=3, lossCriterion="WGANGP", miniBatchStdDev=True, equalizedlR=True,
                        perChannelNormalization=True, leakyReluLeak=0.2, initBiasToZero=True, alpha=0,
                        categoryVectorDim=0, lambdaGP=10.0, epsilonD=0.001)
    torch.manual_seed(0)
    nets = {"netG": PGGANGenerator(TINY, latent_dim=8), "netD": PGGANDiscriminator(TINY),
            "avgG": PGGANGenerator(TINY, latent_dim=8)}
    states = {}
    for k, net in nets.items():
        sd = net.state_dict()
        states[k] = {key.replace(".module.", "."): v for key, v in sd.items()} if legacy_keys else sd
    torch.save({"config": cfg, **states}, path)
    for name in ["models", "models.utils", "models.utils.config"]:
        monkeypatch.delitem(sys.modules, name)  # loading must work without FAIR's package
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    named = path.with_name(f"tiny_s2-{digest[:8]}.pth")
    path.rename(named)
    return named, nets


@pytest.mark.parametrize("legacy_keys", [False, True])
def test_checkpoint_loader_on_a_tiny_checkpoint(tmp_path, monkeypatch, legacy_keys):
    path, nets = _write_tiny_checkpoint(tmp_path / "tiny.pth", monkeypatch, legacy_keys)
    with pytest.raises(pickle.UnpicklingError):  # the plain weights_only load refuses the pickled config
        torch.load(path, weights_only=True)
    z = torch.randn(2, 8)
    for which in ("netG", "avgG"):
        g = load_pgan_zoo_checkpoint(path, which=which)
        assert isinstance(g, PGGANGenerator) and g.config["depths"] == list(TINY)
        assert torch.allclose(g(z), nets[which].eval()(z))
    d = load_pgan_zoo_checkpoint(path, which="netD")
    x = torch.randn(4, 3, 16, 16)
    assert torch.allclose(d(x), nets["netD"](x), atol=1e-6)
    trusted = load_pgan_zoo_checkpoint(path, trust_checkpoint=True)  # full unpickling, for trusted files
    assert torch.allclose(trusted(z), nets["netG"](z)) and "models" not in sys.modules


def test_checkpoint_loader_errors(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match=CELEBAHQ_256_FILE) as err:
        load_pgan_zoo_checkpoint(tmp_path / "nowhere.pth")
    assert "checkpoints" in str(err.value)  # says where to put it
    path, _ = _write_tiny_checkpoint(tmp_path / "tiny.pth", monkeypatch)
    wrong = path.with_name("tiny_s2-00000000.pth")
    path.rename(wrong)
    with pytest.raises(ValueError, match="SHA-256"):
        load_pgan_zoo_checkpoint(wrong)
    assert isinstance(load_pgan_zoo_checkpoint(wrong, verify_hash=False), PGGANGenerator)
    with pytest.raises(ValueError, match="which must be one of"):
        load_pgan_zoo_checkpoint(wrong, which="G")
