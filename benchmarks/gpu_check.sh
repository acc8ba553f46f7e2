#!/usr/bin/env bash
# The GPU device check (issue 22 item 5): what engram can verify on a CUDA machine, in one
# short script (a few minutes). Run it from the repository root after `make install`:
#
#     bash benchmarks/gpu_check.sh [OUT]        # OUT: where logs and JSON go (default /tmp/engram_gpu_check)
#
# 1. the machine: torch's CUDA build and the devices it sees (exits 2 without CUDA);
# 2. the CUDA tests: the checkpointed unroll (float64 gradients against plain BPTT, dropout
#    replayed from the CUDA RNG) and SAM / SDNC under the journal;
# 3. one short training run with the learner on the GPU, in a Ray actor of its own
#    (configs/smoke.yaml, learner_device cuda, learner_gpus 1): the data path of issue 22 item 1;
# 4. `engram bench bptt --quick --device cuda`: the BPTT modes' time and memory on the device;
# 5. Pong with a GPU learner actor and as many rollout actors as the machine's CPUs allow, for
#    PONG_SECONDS (default 150): the steps per second a GPU box gives (its metrics.jsonl is kept).
# 6. `engram bench scale --device cuda`: the learner per core at batch 32 to 2,048 (docs/scaling.md).
# 3b runs two data-parallel learners (NCCL) where two GPUs are present, and says why not
# otherwise. Nothing here asserts a timing.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-/tmp/engram_gpu_check}
PY=${PY:-.venv/bin/python}
mkdir -p "$OUT"

echo "== 1. the machine"
"$PY" - <<'PY'
import sys, torch
print(f"torch {torch.__version__}, CUDA build {torch.version.cuda}, available {torch.cuda.is_available()}")
if not torch.cuda.is_available():
    print("no CUDA device: nothing to check here (CPU machines run make test)", file=sys.stderr)
    sys.exit(2)
for i in range(torch.cuda.device_count()):
    props = torch.cuda.get_device_properties(i)
    print(f"cuda:{i} {props.name}, {props.total_memory / 2**30:.0f} GiB")
PY

echo "== 2. the CUDA tests"
"$PY" -m pytest -q -ra tests/test_bptt_cuda.py "tests/test_sam_bptt.py::test_gradients_equal_plain_bptt_on_cuda" \
    2>&1 | tee "$OUT/cuda_tests.log"

echo "== 3. a short training run with the learner on the GPU"
timeout 600 "$PY" -m engram.cli train configs/smoke.yaml --set resources.learner_device=cuda \
    --set resources.learner_gpus=1 --set run.total_steps=40000 --set telemetry.console=false --run-dir "$OUT/smoke_cuda" \
    2>&1 | tail -n 5 | tee "$OUT/smoke_cuda.log"
test -n "$(ls "$OUT"/smoke_cuda/checkpoints/ckpt-*.pt 2>/dev/null)" || { echo "no checkpoint written"; exit 1; }
if [ "$("$PY" -c 'import torch; print(torch.cuda.device_count())')" -ge 2 ]; then
    echo "== 3b. two data-parallel learners, one GPU each (NCCL)"
    timeout 600 "$PY" -m engram.cli train configs/smoke.yaml --set resources.learner_device=cuda \
        --set resources.learner_gpus=1 --set resources.num_learners=2 --set run.total_steps=40000 \
        --set telemetry.console=false --run-dir "$OUT/smoke_cuda_2learners" 2>&1 | tail -n 5 | tee "$OUT/smoke_2learners.log"
else
    echo "== 3b. skipped: two data-parallel learners need two GPUs (NCCL refuses two replicas on one)"
fi

echo "== 4. engram bench bptt on the device"
"$PY" -m benchmarks.bptt --quick --device cuda --json "$OUT/bptt_cuda.json" 2>&1 | tee "$OUT/bptt_cuda.log"

echo "== 5. Pong with a GPU learner actor and $(( $(nproc) - 2 )) rollout actors"
ACTORS=$(( $(nproc) - 2 ))
"$PY" -m engram.cli train configs/pong_lstm.yaml \
    --set resources.learner_device=cuda --set resources.learner_gpus=1 --set resources.num_actors=$ACTORS \
    --set run.total_steps=100000000 --set telemetry.console=false --set telemetry.log_interval_s=10 \
    --run-dir "$OUT/pong_cuda" > "$OUT/pong_cuda.log" 2>&1 &
PONG=$!
sleep "${PONG_SECONDS:-150}"
kill -INT $PONG  # engram train stops at the next update and writes its last checkpoint
for _ in $(seq 60); do kill -0 $PONG 2>/dev/null || break; sleep 1; done
kill -TERM $PONG 2>/dev/null || true
wait $PONG || true
cp "$OUT/pong_cuda/metrics.jsonl" "$OUT/pong_cuda_metrics.jsonl"
"$PY" - "$OUT/pong_cuda_metrics.jsonl" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
rate = [r["throughput/env_steps_per_s"] for r in rows if "throughput/env_steps_per_s" in r][1:]
updates = [r["throughput/learner_updates_per_s"] for r in rows if "throughput/learner_updates_per_s" in r][1:]
print(f"{len(rows)} log lines; agent steps/s after the first: {[round(x) for x in rate]}; updates/s {[round(x, 2) for x in updates]}")
PY

echo "== 6. engram bench scale: the learner per core and batch on the device"
"$PY" -m engram.cli bench scale --device cuda --updates 5 --batch-sizes 32,128,512,2048 \
    --skip wire --skip broadcast --skip end_to_end --json "$OUT/scale_cuda.json" 2>&1 | tee "$OUT/scale_cuda.log"

echo "all checks ran; outputs in $OUT"
