#!/usr/bin/env bash
# The GPU check, in one go, unattended, from a fresh machine holding only this repository
# (budget: under 8 minutes on one large GPU). Steps, each timed and reported in one table:
#   0. set-up: a venv over the system's CUDA torch (--system-site-packages), `pip install -e .[test]`
#      and espeak-ng (apt) when the machine can reach them; otherwise src/ on PYTHONPATH and whatever
#      is installed (missing pieces are named in the table, never silently skipped);
#   1. the test suite's GPU-relevant part (the paper path: FaceXFormer, miniature checkpoints through
#      all four phases, which the trainer runs on the GPU in bf16; the model tests);
#   2. the paper-miniature recipe in bf16 on the GPU: per-phase samples/s;
#   3. the same recipe's phase 3 under accelerate FSDP2 and DeepSpeed ZeRO-2 / ZeRO-3 (1 process each;
#      DeepSpeed only where the `deepspeed` package is installed);
#   4. the full-size paper preset with random weights: a phase-3 step (tokens/s, peak memory) and
#      generation latency at batch 1 and 8 (benchmarks/gpu_check.py).
# Results: $GPU_CHECK_OUT (default gpu_check_out/) holds results.jsonl, the logs and table.md.
# `bash benchmarks/gpu_check.sh` ; DEVICE=cpu SMOKE=1 (SKIP_TESTS=1) runs the same flow on a CPU at tiny size
# (what was checked on the development machine; no GPU has run this script yet).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
OUT="${GPU_CHECK_OUT:-$ROOT/gpu_check_out}"
mkdir -p "$OUT"
: > "$OUT/results.jsonl"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
DEVICE="${DEVICE:-cuda}"
SMOKE="${SMOKE:-0}"
T0=$(date +%s)

record() {  # record STEP STATUS SECONDS DETAIL(JSON object)
  printf '{"step": "%s", "status": "%s", "seconds": %s, "detail": %s}\n' "$1" "$2" "$3" "${4:-{\}}" >> "$OUT/results.jsonl"
  echo "== $1: $2 (${3}s)"
}
since() { echo $(( $(date +%s) - $1 )); }

# ---- 0. set-up ------------------------------------------------------------------------------
t=$(date +%s)
BASE_PY="${PYTHON:-python3}"
if [ -x .venv/bin/python ] && [ "$DEVICE" = cpu ]; then BASE_PY=.venv/bin/python; fi
"$BASE_PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available())" | tee "$OUT/setup.log"
command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee -a "$OUT/setup.log"
PY="$BASE_PY"
if [ "$DEVICE" != cpu ]; then
  if [ ! -x .venv-gpu/bin/python ]; then "$BASE_PY" -m venv --system-site-packages .venv-gpu >>"$OUT/setup.log" 2>&1; fi
  if [ -x .venv-gpu/bin/python ]; then PY=.venv-gpu/bin/python; fi
  # torch>=2.4 is met by the system's CUDA build, so pip leaves it alone
  timeout 180 "$PY" -m pip install -q -e '.[test]' >>"$OUT/setup.log" 2>&1 || echo "pip install failed (offline?): using src/ and what is installed" | tee -a "$OUT/setup.log"
  if ! command -v espeak-ng >/dev/null 2>&1; then
    (timeout 120 apt-get update -qq && DEBIAN_FRONTEND=noninteractive timeout 180 apt-get install -y -qq espeak-ng) >>"$OUT/setup.log" 2>&1 || true
  fi
