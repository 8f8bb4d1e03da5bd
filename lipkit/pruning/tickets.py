"""Tickets: a mask set, the weights to rewind to, and what is needed to trust them.

A ticket is saved as two files next to each other: ``<stem>.safetensors`` (masks as bool, the
rewind state dict as float32, BatchNorm buffers included) and ``<stem>.json`` (metadata: the
architecture config, the round and measured sparsity, the seed, the search image and target,
the task, the lipkit version). Loading checks that the two agree and that the ticket fits the
network it is applied to.
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

import lipkit
from lipkit.data import sha256_of
from lipkit.models import size_problem
from lipkit.pruning.masks import apply_masks, mask_sparsity, sparsity_report


class TicketMismatchError(ValueError):
    """A ticket does not fit the network or image it is applied to; the message lists what differs."""


def _meta_checksum(meta: dict) -> str:
    """sha256 of a ticket's metadata (all but this checksum), so that an edit of its round, seed or
    task is noticed as an edit of the tensors is (``tensors_sha256``)."""
    import hashlib

    text = json.dumps({k: v for k, v in meta.items() if k != "meta_sha256"}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _stem(path: str | os.PathLike) -> Path:
    p = Path(path)
    return p.with_suffix("") if p.suffix in (".json", ".safetensors") else p


def ticket_files(path: str | os.PathLike) -> tuple[Path, Path]:
    """``(<stem>.safetensors, <stem>.json)`` of a ticket's path, with or without a suffix. The
    suffix is appended, never swapped: a stem with a dot (``pepper_oes_0.05``) keeps its name."""
    stem = _stem(path)
    return stem.with_name(stem.name + ".safetensors"), stem.with_name(stem.name + ".json")


@dataclass
class Ticket:
    masks: "OrderedDict[str, torch.Tensor]"          # conv weight name -> {0,1} float tensor
    rewind: "OrderedDict[str, torch.Tensor]"         # state dict to rewind to (params and buffers)
    meta: dict = field(default_factory=dict)

    # --- construction ---------------------------------------------------------------------
    @classmethod
    def from_net(cls, net, masks, **meta) -> "Ticket":
        """Ticket of ``net``'s current weights as the rewind point, with ``masks``; measures sparsity."""
        report = sparsity_report(net, masks)
        info = dict(arch=dict(net.config), lipkit_version=lipkit.__version__,
                    conv_sparsity=report["conv_sparsity"], conv_nonzero=report["conv_nonzero"],
                    unpruned_params=report["unpruned_params"], conv_total=report["conv_total"])
        info.update(meta)
        rewind = OrderedDict((k, v.detach().cpu().clone()) for k, v in net.state_dict().items())
        return cls(OrderedDict((k, v.detach().float().cpu()) for k, v in masks.items()), rewind, info)

    def build_net(self):
        """A fresh network of the ticket's architecture, rewound to the ticket's weights."""
        arch = dict(self.meta.get("arch", {}))
        kind = arch.pop("arch", None)
        if kind != "skip":
            raise TicketMismatchError(f"the ticket's architecture is {kind!r}; only 'skip' tickets can be built")
        from lipkit.models import skip_net

        net = skip_net(**arch)
        self.apply(net)
        return net

    @property
    def structure(self) -> str:
        """``"channel"`` for a ticket of channel pruning (its masks cover biases and BatchNorms too),
        else ``"unstructured"`` (conv weights only)."""
        return "unstructured" if all(m.dim() == 4 for m in self.masks.values()) else "channel"

    def compact(self):
        """A physically smaller dense skip net with the ticket's rewind weights, computing what the
        masked network computes (:func:`lipkit.pruning.channels.compact`): the channels a channel ticket
        removed are gone. Only channel tickets (``structure="channel"``) compact: an unstructured
        ticket leaves biases and BatchNorms dense, so even a fully pruned filter still feeds its β on."""
        from lipkit.pruning.channels import channels_of, compact

        if self.structure != "channel":
            raise TicketMismatchError("this ticket is unstructured (its masks hold conv weights only); only a ticket "
                                      "of channel pruning (imp(..., structure='channel')) compacts")
        net = self.build_net()
        return compact(net, channels_of(net, self.masks))

    def apply(self, net) -> "OrderedDict[str, torch.Tensor]":
        """Rewind ``net`` to the ticket's weights (checked first); returns the masks for :func:`lipkit.fitting.loop.fit`."""
        self.check_network(net)
        net.load_state_dict(self.rewind)
        apply_masks(net, self.masks)
        return OrderedDict((k, v.clone()) for k, v in self.masks.items())

    # --- validation -----------------------------------------------------------------------
    def check_network(self, net) -> None:
        """Raise :class:`TicketMismatchError` naming every difference between the ticket and ``net``."""
        problems = []
        mine, theirs = self.meta.get("arch", {}), getattr(net, "config", {})
        for key in sorted(set(mine) | set(theirs)):
            if json.dumps(mine.get(key)) != json.dumps(theirs.get(key)):
                problems.append(f"{key}: ticket {mine.get(key)!r}, network {theirs.get(key)!r}")
        state = net.state_dict()
        for name, t in self.rewind.items():
            if name not in state:
                problems.append(f"{name}: in the ticket, not in the network")
            elif tuple(state[name].shape) != tuple(t.shape):
                problems.append(f"{name}: ticket shape {tuple(t.shape)}, network {tuple(state[name].shape)}")
        for name in state:
            if name not in self.rewind:
                problems.append(f"{name}: in the network, not in the ticket")
        params = dict(net.named_parameters())
        for name, m in self.masks.items():
            if name not in params:
                problems.append(f"mask {name}: no such parameter in the network")
            elif tuple(params[name].shape) != tuple(m.shape):
                problems.append(f"mask {name}: shape {tuple(m.shape)}, parameter {tuple(params[name].shape)}")
        if problems:
            shown = "; ".join(problems[:8]) + (f"; and {len(problems) - 8} more" if len(problems) > 8 else "")
            raise TicketMismatchError(f"this ticket does not fit the network: {shown}")

    def check_image(self, height: int, width: int) -> None:
        """The skip net is fully convolutional: any size works that the architecture accepts."""
        problem = size_problem(len(self.meta.get("arch", {}).get("num_channels_down", [])), height, width)
        if problem:
            raise TicketMismatchError(f"{problem} (This ticket was found on {self.meta.get('image_size')}.)")

    # --- files ------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write ``<stem>.safetensors`` and ``<stem>.json``; returns the stem."""
        stem = _stem(path)
        stem.parent.mkdir(parents=True, exist_ok=True)
        tensors = {f"mask/{k}": v.bool().contiguous() for k, v in self.masks.items()}
        tensors.update({f"rewind/{k}": v.contiguous() for k, v in self.rewind.items()})
        tmp = stem.with_name(stem.name + ".tmp.safetensors")
        save_file(tensors, str(tmp), metadata={"format": "lipkit-ticket", "version": "1"})
        tfile, jfile = ticket_files(stem)
        tmp.replace(tfile)
        meta = dict(self.meta, masks=list(self.masks), rewind=list(self.rewind), tensors_sha256=sha256_of(tfile),
                    mask_sparsity=mask_sparsity(self.masks) if self.masks else None)
        meta["meta_sha256"] = _meta_checksum(meta)
        tmpj = stem.with_name(stem.name + ".tmp.json")
        tmpj.write_text(json.dumps(meta, indent=1))
        tmpj.replace(jfile)
        return stem

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Ticket":
        """Read a ticket written by :meth:`save`, checking that its two files agree."""
        stem = _stem(path)
        tfile, jfile = ticket_files(stem)
        for f in (tfile, jfile):
            if not f.is_file():
                raise FileNotFoundError(f"ticket file {f} is missing (a ticket is a .safetensors and a .json)")
        try:
            meta = json.loads(jfile.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise TicketMismatchError(f"{jfile} is damaged ({err})") from None
        if not isinstance(meta, dict) or not isinstance(meta.get("masks"), list) or not isinstance(
                meta.get("rewind"), list):
            raise TicketMismatchError(f"{jfile} is not a ticket's metadata (a JSON object listing its masks and "
                                      "rewind tensors); give the path of a ticket written by lipkit")
        meta_checksum = meta.pop("meta_sha256", None)
        if meta_checksum is not None and _meta_checksum(meta) != meta_checksum:
            raise TicketMismatchError(f"{jfile} was edited after it was written (its checksum differs): restore it, "
                                      "or write the ticket again (python -m lipkit ticket ...)")
        checksum = meta.pop("tensors_sha256", None)
        if checksum is not None and sha256_of(tfile) != checksum:
            raise TicketMismatchError(f"{tfile} is damaged: its sha256 differs from the one {jfile} recorded")
        try:
            tensors = load_file(str(tfile))
        except Exception as err:  # safetensors' own error for a truncated or foreign file
            raise TicketMismatchError(f"{tfile} is damaged or not a ticket ({err})") from None
        masks = OrderedDict((k, tensors[f"mask/{k}"]) for k in meta.pop("masks") if f"mask/{k}" in tensors)
        rewind = OrderedDict((k, tensors[f"rewind/{k}"]) for k in meta.pop("rewind") if f"rewind/{k}" in tensors)
        expected = len([k for k in tensors if k.startswith("mask/")]), len([k for k in tensors if k.startswith("rewind/")])
        if (len(masks), len(rewind)) != expected:
            raise TicketMismatchError(f"{tfile} and {jfile} list different tensors; were they written together?")
        for name, t in rewind.items():  # checked whatever the checksums say: a ticket may predate them
            integer = name.endswith("num_batches_tracked")
            if t.dtype != (torch.int64 if integer else torch.float32):
                raise TicketMismatchError(f"{tfile}: rewind tensor {name} is {t.dtype}, not "
                                          f"{'int64' if integer else 'float32'}; the file is damaged")
        for name, m in masks.items():  # each mask is boolean and has the shape of the weight it masks
            if m.dtype != torch.bool:
                raise TicketMismatchError(f"{tfile}: mask {name} is {m.dtype}, not boolean")
            if name in rewind and tuple(rewind[name].shape) != tuple(m.shape):
                raise TicketMismatchError(f"{tfile}: mask {name} is {tuple(m.shape)} but its weight is "
                                          f"{tuple(rewind[name].shape)}")
        masks = OrderedDict((k, v.float()) for k, v in masks.items())
        measured = mask_sparsity(masks) if masks else None
        for key, tolerance in (("mask_sparsity", 1e-9), ("conv_sparsity", 1e-3)):  # conv_sparsity also counts
            stored = meta.get(key)                                              # weights that are 0 in θ
            if stored is not None and measured is not None and abs(measured - stored) > tolerance:
                raise TicketMismatchError(f"{jfile} says the masks remove {stored:.6f} of the weights ({key}), but "
                                          f"{tfile}'s remove {measured:.6f}; were they written together?")
        meta.pop("mask_sparsity", None)
        return cls(masks, rewind, meta)

    def __repr__(self) -> str:
        m = self.meta
        return (f"Ticket(round={m.get('round')}, conv_sparsity={m.get('conv_sparsity', float('nan')):.4f}, "
                f"task={m.get('task')!r}, image={m.get('search_image')!r}, seed={m.get('seed')})")
