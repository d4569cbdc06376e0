#!/usr/bin/env bash
# Engine benchmark: seconds per epoch for cnn@4, cnn@1000 and mlp@4 on real CIFAR-10, for
# trainyard, a lean PyTorch loop (bench/lean_torch.py) and the tutorial's own code
# (../shared/bench/peer_tutorial.py), one after another on the same machine.
# usage: bench/engine.sh [EPOCHS]   (run from the repo root; `make bench` calls it)
set -euo pipefail
epochs=${1:-1}
root=$(pwd)
py=$root/.venv/bin/python
bin=$root/target/release/trainyard
peer=${PEER_TUTORIAL:-$root/../shared/bench/peer_tutorial.py}
. "$root/bench/cifar.sh"
out=$(mktemp -d)
echo "# $(date -u +%FT%TZ) $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), epochs=$epochs"
for cfg in "cnn 4" "cnn 1000" "mlp 4"; do
  set -- $cfg; model=$1; bs=$2
  echo "{\"model\":\"$model\",\"batch_size\":$bs,\"epochs\":$epochs,\"seed\":1}" > "$out/spec.json"
  "$bin" train --spec "$out/spec.json" --data-dir "$bin_dir" --out "$out/$model-$bs" >/dev/null
  "$py" - "$out/$model-$bs/metrics.jsonl" "trainyard $model@$bs" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print(sys.argv[2], json.dumps({"train_seconds": [round(r["train_seconds"], 2) for r in rows], "epoch_seconds": [round(r["seconds"], 2) for r in rows], "test_acc": rows[-1]["test_acc"]}))
PY
  echo "lean-pytorch $model@$bs $("$py" bench/lean_torch.py "$bin_dir" --model $model --batch-size $bs --epochs $epochs | tail -n 1)"
  if [[ $model == cnn ]]; then
    echo "tutorial $model@$bs $("$py" "$peer" "$(dirname "$bin_dir")" --batch-size $bs --epochs $epochs | tail -n 1)"
  fi
done
rm -rf "$out"
