#!/usr/bin/env bash
# The CPU suite: every benchmark once, results under benchmarks/results/. About 10 minutes on
# 2 idle cores; check `uptime` first and note the load average beside the numbers.
#   bash benchmarks/run_cpu.sh           # full
#   bash benchmarks/run_cpu.sh --quick   # a correctness run of each script (about 2 minutes)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
export PYTHONUNBUFFERED=1
uptime
$PY benchmarks/step_time.py "$@"
$PY benchmarks/seeds.py "$@"
$PY benchmarks/imp_round.py "$@"
uptime