fi
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"
MISSING=$("$PY" - <<'EOF'
import importlib.util
need = ["transformers", "peft", "accelerate", "safetensors", "av", "soundfile", "cv2", "yaml", "pydantic", "sklearn", "pytest", "psutil", "filelock", "rich"]
print(" ".join(n for n in need if importlib.util.find_spec(n) is None))
EOF
)
command -v espeak-ng >/dev/null 2>&1 || MISSING="$MISSING espeak-ng"
HAVE_DS=$("$PY" -c "import importlib.util; print(int(importlib.util.find_spec('deepspeed') is not None))")
record setup "$([ -z "${MISSING// /}" ] && echo ok || echo "missing:${MISSING}")" "$(since $t)" "{\"python\": \"$PY\", \"deepspeed\": $HAVE_DS}"

# ---- 1. GPU-relevant tests ----------------------------------------------------------------------
t=$(date +%s)
TESTS="tests/test_paper_path_face.py tests/test_paper_path.py tests/test_model.py"
if [ "${SKIP_TESTS:-0}" = 1 ]; then
  record tests "skipped (SKIP_TESTS=1)" 0
else
  if timeout 240 "$PY" -m pytest -q -x -p no:cacheprovider $TESTS > "$OUT/tests.log" 2>&1; then st=passed; else st="failed (see tests.log)"; fi
  record tests "$st" "$(since $t)" "{\"summary\": \"$(tail -1 "$OUT/tests.log" | tr -d '"')\"}"
fi

# ---- 2. paper-miniature recipe in bf16 ----------------------------------------------------------
t=$(date +%s)
MINI="$OUT/miniature"; DATA="$OUT/data"; RUN="$OUT/run-bf16"
rm -rf "$RUN"
ok=1
"$PY" -m nanoemox.cli make-miniature "$MINI" > "$OUT/miniature.env" 2>"$OUT/miniature.log" || ok=0
set -a; . "$OUT/miniature.env"; set +a
if [ $ok = 1 ] && [ ! -f "$DATA/train.jsonl" ]; then
  "$PY" -m nanoemox.cli synth "$DATA" --n 48 --seed 1 --no-progress > "$OUT/data.log" 2>&1 || ok=0
fi
if [ $ok = 1 ]; then
  for n in m3ed crema_d caer ferv39k mintrec_train mintrec2_train mer_caption_plus merr_fine avamerg_train; do cp "$DATA/train.jsonl" "$DATA/$n.jsonl"; done
  N=20; [ "$SMOKE" = 1 ] && N=5
  STEPS="phases.1a.steps=$N phases.1b.steps=$N phases.2.steps=$N phases.3.steps=$N defaults.batch_size=8 defaults.save_every=1000 defaults.warmup_steps=0 defaults.log_every=5"
  timeout 300 "$PY" -m nanoemox.cli train paper --data "$DATA" --out "$RUN" --no-progress $STEPS > "$OUT/train-bf16.log" 2>&1 || ok=0
fi
DETAIL=$("$PY" - "$RUN/metrics.jsonl" <<'EOF'
import json, sys
from collections import defaultdict
sps = defaultdict(list)
try:
    for line in open(sys.argv[1]):
        r = json.loads(line)
        if "samples_per_s" in r:
            sps[r["phase"]].append(r["samples_per_s"])
except OSError:
    pass
print(json.dumps({f"phase_{p}_samples_per_s": round(sorted(v)[len(v) // 2], 2) for p, v in sps.items()}))
EOF
)
record miniature_bf16 "$([ $ok = 1 ] && echo ok || echo 'failed (see train-bf16.log)')" "$(since $t)" "$DETAIL"

# ---- 3. phase 3 under FSDP2 and DeepSpeed (accelerate launch, 1 process) --------------------------
PHASE3="$OUT/phase3.yaml"
cat > "$PHASE3" <<EOF
preset: paper
seed: 0
datasets: {d: {manifest: '{data}/train.jsonl'}}
phases:
  "3": {init: base, steps: 10, batch_size: 4, lr: 1.0e-4, precision: bf16, save_every: 1000, log_every: 5,
        mixture: [{dataset: d, task: mer}, {dataset: d, task: ovmer}, {dataset: d, task: erg}]}
EOF
for cfg in fsdp2_8gpu deepspeed_zero2_8gpu deepspeed_zero3_8gpu; do
  t=$(date +%s)
  if [[ $cfg == deepspeed* ]] && [ "$HAVE_DS" != 1 ]; then record "phase3_$cfg" "skipped: deepspeed not installed" 0; continue; fi
  if [ "$DEVICE" = cpu ]; then record "phase3_$cfg" "skipped: needs a GPU" 0; continue; fi
  rm -rf "$OUT/run-$cfg"
  if timeout 180 "$PY" -m accelerate.commands.launch --config_file configs/accelerate/$cfg.yaml --num_processes 1 \
      -m nanoemox.cli train "$PHASE3" --data "$DATA" --out "$OUT/run-$cfg" --no-progress > "$OUT/train-$cfg.log" 2>&1; then st=ok; else st="failed (see train-$cfg.log)"; fi
  LOSS=$(tail -2 "$OUT/run-$cfg/metrics.jsonl" 2>/dev/null | head -1 | tr -d '\n')
  record "phase3_$cfg" "$st" "$(since $t)" "${LOSS:-{\}}"
done

# ---- 4. full-size paper preset, random weights ----------------------------------------------------
t=$(date +%s)
ARGS="--json --device $DEVICE"
[ "$SMOKE" = 1 ] && ARGS="$ARGS --tiny --repeats 1 --new-tokens 8 --prompt 96"
if FULL=$(timeout 240 "$PY" benchmarks/gpu_check.py $ARGS 2> "$OUT/full.log"); then st=ok; else st="failed (see full.log)"; FULL='{}'; fi
record full_size_paper "$st" "$(since $t)" "${FULL:-{\}}"

# ---- table ------------------------------------------------------------------------------------------
"$PY" - "$OUT/results.jsonl" "$(since $T0)" > "$OUT/table.md" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print(f"| step | status | s | results |\n|---|---|---|---|")
for r in rows:
    d = r["detail"]
    items = ", ".join(f"{k}={(f'{v / 2**30:.2f} GiB' if k.endswith('_bytes') else v)}" for k, v in d.items())
    print(f"| {r['step']} | {r['status']} | {r['seconds']} | {items} |")
print(f"\ntotal {sys.argv[2]} s")
EOF
cat "$OUT/table.md"
