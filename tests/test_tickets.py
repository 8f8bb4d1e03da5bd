import json

import pytest
import torch

from lipkit.fitting.loop import fit
from lipkit.models import skip_net
from lipkit.operators import Denoising
from lipkit.pruning.masks import conv_weights_of, dense_masks, global_prune
from lipkit.seeding import seeded
from lipkit.pruning.tickets import Ticket, TicketMismatchError

ARCH = dict(num_channels_down=[8] * 5, num_channels_up=[8] * 5)


def make_ticket():
    with seeded(0, "weights"):
        net = skip_net(**ARCH)
    masks = global_prune(conv_weights_of(net), dense_masks(net), 0.6)
    return net, Ticket.from_net(net, masks, round=1, seed=0, task="denoise", search_image="set5/baby",
                                image_size=[64, 64])


def test_save_load_roundtrip(tmp_path):
    net, t = make_ticket()
    stem = t.save(tmp_path / "ticket")
    assert (tmp_path / "ticket.safetensors").exists() and (tmp_path / "ticket.json").exists()
    back = Ticket.load(stem)
    assert back.meta["round"] == 1 and back.meta["conv_sparsity"] == pytest.approx(0.6, abs=1e-3)
    assert back.meta["lipkit_version"] and back.meta["arch"]["num_channels_down"] == [8] * 5
    for k in t.masks:
        assert torch.equal(back.masks[k], t.masks[k])
    for k in t.rewind:  # BatchNorm buffers too
        assert torch.equal(back.rewind[k], t.rewind[k])
    rebuilt = back.build_net()
    masks = back.apply(rebuilt)
    y = Denoising(0.1).observe(torch.rand(3, 64, 64), seed=0)
    fit(rebuilt, Denoising(0.1), y, num_iter=3, masks=masks, progress=False)
    params = dict(rebuilt.named_parameters())
    assert all(torch.all(params[n][m == 0] == 0) for n, m in masks.items())


def test_a_stem_with_a_dot_keeps_its_name_and_two_such_tickets_do_not_collide(tmp_path):
    net, a = make_ticket()
    b = Ticket.from_net(net, {k: 1 - v for k, v in a.masks.items()}, round=2, seed=1)
    a.save(tmp_path / "pepper_d6.4_s0")
    b.save(tmp_path / "pepper_d6.4_s1.json")  # with a suffix: the same stem rule
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pepper_d6.4_s0.json", "pepper_d6.4_s0.safetensors",
                                                          "pepper_d6.4_s1.json", "pepper_d6.4_s1.safetensors"]
    assert Ticket.load(tmp_path / "pepper_d6.4_s0").meta["seed"] == 0
    assert Ticket.load(tmp_path / "pepper_d6.4_s1.safetensors").meta["seed"] == 1


def test_architecture_mismatch_says_what_differs(tmp_path):
    _, t = make_ticket()
    with pytest.raises(TicketMismatchError, match="num_channels_down: ticket \\[8, 8, 8, 8, 8\\], network \\[128"):
        t.check_network(skip_net())
    with pytest.raises(TicketMismatchError, match="num_input_channels"):
        t.apply(skip_net(num_input_channels=16, **ARCH))


def test_image_size_checks():
    _, t = make_ticket()
    t.check_image(96, 128)  # another size is fine: the net is fully convolutional
    with pytest.raises(TicketMismatchError, match="multiples of 32"):
        t.check_image(100, 128)
    with pytest.raises(TicketMismatchError, match="at least 64"):
        t.check_image(32, 64)


def test_files_that_disagree_are_refused(tmp_path):
    _, t = make_ticket()
    stem = t.save(tmp_path / "t")
    meta = json.loads((tmp_path / "t.json").read_text())
    meta["masks"] = meta["masks"][:3]
    (tmp_path / "t.json").write_text(json.dumps(meta))
    with pytest.raises(TicketMismatchError, match="t.json was edited after it was written"):
        Ticket.load(stem)
    meta.pop("meta_sha256")  # a ticket written before its metadata had a checksum
    (tmp_path / "t.json").write_text(json.dumps(meta))
    with pytest.raises(TicketMismatchError, match="list different tensors"):
        Ticket.load(stem)
    (tmp_path / "t.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="missing"):
        Ticket.load(stem)


def test_a_damaged_or_edited_ticket_is_refused_naming_its_file(tmp_path):
    _, ticket = make_ticket()
    stem = ticket.save(tmp_path / "t")
    tfile, jfile = stem.with_suffix(".safetensors"), stem.with_suffix(".json")
    assert Ticket.load(stem).meta["conv_sparsity"] == pytest.approx(0.6, abs=1e-3)
    data = bytearray(tfile.read_bytes())
    data[len(data) // 2] ^= 0x01  # one flipped bit in a weight
    tfile.write_bytes(bytes(data))
    with pytest.raises(TicketMismatchError, match=r"t\.safetensors is damaged: its sha256"):
        Ticket.load(stem)
    stem = ticket.save(tmp_path / "t")
    meta = json.loads(jfile.read_text())
    meta["conv_sparsity"] = 0.9  # an edited claim
    jfile.write_text(json.dumps(meta))
    with pytest.raises(TicketMismatchError, match="t.json was edited after it was written"):
        Ticket.load(stem)
    meta.pop("meta_sha256")  # the same edit of a ticket written before its metadata had a checksum
    jfile.write_text(json.dumps(meta))
    with pytest.raises(TicketMismatchError, match="t.json says the masks remove 0.900000"):
        Ticket.load(stem)
    jfile.write_text("{")
    with pytest.raises(TicketMismatchError, match="t.json is damaged"):
        Ticket.load(stem)
