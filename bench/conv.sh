#!/usr/bin/env bash
# The convolution paths (BENCHMARKS.md "Convolution paths"): one epoch of cnn at batch 4 (all
# 50,000 images) and at batch 1 (the first 10,000), one torch thread, whole processes, twice each
# in turn: trainyard with every convolution on oneDNN (TRAINYARD_CONV_PATH=onednn, the engine
# before the choice), trainyard as it chooses, and lean PyTorch.
# usage: bench/conv.sh   (CIFAR_ROOT as for bench/engine.sh)
set -euo pipefail
root=$(pwd)
. "$root/bench/cifar.sh"
data=$bin_dir
for batch in 4 1; do
  limit=0; [[ $batch == 1 ]] && limit=10000
  echo "{\"model\":\"cnn\",\"batch_size\":$batch,\"epochs\":1,\"seed\":1,\"train_limit\":$limit}" | sed 's/,"train_limit":0//' > /tmp/conv-spec.json
  for round in 1 2; do
    for which in onednn chosen lean; do
      rm -rf /tmp/conv-out
      start=$(date +%s.%N)
      case $which in
        onednn) TRAINYARD_CONV_PATH=onednn "$root/target/release/trainyard" train --threads 1 --spec /tmp/conv-spec.json --data-dir $data --out /tmp/conv-out >/dev/null 2>&1 ;;
        chosen) env -u TRAINYARD_CONV_PATH "$root/target/release/trainyard" train --threads 1 --spec /tmp/conv-spec.json --data-dir $data --out /tmp/conv-out >/dev/null 2>&1 ;;
        lean) "$root/.venv/bin/python" "$root/bench/lean_torch.py" $data --model cnn --batch-size $batch --epochs 1 --threads 1 \
                $([[ $limit != 0 ]] && echo --train-limit $limit) > /tmp/conv-lean.txt 2>&1 ;;
      esac
      end=$(date +%s.%N)
      if [[ $which == lean ]]; then extra=$(tail -1 /tmp/conv-lean.txt)
      else extra=$(python3 -c "import json;r=[json.loads(l) for l in open('/tmp/conv-out/metrics.jsonl')][-1];print('train_s=%.2f train_loss=%.6f test_acc=%.4f'%(r['train_seconds'],r['train_loss'],r['test_acc']))")
      fi
      echo "batch $batch round $round $which wall=$(python3 -c "print('%.2f'%($end-$start))") $extra"
    done
  done
done
