"""Where the build's time goes: seconds per phase in ``_build/timings.json``, and a summary.

    python3 scripts/timings.py reset                      # a new build starts: forget the last one
    python3 scripts/timings.py run setup -- make install  # run a command, record its seconds as a phase
    python3 scripts/timings.py report                     # the table, and the ratio to the CPU reference

Phases are named ``group:item`` (``chapter:01_dip_basics``, ``smoke:08_...``, ``tests:tests/test_fit.py``,
``site:build``, ``setup:install``); ``scripts/run_chapters.py`` and the tests' ``conftest.py`` record
theirs through :func:`record`. Standard library only, so that it runs before the venv exists.

Hosts of one kind differ 2-4x in speed, so the report divides the total by a fixed CPU workload
timed on the same host (``cpu_ref.py`` of the shared tools, found beside the checkout at
``../shared/tools/``, or at ``$LIPKIT_CPU_REF``); without it the report gives seconds only.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TIMINGS = ROOT / "_build" / "timings.json"
GROUP_ORDER = ("setup", "chapter", "site", "tests", "smoke", "reference")


def load(path: Path | None = None) -> dict:
    path = path or TIMINGS
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def record(phase: str, seconds: float, path: Path | None = None) -> None:
    """Add ``phase``'s seconds to ``path`` (a phase recorded twice keeps the last time)."""
    merge({phase: seconds}, path)


def merge(phases: dict, path: Path | None = None) -> None:
    path = path or TIMINGS
    data = load(path)
    data.update({k: round(float(v), 1) for k, v in phases.items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    tmp.replace(path)


def cpu_reference() -> float | None:
    """Seconds of the fixed CPU workload on this host now, or None when it is not at hand."""
    ref = Path(os.environ.get("LIPKIT_CPU_REF", ROOT.parent / "shared" / "tools" / "cpu_ref.py"))
    python = ROOT / ".venv" / "bin" / "python"
    if not ref.is_file() or not python.exists():
        return None
    done = subprocess.run([str(python), str(ref)], capture_output=True, text=True)
    try:
        return float(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None


def report(path: Path | None = None, reference: float | None = None) -> str:
    path = path or TIMINGS
    data = load(path)
    if not data:
        return f"timings: nothing recorded in {path}"
    lines = [f"{'phase':<52} {'seconds':>9}"]
    groups: dict[str, float] = {}
    key = lambda kv: (GROUP_ORDER.index(kv[0].split(":")[0]) if kv[0].split(":")[0] in GROUP_ORDER
                      else len(GROUP_ORDER), -kv[1])
    for phase, seconds in sorted(data.items(), key=key):
        lines.append(f"{phase:<52} {seconds:9.1f}")
        group = phase.split(":")[0]
        groups[group] = groups.get(group, 0.0) + seconds
    lines.append("")
    # the smoke chapters run inside the tests: their seconds are part of tests:, not added again
    total = sum(s for g, s in groups.items() if g not in ("smoke", "reference"))
    for group, seconds in groups.items():
        if group != "reference":
            lines.append(f"{'total ' + group:<52} {seconds:9.1f}")
    lines.append(f"{'total (smoke is inside tests)':<52} {total:9.1f}")
    if reference:
        lines.append(f"CPU reference (cpu_ref.py) {reference:.2f} s on this host: total = {total / reference:.0f} x "
                     f"reference; chapters = {groups.get('chapter', 0.0) / reference:.0f} x reference")
    else:
        lines.append("no CPU reference at hand (../shared/tools/cpu_ref.py or $LIPKIT_CPU_REF): seconds only")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if argv[:1] == ["reset"]:
        TIMINGS.unlink(missing_ok=True)
        return 0
    if argv[:1] == ["run"] and len(argv) >= 4 and argv[2] == "--":
        t0 = time.perf_counter()
        code = subprocess.call(argv[3:])
        record(argv[1], time.perf_counter() - t0)
        return code
    if argv[:1] == ["report"]:
        reference = cpu_reference()
        if reference:
            record("reference:cpu_ref", reference)
        print(report(reference=reference))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
