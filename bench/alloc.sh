#!/usr/bin/env bash
# The allocator's share (BENCHMARKS.md "Allocator"): one epoch of cnn@4, one torch thread,
# whole processes, twice each in turn: a trainyard built without jemalloc (GLIBC_BIN, e.g.
# a build of the commit before jemalloc), this tree's trainyard, and lean PyTorch.
# usage: GLIBC_BIN=/tmp/trainyard.glibc bench/alloc.sh   (CIFAR_ROOT as for bench/engine.sh)
set -euo pipefail
root=$(pwd)
. "$root/bench/cifar.sh"
data=$bin_dir
echo '{"model":"cnn","batch_size":4,"epochs":1,"seed":1}' > /tmp/ab-spec.json
for round in 1 2; do
  for which in glibc jemalloc lean; do
    rm -rf /tmp/ab-out
    start=$(date +%s.%N)
    case $which in
      glibc) "$GLIBC_BIN" train --threads 1 --spec /tmp/ab-spec.json --data-dir $data --out /tmp/ab-out >/dev/null 2>&1 ;;
      jemalloc) "$root/target/release/trainyard" train --threads 1 --spec /tmp/ab-spec.json --data-dir $data --out /tmp/ab-out >/dev/null 2>&1 ;;
      lean) "$root/.venv/bin/python" "$root/bench/lean_torch.py" $data --model cnn --batch-size 4 --epochs 1 --threads 1 > /tmp/ab-lean.txt 2>&1 ;;
    esac
    end=$(date +%s.%N)
    extra=""
    [[ $which != lean ]] && extra=$(python3 -c "import json;r=[json.loads(l) for l in open('/tmp/ab-out/metrics.jsonl')][-1];print('train_s=%.2f test_acc=%.4f'%(r['train_seconds'],r['test_acc']))")
    [[ $which == lean ]] && extra=$(tail -1 /tmp/ab-lean.txt)
    echo "round $round $which wall=$(python3 -c "print('%.2f'%($end-$start))") $extra"
  done
done
