#!/usr/bin/env bash
# Every GPU figure in one run, at most 8 minutes on one H100 or H200 (each step has its own time limit):
#   1. pytest -m gpu                       (GPU code paths against the CPU: parity, half precision, faiss-gpu)
#   2. batch MuSc at paper settings        (ViT-L-14-336, random weights for timing, 518 px, N 200)
#   3. online scorer per frame, W 200 and W 64, paper settings
#   4. the daemon end to end on CUDA, micro-batch 1 (none) and 4 (ViT-L-14-336 if its weights are here, else
#      efficientnet_lite0: the daemon loads real weights; the JSON names the backbone)
#   5. the judge bank at 1k / 10k / 100k judges
# JSON goes to docs/benchmarks/*_<gpu>_*.json; one table is printed at the end.
#
#   tools/gpu_check.sh             on a GPU machine (refuses to run without CUDA)
#   tools/gpu_check.sh --dry-run   the CPU-safe parts, tiny, on the CPU (CI runs this); JSON to $GPU_CHECK_OUT
#                                  or a temporary folder, never docs/benchmarks
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
DRY=0
case "${1:-}" in
  --dry-run) DRY=1 ;;
  "") ;;
  *) echo "usage: tools/gpu_check.sh [--dry-run]" >&2; exit 2 ;;
esac

if [[ $DRY == 1 ]]; then
  OUT=${GPU_CHECK_OUT:-$(mktemp -d)}
  TAG=dryrun
  DEVICE=cpu
  PAPER=(--backbone test_random_vit)
  BATCH=(--images 4 --batch-size 2)
  ONLINE=(--frames 3 --micro-batch 2)
  WINDOWS=(4)
  DAEMON=(--backbone test_random_vit --size 64 --window 8 --frames 8 --rate 20 --image-px 64)
  MICRO_BATCHES=(2)
  BANK=(--judges 100,1000 --queries 10 --dim 64)
else
  OUT=docs/benchmarks
  if ! "$PY" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())'; then
    echo "gpu_check: no CUDA device here; run tools/gpu_check.sh --dry-run for the CPU-safe parts" >&2
    exit 2
  fi
  TAG=$("$PY" -c 'import re, torch; n = torch.cuda.get_device_name(0).lower(); print((re.findall(r"[a-z]\d{2,4}", n) or ["gpu"])[0])')
  DEVICE=cuda
  PAPER=(--backbone ViT-L-14-336 --random-weights --size 518)
  BATCH=(--images 200 --batch-size 16)
  ONLINE=(--frames 100)
  WINDOWS=(200 64)
  if "$PY" -c 'import sys; from musc_online.backbones.weights_sources import installed_file, weights_source
sys.exit(installed_file(weights_source("ViT-L-14-336")) is None)'; then
    DAEMON=(--backbone ViT-L-14-336 --size 518 --window 200 --frames 200 --rate 20)
  else
    DAEMON=(--backbone efficientnet_lite0 --size 320 --window 200 --frames 200 --rate 20)
  fi
  MICRO_BATCHES=(1 4)
  BANK=(--judges 1000,10000,100000 --queries 200)
fi
mkdir -p "$OUT"
FAILED=()

step() {  # step NAME SECONDS COMMAND...: one step under its time limit; a failure is reported, not fatal
  local started=$SECONDS
  local name=$1 limit=$2
  shift 2
  echo "== $name (limit ${limit}s)"
  if ! timeout "$limit" "$@"; then
    FAILED+=("$name")
    echo "!! $name failed or ran past ${limit}s" >&2
  fi
  echo "== $name took $((SECONDS - started))s"
}

if [[ $DRY == 0 ]]; then
  step "pytest -m gpu" 90 "$PY" -m pytest -m gpu -q -p no:cacheprovider
fi
step "batch MuSc" 90 "$PY" tools/bench_batch.py "${PAPER[@]}" "${BATCH[@]}" --device "$DEVICE" \
  --json "$OUT/batch_${TAG}_paper.json"
for W in "${WINDOWS[@]}"; do
  step "online W $W" 60 "$PY" tools/bench_online.py "${PAPER[@]}" "${ONLINE[@]}" --window "$W" --device "$DEVICE" \
    --json "$OUT/online_${TAG}_paper_w${W}.json"
done
for MB in "${MICRO_BATCHES[@]}"; do
  step "daemon micro-batch $MB" 75 "$PY" tools/bench_daemon.py "${DAEMON[@]}" --micro-batch "$MB" --device "$DEVICE" \
    --json "$OUT/daemon_${TAG}_mb${MB}.json"
done
step "judge bank" 45 "$PY" tools/bench_bank.py "${BANK[@]}" --device "$DEVICE" --json "$OUT/bank_${TAG}.json"

"$PY" - "$OUT" "$TAG" <<'TABLE'
import json, sys
from pathlib import Path

out, tag = Path(sys.argv[1]), sys.argv[2]
def load(name):
    path = out / name
    return json.loads(path.read_text()) if path.is_file() else None
rows = []
batch = load(f"batch_{tag}_paper.json")
if batch:
    rows.append(("batch MuSc", batch["settings"]["backbone"], f"{batch['ms_per_image']['total']:.1f} ms/img", "<= 30 ms/img"))
for path in sorted(out.glob(f"online_{tag}_paper_w*.json")):
    o = json.loads(path.read_text())
    total = o["latency_ms"]["total"]
    rows.append((f"online W {o['settings']['window']}", o["settings"]["backbone"],
                 f"p50 {total['p50']:.1f} ms, p99 {total['p99']:.1f} ms", "p50 <= 25 ms at W 200"))
for path in sorted(out.glob(f"daemon_{tag}_mb*.json")):
    d = json.loads(path.read_text())
    rows.append((f"daemon micro-batch {d['settings']['micro_batch']}", d["settings"]["backbone"],
                 f"p50 {d['latency_ms']['p50']:.1f} ms, {d['frames_per_second']:.1f} frames/s",
                 "p50 <= 40 ms; >= 40 frames/s batched"))
bank = load(f"bank_{tag}.json")
if bank:
    for b in bank["banks"]:
        rows.append((f"bank {b['judges']} judges", f"search on {bank['search_on']}",
                     f"search p50 {b['search_ms']['p50']:.3f} ms, gather p50 {b['gather_ms']['p50']:.3f} ms",
                     "< 1 ms at 100k"))
device = next((r["machine"]["device"] for r in (batch, bank) if r and "device" in r.get("machine", {})), "?")
print(f"\ngpu_check on {device} ({out}):")
widths = [max(len(str(r[i])) for r in rows + [("step", "settings", "figure", "target")]) for i in range(4)]
for row in [("step", "settings", "figure", "target")] + rows:
    print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)))
TABLE

if (( ${#FAILED[@]} )); then
  echo "gpu_check: failed steps: ${FAILED[*]}" >&2
  exit 1
fi
