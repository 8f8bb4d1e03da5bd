"""A run folder's files: atomic writes, one writer at a time, and a config that is never mixed.

Every writer of a run folder (single-image IMP, weight-sharing IMP, generator IMP) uses these:
JSON, masks and state dicts are written to a temporary file and renamed, so a killed run never
leaves half a file; :class:`RunLock` keeps a second process out; :func:`open_config` refuses a
folder whose stored config differs from the one asked for, with a readable diff, and lets the
fields named ``extendable`` grow the run instead. A config stored before a field was renamed
(:data:`RENAMED_FIELDS`) reads with the new names (:func:`read_config`).
"""

from __future__ import annotations

import errno
import json
import os
from collections import OrderedDict
from pathlib import Path
from typing import Callable, Mapping

import torch
from safetensors.torch import load_file, save_file


class RunConfigError(ValueError):
    """A run folder holds a run with other settings; resuming it would mix two experiments."""


class RunInUseError(RuntimeError):
    """Another process is writing to the run folder."""


class RunLock:
    """An exclusive lock on a run folder (``.lock``), held while a run writes to it."""

    NAME = ".lock"

    def __init__(self, run_dir: str | os.PathLike):
        self.path = Path(run_dir) / self.NAME

    def __enter__(self):
        import fcntl

        self.file = open(self.path, "a+")
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.file.seek(0)
            owner = self.file.read().strip() or "unknown"
            self.file.close()
            raise RunInUseError(f"{self.path.parent} is being written by another process ({owner}); "
                                "wait for it to finish, or use another run folder") from None
        self.file.truncate(0)
        self.file.write(f"pid {os.getpid()}")
        self.file.flush()
        return self

    def __exit__(self, *exc):
        self.file.close()  # closing releases the lock
        return False


def _replace(path: Path, write: Callable[[Path], None]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        write(tmp)
        tmp.replace(path)  # atomic: a killed run never leaves half a file
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if not isinstance(err, OSError) and "No space left on device" in str(err):
            # safetensors says so in its own error type, without the file: an OSError that names it
            raise OSError(errno.ENOSPC, "No space left on device", str(path)) from None
        raise


def write_json(path: str | os.PathLike, obj) -> None:
    """``obj`` as indented JSON at ``path``, atomically."""
    _replace(Path(path), lambda tmp: tmp.write_text(json.dumps(obj, indent=1)))


def read_json(path: str | os.PathLike):
    """A JSON file of a run folder; a damaged one is a :class:`RunConfigError` that names it."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RunConfigError(f"{path} is damaged ({err}); delete the run folder to start over, or restore the "
                             "file") from None


def save_masks(path: str | os.PathLike, masks: Mapping[str, torch.Tensor]) -> None:
    """{0,1} masks as booleans in a safetensors file, atomically."""
    _replace(Path(path), lambda tmp: save_file({k: v.bool().contiguous() for k, v in masks.items()}, str(tmp)))


def load_tensors(path: str | os.PathLike) -> "OrderedDict[str, torch.Tensor]":
    """The tensors of a safetensors file of a run folder; a missing, truncated or damaged file is a
    :class:`RunConfigError` that names it."""
    path = Path(path)
    if not path.is_file():
        raise RunConfigError(f"{path} is missing; delete the run folder to start over, or restore the file")
    try:
        return OrderedDict(load_file(str(path)))
    except Exception as err:  # safetensors raises its own SafetensorError (and OSError) on a damaged file
        raise RunConfigError(f"{path} is damaged or truncated ({err}); delete the run folder to start over, "
                             "or restore the file") from None


def load_masks(path: str | os.PathLike) -> "OrderedDict[str, torch.Tensor]":
    """Masks saved by :func:`save_masks`, as float {0,1} tensors in their saved order."""
    masks = load_tensors(path)
    if any(v.dtype != torch.bool for v in masks.values()):
        raise RunConfigError(f"{path} holds tensors that are not boolean masks; it is not a masks file")
    return OrderedDict((k, v.float()) for k, v in masks.items())


def save_state(path: str | os.PathLike, state: Mapping[str, torch.Tensor]) -> None:
    """A state dict (weights and buffers) in a safetensors file on the CPU, atomically."""
    _replace(Path(path), lambda tmp: save_file({k: v.detach().cpu().contiguous() for k, v in state.items()},
                                               str(tmp)))


RENAMED_FIELDS = {"method": "criterion", "methods": "criteria"}  # config fields' names before 2026-12-05


def read_config(path: str | os.PathLike) -> dict:
    """A run folder's stored ``config.json``, its fields under today's names (:data:`RENAMED_FIELDS`)."""
    return {RENAMED_FIELDS.get(k, k): v for k, v in read_json(path).items()}


def config_diff(old: dict, new: dict, prefix: str = "") -> list[str]:
    """One readable line per setting that differs, nested keys joined with dots."""
    diffs = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            diffs += config_diff(a, b, f"{prefix}{key}.")
        elif json.dumps(a) != json.dumps(b):
            diffs.append(f"{prefix}{key}: folder has {a!r}, this run asks for {b!r}")
    return diffs


def open_config(run_dir: str | os.PathLike, config: dict, *,
                extendable: Mapping[str, Callable] | None = None, what: str = "a run") -> dict:
    """Write ``config`` to a new run folder, or check it against the one stored there.

    ``extendable`` maps config fields that may grow to how stored and asked values combine
    (e.g. ``{"rounds": max}``): they extend the run instead of redefining it, and the stored
    config is updated. Any other difference raises :class:`RunConfigError`. Returns the config
    the folder holds afterwards. Call it while holding the folder's :class:`RunLock`.
    """
    cfg_file = Path(run_dir) / "config.json"
    config = json.loads(json.dumps(config))  # the form it has once stored (tuples become lists)
    if not cfg_file.exists():
        found = sorted(p.name for p in Path(run_dir).iterdir() if p.name != RunLock.NAME)
        if found:  # records without the settings that made them: resuming could mix two experiments
            raise RunConfigError(f"{run_dir} holds {', '.join(found[:4])}{' ...' if len(found) > 4 else ''} but no "
                                 "config.json, so nothing says which settings made them; it will not be resumed. "
                                 "Use another run folder, or delete this one to start over.")
        write_json(cfg_file, config)
        return config
    stored = read_config(cfg_file)
    extendable = dict(extendable or {})
    diffs = config_diff({k: v for k, v in stored.items() if k not in extendable},
                        {k: v for k, v in config.items() if k not in extendable})
    if diffs:
        raise RunConfigError(f"{run_dir} holds {what} with different settings, so it will not be resumed: "
                             + "; ".join(diffs) + ". Use another run folder, or delete this one to start over.")
    extended = dict(stored, **{k: grow(stored[k], config[k]) for k, grow in extendable.items()
                               if k in stored and k in config})
    if extended != stored:
        write_json(cfg_file, extended)
    return extended


def union(have: list, asked: list) -> list:
    """The stored items, then the asked ones the folder does not have yet (an ``extendable`` rule)."""
    return list(have) + [x for x in asked if x not in have]
