#!/usr/bin/env bash
# Service benchmark: latency of GET /jobs/{id}/metrics at 50 concurrent clients (wrk) while a
# CPU job trains (cnn, batch 4, real CIFAR-10), and that job's epoch times without load
# (epochs 1 and 3) and under it (epoch 2).
# usage: bench/service.sh   (run from the repo root; `make bench-service` calls it; needs wrk)
set -euo pipefail
root=$(pwd)
bin=$root/target/release/trainyard
. "$root/bench/cifar.sh"
work=$(mktemp -d)
port=18080
"$bin" serve --bind 127.0.0.1:$port --database "sqlite://$work/db.sqlite" --data-dir "$bin_dir" \
  --admin-token-file "$work/admin.token" --rate-limit 0 --cpu-workers 1 >/dev/null 2>"$work/log" &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 50); do curl -sf localhost:$port/healthz >/dev/null && break; sleep 0.1; done
auth="Authorization: Bearer $(cat "$work/admin.token")"
id=$(curl -s -H "$auth" -X POST localhost:$port/jobs -d '{"name": "bench", "epochs": 3, "seed": 1}' | sed 's/.*"id":"\([^"]*\)".*/\1/')
wait_epochs() { until [[ $(curl -s -H "$auth" localhost:$port/jobs/$id | sed 's/.*"epochs_done":\([0-9]*\).*/\1/') -ge $1 ]]; do sleep 0.2; done; }
wait_epochs 1
echo "# $(date -u +%FT%TZ) $(nproc) cores; wrk -t1 -c50 -d8s on /jobs/{id}/metrics during epoch 2"
wrk -t1 -c50 -d8s --latency -H "$auth" "http://127.0.0.1:$port/jobs/$id/metrics" | grep -E "Latency|50%|90%|99%|Requests/sec|requests in|Non-2xx"
wait_epochs 3
curl -s -H "$auth" localhost:$port/jobs/$id/metrics | tr '{' '\n' | sed -n 's/.*"epoch":\([0-9]*\).*"seconds":\([0-9.]*\),"train_seconds":\([0-9.]*\).*/epoch \1: \2 s (training \3 s)/p'
