#!/usr/bin/env bash
# The GPU check: does the CUDA path work end to end, and how fast is it? Under 8 minutes on one GPU.
#
#   benchmarks/gpu_check.sh            # on a machine with CUDA: BERT-base shape, T = 128
#   benchmarks/gpu_check.sh --cpu      # the same steps in a small form (tiny model, CPU-sized table)
#
# 1. one optimizer step of every pipeline stage (pretrain, warm-up, fine-tune, prune, post-prune
#    fine-tune) through `autoprumux train`, at N = 2, under the training loop's autocast (bf16 or
#    fp16 on CUDA), each trial ending with a bf16 throughput measurement;
# 2. a bf16 compacted forward pass (N = 2, s = 0.9) against the fp32 one, within bf16 tolerance;
# 3. the paper-scale throughput table (benchmarks/paper_scale.py), fp32 and bf16.
# Set PYTHON to the interpreter that has autoprumux installed (default: .venv/bin/python, else python3).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
if [ "${1:-}" = "--cpu" ] || ! "$PYTHON" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())'; then
  FORM=cpu MODEL=tiny SEQ=32 BATCH=8 TABLE=(--scale cpu --mux 1 2 10 --sparsity 0 0.9)
else
  FORM=gpu MODEL=bert-base-shape SEQ=128 BATCH=32 TABLE=()
fi
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
started=$SECONDS
autoprumux() { "$PYTHON" -c 'import sys; from autoprumux.cli import main; sys.exit(main(sys.argv[1:]))' "$@"; }

"$PYTHON" - <<EOF
import torch
from autoprumux.train.device import autocast_dtype
device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
name = torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu"
print(f"# gpu_check ($FORM form): torch {torch.__version__}, {name}, training autocast: {autocast_dtype(device)}")
EOF

# One step per stage. With a pre-training length, N = 2 runs pretrain -> fine-tune -> prune ->
# post-prune fine-tune; without one, it runs the retrieval warm-up -> fine-tune.
write_spec() {  # $1 = file, $2 = the stage that comes first at N > 1: pretrain or warmup
  cat > "$1" <<EOF
name = "gpu-check"
task = "synthetic-sentiment"
model = "$MODEL"
[data]
train_size = 256
eval_size = 64
max_seq_len = $SEQ
[$2]
steps = 1
batch_size = $BATCH
[finetune]
steps = 1
batch_size = $BATCH
[prune]
steps = 1
batch_size = $BATCH
lagrangian_warmup_ratio = 1.0
[post_finetune]
steps = 1
batch_size = $BATCH
[bench]
batch_size = $BATCH
seq_len = $SEQ
warmup = 1
repeats = 3
dtype = "bf16"
EOF
}
write_spec "$WORK/pretrain.toml" pretrain
write_spec "$WORK/warmup.toml" warmup
summary='import json, sys
m = json.load(open(sys.argv[1]))
print("  " + " -> ".join(s["name"] for s in m["stages"]), "| sparsity %.3f |" % m["sparsity"], m["dtype"],
      format(m["throughput"], ",.0f"), "examples/s on", m["device"])'
run_train() {  # $1 = spec, $2 = sparsity, $3 = out; the log is shown only when it fails
  autoprumux train --spec "$1" --task synthetic-sentiment --mux 2 --sparsity "$2" --out "$3" > "$3.log" 2>&1 \
    || { cat "$3.log"; exit 1; }
  "$PYTHON" -c "$summary" "$3/metrics.json"
}
run_train "$WORK/pretrain.toml" 0.5 "$WORK/pretrain-run"
run_train "$WORK/warmup.toml" 0 "$WORK/warmup-run"
echo "  training steps: $((SECONDS - started)) s"

"$PYTHON" benchmarks/paper_scale.py --check-precision ${TABLE[0]+"${TABLE[@]:0:2}"}
"$PYTHON" benchmarks/paper_scale.py ${TABLE[0]+"${TABLE[@]}"}
echo "gpu_check ($FORM form) passed in $((SECONDS - started)) s"
