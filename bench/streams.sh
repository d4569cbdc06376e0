#!/usr/bin/env bash
# Event-stream benchmark (BENCHMARKS.md "Event streams"): an API process (serve --no-workers)
# and one `trainyard worker` process (2 CPU workers) on SQLite, 16 long jobs (linear model,
# synthetic data, an epoch every ~0.3 s), and STREAMS clients following them.
# With INPROCESS=1 the API process trains too (serve with 2 CPU workers): its hub wakes the
# streams at once, so the delay is the in-process one (its CPU figure then includes training).
# usage: [INPROCESS=1] bench/streams.sh [STREAMS] [SECONDS]   (make bench-streams)
set -euo pipefail
root=$(pwd)
bin=$root/target/release/trainyard
streams=${1:-200}
seconds=${2:-20}
work=$(mktemp -d)
port=18093
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
"$bin" data synthetic --data-dir "$work/data" --per-file 2000 >/dev/null
db="sqlite://$work/s.db"
"$bin" serve $([[ ${INPROCESS:-0} == 1 ]] && echo "--cpu-workers 2 --threads-per-worker 1" || echo --no-workers) --bind 127.0.0.1:$port --database "$db" --data-dir "$work/data" \
  --admin-token-file "$work/admin.token" --rate-limit 0 --max-streams-per-user 100000 >/dev/null 2>"$work/api.log" &
api=$!
pids+=("$api")
for _ in $(seq 100); do curl -sf localhost:$port/healthz >/dev/null && break; sleep 0.1; done
token=$(cat "$work/admin.token")
ids=()
for i in $(seq 16); do
  ids+=("$(curl -sf -H "Authorization: Bearer $token" -X POST localhost:$port/jobs \
    -d '{"model": "linear", "epochs": 1000, "batch_size": 100}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')")
done
if [[ ${INPROCESS:-0} != 1 ]]; then
  "$bin" worker --database "$db" --data-dir "$work/data" --cpu-workers 2 --threads-per-worker 1 >/dev/null 2>"$work/worker.log" &
  pids+=("$!")
fi
sleep 5
echo "# $(date -u +%FT%TZ) $(nproc) cores"
python3 "$root/bench/streams.py" "http://127.0.0.1:$port" "$token" "$api" "$streams" "$seconds" "${ids[@]}"
