"""The book's experiments, defined once so that every chapter reuses the same runs.

An :class:`Experiments` holds one profile's settings (crop, network width, rounds, rate, seeds,
iterations) and builds tasks, IMP runs and transfer evaluations from them. A run is found by
its folder name under ``runs_root`` (a readable prefix, ``imp_denoise_set5-woman_64px_w32``, and a
short hash of the run's whole settings: :meth:`Experiments.run_name`), so a chapter that needs the
tickets of an earlier one gets the finished folder instead of a new search; resuming an unchanged
run costs nothing.

>>> ex = Experiments("runs/quick", crop=64, width=32)
>>> ex.run_prefix("sr", "set14/zebra", factor=4)
'imp_sr4_set14-zebra_64px_w32'
>>> ex.run_prefix("denoise", "set5/baby", structure="channel", rate=0.33)
'imp_denoise_set5-baby_64px_w32_channel_p33'
>>> ex.arch["num_channels_down"]
[32, 32, 32, 32, 32]
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from lipkit import book
from lipkit.lottery.imp import ImpRun, imp
from lipkit.lottery.identity import adopt_legacy, folder_name
from lipkit.lottery.settings import ClassifyImpSettings, ImpSettings, SharedImpSettings
from lipkit.models import theta0
from lipkit.pruning.masks import dense_masks
from lipkit.tasks import Task, make_task
from lipkit.pruning.tickets import Ticket
from lipkit.studies.transfer import TransferJob, transfer_many

# The paper's single-image problems (LIP Fig. 2 and its code), by the names the book uses.
PAPER_TASKS = {
    "denoise": dict(kind="denoise", image="set5/baby", title="denoising, baby, σ=25"),
    "sr4": dict(kind="sr", image="set14/zebra", factor=4, title="super-resolution ×4, zebra"),
    "sr8": dict(kind="sr", image="set14/pepper", factor=8, title="super-resolution ×8, pepper"),
    "inpaint_text": dict(kind="inpaint", image="dip/kate", mask="dip/kate_mask", title="inpainting, kate, text mask"),
    "inpaint_random": dict(kind="inpaint", image="dip/kate", mask="bernoulli",
                           title="inpainting, kate, random 50 % mask"),
}


@dataclass
class Experiments:
    """One profile's settings; builds the tasks and runs every chapter shares.

    ``crop`` 0 means whole images (cropped to a multiple of 32). ``kate_window`` is the top-left
    corner of the crop of DIP's kate image, a patch with text in it (used when cropping).
    ``sigma`` is the denoising noise std in 0-255 units (LIP's 25; OES's protocol is 25.5, i.e. 0.1).
    """

    runs_root: str | os.PathLike
    crop: int = 64
    width: int = 128
    rounds: int = 16
    rounds_sr: int | None = None
    rate: float = 0.2
    seeds: int = 1
    denoise_iters: int = 3000
    sr_iters: int = 2000
    inpaint_iters: int = 3000
    kate_window: Sequence[int] | None = (192, 256)
    sigma: float = 25
    search_on: str = "observation"
    baselines: Sequence[str] = field(default_factory=lambda: ["random_global", "random_layerwise"])
    workers: int | None = None
    progress: bool = True

    def __post_init__(self):
        """Every setting checked by :mod:`lipkit.checks`'s rules, all problems named at once."""
        from lipkit.checks import problems
        from lipkit.errors import UsageError

        found = problems({f.name: getattr(self, f.name) for f in fields(self)})
        if found:
            raise UsageError("; ".join(found))
        self.runs_root = Path(self.runs_root)

    @classmethod
    def from_parameters(cls, parameters: Mapping, **overrides) -> "Experiments":
        """The experiments of a chapter's parameters cell (``Experiments.from_parameters(globals())``).

        Takes every field this class has from ``parameters`` (a chapter's ``crop``, ``rounds``,
        ...), the runs of ``parameters["profile"]`` (:func:`lipkit.book.runs_root`), then
        ``overrides`` (e.g. ``crop=0, width=128`` for a dense DIP beside small tickets).
        """
        names = {f.name for f in fields(cls)} - {"runs_root"}
        unknown = set(overrides) - names - {"runs_root"}
        if unknown:
            raise TypeError(f"Experiments has no setting {sorted(unknown)}; choose from {sorted(names)}")
        values = {k: parameters[k] for k in names if k in parameters}
        values.update(overrides)
        values.setdefault("runs_root", book.runs_root(parameters["profile"]))
        return cls(**values)

    @property
    def arch(self) -> dict:
        """``skip_net`` arguments: the LIP backbone with ``width`` channels per level."""
        return dict(num_channels_down=[self.width] * 5, num_channels_up=[self.width] * 5)

    def iters(self, kind: str) -> int:
        return {"denoise": self.denoise_iters, "sr": self.sr_iters, "inpaint": self.inpaint_iters}[kind]

    def rounds_for(self, kind: str) -> int:
        return self.rounds_sr if (kind == "sr" and self.rounds_sr is not None) else self.rounds

    def profile_note(self, extra: Sequence[str] = ()) -> str:
        """One paragraph saying how this profile departs from the paper's protocol."""
        reduced = []
        if self.crop:
            reduced.append(f"images are {self.crop}×{self.crop} px crops")
        if self.width != 128:
            reduced.append(f"the skip net has {self.width} channels per level instead of 128")
        if self.rate != 0.2:
            reduced.append(f"each round prunes {100 * self.rate:.0f} % of the remaining weights instead of 20 %, "
                           f"so {self.rounds} rounds reach {100 * (1 - (1 - self.rate) ** self.rounds):.2f} % sparsity")
        if (self.denoise_iters, self.sr_iters, self.inpaint_iters) != (3000, 2000, 3000):
            reduced.append(f"the fits run {self.denoise_iters} (denoising), {self.sr_iters} (super-resolution) and "
                           f"{self.inpaint_iters} (inpainting) iterations; the paper's code runs 3000, 2000 and 3000")
        if self.sigma != 25:
            reduced.append(f"the denoising noise has σ = {self.sigma:g}/255 instead of LIP's 25/255")
        reduced.append(f"{self.seeds} seed{'s' if self.seeds != 1 else ''}")
        reduced += list(extra)
        return ("In this profile " + "; ".join(reduced) + ". The numbers are real measurements of that setting"
                + (", not the paper's; the `paper` profile runs the full protocol." if (self.crop or self.width != 128)
                   else "."))

    # --- tasks --------------------------------------------------------------------------------
    def task(self, kind: str, image: str, *, factor: int = 4, mask: str = "bernoulli", crop: int | None = None,
             seed: int = 0) -> Task:
        """The task ``kind`` on ``image`` with this profile's crop and iterations."""
        crop = self.crop if crop is None else crop
        window = tuple(self.kate_window) if (crop and image == "dip/kate" and self.kate_window) else None
        return make_task(kind, image, sigma=self.sigma / 255, factor=factor, mask=mask, crop=crop or None,
                         window=window, seed=seed, iters=self.iters(kind))

    def paper_task(self, name: str) -> Task:
        """One of :data:`PAPER_TASKS` by name."""
        if name not in PAPER_TASKS:
            raise KeyError(f"unknown paper task {name!r}; choose from {sorted(PAPER_TASKS)}")
        spec = {k: v for k, v in PAPER_TASKS[name].items() if k != "title"}
        return self.task(spec.pop("kind"), spec.pop("image"), **spec)

    # --- runs ---------------------------------------------------------------------------------
    def imp_settings(self, kind: str, *, structure: str = "unstructured", rate: float | None = None,
                     rounds: int | None = None, criterion: str = "magnitude",
                     baselines: Iterable[str] | None = None) -> ImpSettings:
        """The :class:`lipkit.lottery.settings.ImpSettings` of this profile's IMP on a task of ``kind``;
        ``structure``, ``rate``, ``rounds`` and ``criterion`` replace the profile's (channel pruning has no
        branch baselines)."""
        if baselines is None:
            baselines = self.baselines if structure == "unstructured" else ()
        return ImpSettings(rounds=self.rounds_for(kind) if rounds is None else rounds,
                           rate=self.rate if rate is None else rate, seeds=range(self.seeds), search_on=self.search_on,
                           criterion=criterion, structure=structure, baselines=tuple(baselines), arch=self.arch)

    def run_prefix(self, kind: str, image: str, *, factor: int = 4, mask: str = "bernoulli",
                   structure: str = "unstructured", rate: float | None = None, criterion: str = "magnitude") -> str:
        """The readable part of a run folder's name: the task, then whatever this run's settings change
        from the paper's (noise, crop, width, channel pruning, rate, random pruning, clean search)."""
        rate = self.rate if rate is None else rate
        name = f"imp_{kind}{factor if kind == 'sr' else ''}_{image.replace('/', '-')}"
        if kind == "inpaint":
            name += "_" + ("random" if mask == "bernoulli" else Path(mask).name)
        name += f"_sigma{self.sigma:g}" if (kind == "denoise" and self.sigma != 25) else ""
        name += f"_{self.crop}px" if self.crop else ""
        name += f"_w{self.width}" if self.width != 128 else ""
        name += "_channel" if structure == "channel" else ""
        name += f"_p{100 * rate:g}" if rate != 0.2 else ""
        name += "_random" if criterion == "random" else ""
        return name + ("_clean_search" if self.search_on == "clean" else "")

    def run_name(self, kind: str, image: str, *, factor: int = 4, mask: str = "bernoulli",
                 structure: str = "unstructured", rate: float | None = None, criterion: str = "magnitude") -> str:
        """Folder name of a single-image IMP run under ``runs_root``: :meth:`run_prefix` and a short hash
        of the run's whole settings, seeds, task and iterations included
        (:func:`lipkit.lottery.identity.folder_name`), so that runs with other settings never meet in
        one folder."""
        task = self.task(kind, image, factor=factor, mask=mask)
        settings = self.imp_settings(kind, structure=structure, rate=rate, criterion=criterion)
        return folder_name(self.run_prefix(kind, image, factor=factor, mask=mask, structure=structure, rate=rate,
                                           criterion=criterion), settings.config(task=task.describe()))

    def _named_run_dir(self, prefix: str, name: str) -> Path:
        """``runs_root/name``; a folder this profile made before folders were named by their settings
        (``runs_root/prefix``) is renamed first (:func:`lipkit.lottery.identity.adopt_legacy`)."""
        adopt_legacy(self.runs_root / prefix)
        return self.runs_root / name

    def imp(self, kind: str, image: str, *, factor: int = 4, mask: str = "bernoulli",
            baselines: Iterable[str] | None = None, structure: str = "unstructured", rate: float | None = None,
            rounds: int | None = None, criterion: str = "magnitude") -> ImpRun:
        """Single-image IMP of this profile on ``image`` (run or resumed in its folder); ``structure``,
        ``rate`` and ``rounds`` replace the profile's (channel pruning has no branch baselines);
        ``criterion="random"`` ranks by random scores instead of magnitude (random pruning's chain)."""
        task = self.task(kind, image, factor=factor, mask=mask)
        settings = self.imp_settings(kind, structure=structure, rate=rate, rounds=rounds, criterion=criterion,
                                     baselines=baselines)
        prefix = self.run_prefix(kind, image, factor=factor, mask=mask, structure=structure, rate=rate,
                                 criterion=criterion)
        run_dir = self._named_run_dir(prefix, folder_name(prefix, settings.config(task=task.describe())))
        return imp(task, settings, run_dir=run_dir, workers=self.workers, progress=self.progress)

    def paper_imp(self, name: str, baselines: Iterable[str] | None = None, **settings) -> ImpRun:
        """IMP on one of :data:`PAPER_TASKS` (``settings``: ``structure``, ``rate``, ``rounds`` as in :meth:`imp`)."""
        spec = {k: v for k, v in PAPER_TASKS[name].items() if k != "title"}
        return self.imp(spec.pop("kind"), spec.pop("image"), baselines=baselines, **spec, **settings)

    def shared_settings(self, input_mode: str, *, seeds: int) -> SharedImpSettings:
        """The :class:`lipkit.lottery.settings.SharedImpSettings` of this profile's weight sharing."""
        return SharedImpSettings(rounds=self.rounds, rate=self.rate, seeds=range(seeds), search_on=self.search_on,
                                 arch=self.arch, input_mode=input_mode)

    def shared_run_name(self, images: Sequence[str], input_mode: str, name: str, *, seeds: int, crop: int) -> str:
        """Folder name of :meth:`shared_imp`'s run: ``shared_<name>_<input_mode>`` and a short hash."""
        from lipkit.lottery.weight_sharing import shared_config

        tasks = [self.task("denoise", image, crop=crop) for image in images]
        return folder_name(f"shared_{name}_{input_mode}",
                           shared_config(tasks, self.shared_settings(input_mode, seeds=seeds)))

    def shared_imp(self, images: Sequence[str], input_mode: str, name: str, *, seeds: int, crop: int) -> ImpRun:
        """Weight-sharing IMP (:func:`lipkit.lottery.weight_sharing.imp_shared`) for denoising ``images``,
        centre-cropped to ``crop`` px, with this profile's rounds and rate, in the run ``name``."""
        from lipkit.lottery.weight_sharing import imp_shared

        tasks = [self.task("denoise", image, crop=crop) for image in images]
        run_dir = self._named_run_dir(f"shared_{name}_{input_mode}",
                                      self.shared_run_name(images, input_mode, name, seeds=seeds, crop=crop))
        return imp_shared(tasks, self.shared_settings(input_mode, seeds=seeds), run_dir=run_dir,
                          progress=self.progress)

    def classify_imp(self, settings: ClassifyImpSettings, data_root: str | None = None) -> ImpRun:
        """Classification IMP of ``settings`` (:func:`lipkit.lottery.classify.imp_classify`) under ``runs_root``,
        its folder named by its whole config (:func:`lipkit.lottery.identity.folder_name`)."""
        from lipkit.datasets import labelled
        from lipkit.lottery.classify import imp_classify, run_config

        data = labelled(settings.dataset, data_root)
        name = folder_name(f"imp_classify_{settings.dataset}", run_config(settings, data))
        return imp_classify(settings, run_dir=self.runs_root / name, data=data, workers=self.workers,
                            progress=self.progress)

    def classifiers(self, jobs: Sequence, data_root: str | None = None) -> list[dict]:
        """Train classifier jobs (:class:`lipkit.studies.cross_task.ClassifierJob`), cached in
        ``runs_root/classifiers``."""
        from lipkit.studies.cross_task import classifier_runs

        return classifier_runs(jobs, cache_dir=self.runs_root / "classifiers", data_root=data_root,
                               workers=self.workers, progress=self.progress)

    def deep_decoders(self, task: Task, widths: Sequence[int]) -> list[dict]:
        """Deep decoders of ``widths`` channels fitted to ``task`` with this profile's seeds
        (:func:`lipkit.studies.deep_decoder_runs.deep_decoder_runs`, cached with this profile's runs)."""
        from lipkit.studies.deep_decoder_runs import deep_decoder_runs

        return deep_decoder_runs(task, widths, seeds=range(self.seeds), cache_dir=self.runs_root / "deep_decoder",
                                 workers=self.workers, progress=self.progress)

    def dense_jobs(self, task: Task, seeds: Iterable[int]) -> list[TransferJob]:
        """Jobs fitting the dense DIP of this profile's width to ``task``, one per seed, for
        :meth:`transfer` (worker processes, cached). Seed s gives θ0 (as IMP's seed s does), z and
        the input noise."""
        jobs = []
        for s in seeds:
            net = theta0(int(s), **self.arch)
            ticket = Ticket.from_net(net, dense_masks(net), round=0, seed=int(s), task=task.kind,
                                     search_image=task.image, image_size=list(task.image_size))
            jobs.append(TransferJob(ticket, task, "dense", seed=int(s)))
        return jobs

    def tickets_on_images(self, tickets: Mapping[str, Sequence[Ticket]], images: Sequence[str], *, crop: int,
                          dense: str = "dense", key: str = "best_psnr") -> dict[str, dict[str, float]]:
        """PSNR ``key`` (dB; default the best, or ``"es_psnr"``, ``"final_psnr"``) of every label's tickets
        fitted to denoising each of ``images`` (centre-cropped to ``crop`` px), fit seed 0, through
        :meth:`transfer`: ``{label: {image: mean over the label's tickets}}``. The label ``dense`` fits
        its tickets' dense nets (variant ``"dense"``)."""
        from lipkit.summaries import mean_std

        jobs, labels = [], []
        for label, ticket_list in tickets.items():
            for ticket in ticket_list:
                for image in images:
                    jobs.append(TransferJob(ticket, self.task("denoise", image, crop=crop),
                                            "dense" if label == dense else "ticket", seed=0))
                    labels.append((label, image))
        psnrs: dict[str, dict[str, list[float]]] = {}
        for (label, image), record in zip(labels, self.transfer(jobs)):
            psnrs.setdefault(label, {}).setdefault(image, []).append(record[key])
        return {label: {image: mean_std(v)[0] for image, v in row.items()} for label, row in psnrs.items()}

    def transfer(self, jobs: Sequence[TransferJob]) -> list[dict]:
        """Evaluate transfer jobs, cached in ``runs_root/transfer`` (shared by all chapters)."""
        return transfer_many(jobs, cache_dir=self.runs_root / "transfer", workers=self.workers,
                             progress=self.progress)
