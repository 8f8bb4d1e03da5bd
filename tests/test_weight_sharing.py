import pytest
import torch

from lipkit.models import per_image_statistics, skip_net
from lipkit.operators import Denoising, Identity
from lipkit.tasks import make_task
from lipkit.lottery.weight_sharing import SharedLoss, check_tasks, fit_shared, imp_shared

TINY = dict(num_channels_down=[8] * 5, num_channels_up=[8] * 5)


def test_per_image_statistics_batch_equals_single_images():
    torch.manual_seed(0)
    net = skip_net(**TINY)
    z = torch.rand(3, 32, 64, 64) * 0.1
    singles = [net(z[a:a + 1]) for a in range(3)]
    with per_image_statistics(net):
        batched = net(z)
    assert torch.allclose(batched, torch.cat(singles), atol=1e-5)
    # without it, BatchNorm mixes the images' statistics: a different function
    assert not torch.allclose(net(z), torch.cat(singles), atol=1e-3)
    # gradients of the summed loss equal the sum of the single-image gradients
    target = torch.rand(3, 3, 64, 64)
    net.zero_grad()
    with per_image_statistics(net):
        ((net(z) - target) ** 2).mean(dim=(1, 2, 3)).sum().backward()
    g_batched = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    for a in range(3):
        ((net(z[a:a + 1]) - target[a:a + 1]) ** 2).mean().backward()
    for gb, p in zip(g_batched, net.parameters()):
        assert torch.allclose(gb, p.grad, atol=1e-4, rtol=1e-3)
    assert not any(m.per_image for m in net.modules() if hasattr(m, "per_image"))


def test_shared_loss_is_the_sum_and_a_shared_input_fits_the_mean():
    y = torch.rand(4, 3, 8, 8)
    loss = SharedLoss([Identity()] * 4)
    out = torch.rand(4, 3, 8, 8)
    assert loss(out, y) == pytest.approx(sum(float(((out[a] - y[a]) ** 2).mean()) for a in range(4)), rel=1e-6)
    # one output for all images: the loss is smallest at the images' mean
    mean = y.mean(0, keepdim=True).requires_grad_(True)
    value = loss(mean, y)
    value.backward()
    assert mean.grad.abs().max() < 1e-6
    assert loss(mean.detach() + 0.01, y) > value
    with pytest.raises(ValueError, match="operators but"):
        loss(out, y[:3])


def test_tasks_must_share_kind_and_size(mirror_dir):
    a = make_task("denoise", "set5/baby", crop=64, iters=5)
    with pytest.raises(ValueError, match="at least two"):
        check_tasks([a])
    with pytest.raises(ValueError, match="one size"):
        check_tasks([a, make_task("denoise", "set5/head", crop=96, iters=5)])
    with pytest.raises(ValueError, match="one kind"):
        check_tasks([a, make_task("sr", "set5/head", crop=64, iters=5)])
    # Set5 head and Set14 face are one photograph (280 and 276 px): their centre crops are equal
    head, face = (make_task("denoise", image, crop=64, iters=5) for image in ("set5/head", "set14/face"))
    with pytest.raises(ValueError, match="set5/head and set14/face are the same picture"):
        check_tasks([a, head, face])
    check_tasks([a, head, make_task("denoise", "set14/foreman", crop=64, iters=5)])


@pytest.mark.parametrize("mode", ["shared", "per_image"])
def test_weight_sharing_imp(mirror_dir, tmp_path, mode):
    tasks = [make_task("denoise", f"set5/{n}", crop=64, iters=20) for n in ("baby", "head", "woman")]
    run = imp_shared(tasks, input_mode=mode, rounds=2, rate=0.5, seeds=[1], arch=TINY, run_dir=tmp_path / mode,
                     workers=1, progress=False)
    recs = sorted(run.records(), key=lambda r: r["round"])
    assert [r["round"] for r in recs] == [0, 1, 2]  # `rounds` R fits levels 0..R, as single-image IMP does
    for r in recs:
        assert r["loss"] == pytest.approx(sum(r["image_losses"]), rel=1e-5)
        assert len(r["image_losses"]) == 3 and len(r["image_psnr"]) == 3
        assert r["input_mode"] == mode
    assert recs[1]["conv_sparsity"] == pytest.approx(0.5, abs=1e-4)
    assert recs[2]["conv_sparsity"] == pytest.approx(0.75, abs=1e-4)
    outputs = 1 if mode == "shared" else 3  # one z: one output, the mean image
    for k in range(3):
        assert [run.output_image(1, k, index=a).exists() for a in range(outputs + 1)] == [True] * outputs + [False]
    ticket = run.ticket(1, 2)
    assert ticket.meta["conv_sparsity"] == pytest.approx(0.75, abs=1e-4)
    assert ticket.meta["search_image"] == "set5/baby+set5/head+set5/woman"
    # resuming an unchanged run does nothing and gives the same records
    again = imp_shared(tasks, input_mode=mode, rounds=2, rate=0.5, seeds=[1], arch=TINY, run_dir=tmp_path / mode,
                       workers=1, progress=False)
    assert sorted(r["loss"] for r in again.records()) == sorted(r["loss"] for r in recs)
    # more rounds extend the run: the finished levels stay, the next one is fitted
    longer = imp_shared(tasks, input_mode=mode, rounds=3, rate=0.5, seeds=[1], arch=TINY, run_dir=tmp_path / mode,
                        workers=1, progress=False)
    grown = sorted(longer.records(), key=lambda r: r["round"])
    assert grown[:3] == recs and grown[3]["conv_sparsity"] == pytest.approx(0.875, abs=1e-4)


def test_fit_shared_numbers_match_separate_evaluation(mirror_dir):
    tasks = [make_task("denoise", f"set5/{n}", crop=64, iters=5) for n in ("baby", "head")]
    net = skip_net(**TINY)
    result, numbers = fit_shared(net, tasks, input_mode="per_image", progress=False)
    assert result.output.shape == (2, 3, 64, 64)
    op = Denoising(25 / 255)
    for a, t in enumerate(tasks):
        assert numbers["image_losses"][a] == pytest.approx(float(op.loss(result.clean_output[a:a + 1],
                                                                         t.observation[None])), rel=1e-4)
