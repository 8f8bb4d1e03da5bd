#!/usr/bin/env bash
# The GPU suite, for one H100-class GPU, in under 10 minutes (estimate; not run yet). Needs a
# Python with CUDA torch, numpy, pillow, tqdm and safetensors; writes benchmarks/results/*_cuda*.json
# and, with OUT set, copies them there.
#   bash benchmarks/run_gpu.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
$PY -c "import torch, numpy, PIL, tqdm, safetensors; assert torch.cuda.is_available(); print(torch.__version__, torch.cuda.get_device_name())"
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv || true
# 1. the CUDA tests of lipkit.fit and lipkit.batched (the GPU-only ones are skipped on a CPU)
$PY -m pytest -p no:cacheprovider -q tests/test_fit.py tests/test_batched.py
# 2. step time, FP32 (exact reproduction) and the fast options, vs the plain DIP loop
$PY benchmarks/step_time.py --device cuda --threads 0 --sizes 256 512 --repeats 1
$PY benchmarks/step_time.py --device cuda --threads 0 --sizes 256 512 --repeats 1 \
    --options channels_last=1,allow_tf32=1 --name step_time_cuda_tf32_cl
$PY benchmarks/step_time.py --device cuda --threads 0 --sizes 256 512 --repeats 1 \
    --options channels_last=1,bf16=1 --name step_time_cuda_bf16_cl
# 3. seeds batched vs sequential at 256 px, LIP backbone (target: 8 seeds >= 4x)
$PY benchmarks/seeds.py --device cuda --size 256 --width 128 --iters 100
# 4. one paper-profile IMP round: 3000 iterations at 512 x 512, LIP backbone (target: < 60 s)
$PY benchmarks/imp_round.py --device cuda --size 512 --width 128 --iters 3000 --seeds 1
# 5. an IMP round of 4 seeds, which lipkit.imp fits as one batched model on a GPU, vs one after another
$PY benchmarks/imp_round.py --device cuda --size 256 --width 128 --iters 500 --seeds 4 --name imp_round_cuda_4seeds
if [ -n "${OUT:-}" ]; then cp benchmarks/results/*cuda*.json "$OUT"/; fi
