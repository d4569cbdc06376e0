#!/usr/bin/env bash
# The GPU check, prepared for a session that is lent a device (see README "GPU"): run on the
# device machine from the repo root. It needs no Rust and no network there: torch
# 2.11.0+cu130 at /opt/torch/.venv provides libtorch.
# Here first (the release binary carries debug info, 150 MB; stripped it is 14 MB):
#   make build && mkdir -p .gpu && objcopy --strip-debug target/release/trainyard .gpu/trainyard
#   cargo bench --bench group --no-run (with make's CARGO_ENV), then
#   objcopy --strip-debug "$(ls target/release/deps/group-* | grep -v '\.d$' | head -n 1)" .gpu/group-bench
#   echo /.gpu/ >> .git/info/exclude
# then with the device tool: run(command="bash bench/gpu-check.sh", carry=[".gpu"])
# It writes its log to $OUT when set.
set -uo pipefail
out=${OUT:-/tmp/gpu-check}; mkdir -p "$out"
exec > >(tee "$out/gpu-check.log") 2>&1
torchlib=$(ls -d /opt/torch/.venv/lib/python3*/site-packages/torch/lib | head -n 1)
export LD_LIBRARY_PATH=$torchlib
bin=${TRAINYARD_BIN:-.gpu/trainyard}
work=$(mktemp -d)
echo "== libraries (libtorch_cuda must be linked and found)"
ldd $bin | grep -E "libtorch|libc10|not found"
nvidia-smi --query-gpu=name,memory.total --format=csv
echo "== data"
$bin data synthetic --data-dir "$work/data" --per-file 10000
echo "== train on cuda: cnn@4, cnn@1000 (with augmentation), mlp@4, 2 epochs each"
for spec in '{"model":"cnn","batch_size":4,"epochs":2,"seed":1}' \
            '{"model":"cnn","batch_size":1000,"epochs":2,"seed":1,"augment":true}' \
            '{"model":"mlp","batch_size":4,"epochs":2,"seed":1}'; do
  echo "$spec" > "$work/spec.json"
  $bin train --spec "$work/spec.json" --data-dir "$work/data" --out "$work/run-$RANDOM" --device cuda
done
echo "== the same cnn@4 on cpu for comparison (1 epoch)"
echo '{"model":"cnn","batch_size":4,"epochs":1,"seed":1}' > "$work/spec.json"
$bin train --spec "$work/spec.json" --data-dir "$work/data" --out "$work/run-cpu" --device cpu
echo "== serve: one worker per CUDA device, a job runs on cuda:0"
$bin serve --bind 127.0.0.1:18080 --database "sqlite://$work/db.sqlite" --data-dir "$work/data" \
  --admin-token-file "$work/admin.token" > "$work/serve.out" 2> "$work/serve.log" &
server=$!
for _ in $(seq 100); do curl -sf localhost:18080/healthz >/dev/null && break; sleep 0.2; done
auth="Authorization: Bearer $(cat "$work/admin.token")"
curl -s -H "$auth" -X POST localhost:18080/jobs -d '{"model":"cnn","epochs":3}' > "$work/job.json"
id=$(sed 's/.*"id":"\([^"]*\)".*/\1/' "$work/job.json")
sleep 3
curl -s -H "$auth" localhost:18080/jobs/$id; echo
for _ in $(seq 120); do curl -s -H "$auth" localhost:18080/jobs/$id | grep -q '"status":"succeeded"' && break; sleep 1; done
curl -s -H "$auth" localhost:18080/jobs/$id/metrics; echo
echo "== the worker goes on with the next job"
curl -s -H "$auth" -X POST localhost:18080/jobs -d '{"model":"linear","epochs":1}' > "$work/after.json"
after=$(sed 's/.*"id":"\([^"]*\)".*/\1/' "$work/after.json")
for _ in $(seq 60); do curl -s -H "$auth" localhost:18080/jobs/$after | grep -q '"status":"succeeded"' && break; sleep 1; done
curl -s -H "$auth" localhost:18080/jobs/$after; echo
kill $server; wait $server
grep -E "listening|WARN|ERROR" "$work/serve.log" | head -20
if [[ -x .gpu/group-bench ]]; then
  echo "== fused groups on cuda: G = 1 … 64 CNN batch-4 members (BENCHMARKS.md, Fused groups)"
  CIFAR_BIN="$work/data" DEVICE=cuda THREADS=1 GROUP_SIZES="1 2 4 8 16 32 64" TRAIN_LIMIT=5000 .gpu/group-bench
fi
