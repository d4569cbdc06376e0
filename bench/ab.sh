#!/usr/bin/env bash
# Two builds of trainyard and lean PyTorch, whole processes, one torch thread, in turn: one
# epoch of cnn at batch 4 (50,000 images), cnn at batch 1 (the first 10,000) and mlp at batch 4
# (50,000), ROUNDS times (default 2). For an engine change: BEFORE is a binary built before it
# (e.g. `git worktree add /tmp/before REV && cd /tmp/before && make build`), AFTER this tree's.
# usage: bench/ab.sh BEFORE_BIN [AFTER_BIN]   (CIFAR_ROOT as for bench/engine.sh; MODELS="cnn@4 ..." picks)
set -euo pipefail
root=$(pwd)
. "$root/bench/cifar.sh"
before=$1; after=${2:-$root/target/release/trainyard}
out=$(mktemp -d); trap 'rm -rf "$out"' EXIT
for case in ${MODELS:-cnn@4 cnn@1 mlp@4}; do
  model=${case%@*}; batch=${case#*@}
  limit=0; [[ $batch == 1 ]] && limit=10000
  echo "{\"model\":\"$model\",\"batch_size\":$batch,\"epochs\":1,\"seed\":1,\"train_limit\":$limit}" | sed 's/,"train_limit":0//' > "$out/spec.json"
  for round in $(seq "${ROUNDS:-2}"); do
    for which in before after lean; do
      rm -rf "$out/run"
      start=$(date +%s.%N)
      case $which in
        before|after) bin=$before; [[ $which == after ]] && bin=$after
          "$bin" train --threads 1 --spec "$out/spec.json" --data-dir "$bin_dir" --out "$out/run" >/dev/null 2>&1
          extra=$(python3 -c "import json;r=[json.loads(l) for l in open('$out/run/metrics.jsonl')][-1];print('train_s=%.2f eval_s=%.2f train_loss=%.6f test_acc=%.4f'%(r['train_seconds'],r['seconds']-r['train_seconds'],r['train_loss'],r['test_acc']))") ;;
        lean) "$root/.venv/bin/python" "$root/bench/lean_torch.py" "$bin_dir" --model "$model" --batch-size "$batch" --epochs 1 --threads 1 \
                $([[ $limit != 0 ]] && echo --train-limit $limit) > "$out/lean.txt" 2>&1
          extra=$(tail -1 "$out/lean.txt") ;;
      esac
      end=$(date +%s.%N)
      echo "$case round $round $which wall=$(python3 -c "print('%.2f'%($end-$start))") $extra"
    done
  done
done
