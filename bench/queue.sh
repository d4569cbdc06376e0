#!/usr/bin/env bash
# Queue benchmark: jobs claimed and finished per second with 1, 4 and 8 `trainyard worker`
# processes (one CPU worker each) behind one API process (`serve --no-workers`), on SQLite
# and on PostgreSQL. The jobs are trivially small (linear model, 1 epoch of 20 synthetic
# images, 20 test images), so the figure is the queue's own cost: claim, heartbeat, epoch
# row, checkpoint, finish. Rate = jobs / (last finished_at - first started_at).
# usage: bench/queue.sh [JOBS]   (make bench-queue; needs curl and psql, PostgreSQL on PG_URL)
set -euo pipefail
root=$(pwd)
bin=$root/target/release/trainyard
jobs=${1:-300}
pg=${PG_URL:-postgres://postgres@127.0.0.1:5432}
work=$(mktemp -d)
port=18090
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
"$bin" data synthetic --data-dir "$work/data" --per-file 20 >/dev/null

echo "# $(date -u +%FT%TZ) $(nproc) cores; $jobs jobs per run"
printf '%-9s %8s %10s %12s\n' backend workers jobs/s "p50 job ms"
for backend in sqlite postgres; do
  for n in 1 4 8; do
    if [[ $backend == sqlite ]]; then
      db="sqlite://$work/q-$n.db"
    else
      name="trainyard_bench_$n"
      psql -q "$pg/postgres" -c "DROP DATABASE IF EXISTS $name WITH (FORCE)" -c "CREATE DATABASE $name" >/dev/null
      db="$pg/$name"
    fi
    rm -f "$work/admin.token"
    "$bin" serve --no-workers --bind 127.0.0.1:$port --database "$db" --admin-token-file "$work/admin.token" \
      --rate-limit 0 --max-queued-per-user 100000 >/dev/null 2>"$work/api.log" &
    api=$!
    pids+=("$api")
    for _ in $(seq 100); do curl -sf localhost:$port/healthz >/dev/null && break; sleep 0.1; done
    auth="Authorization: Bearer $(cat "$work/admin.token")"
    for i in $(seq "$jobs"); do
      curl -sf -o /dev/null -H "$auth" -X POST localhost:$port/jobs \
        -d '{"model": "linear", "epochs": 1, "batch_size": 10, "seed": 1}'
    done
    workers=()
    for w in $(seq "$n"); do
      "$bin" worker --database "$db" --data-dir "$work/data" --cpu-workers 1 --threads-per-worker 1 \
        >/dev/null 2>"$work/worker-$w.log" &
      workers+=("$!")
      pids+=("$!")
    done
    until curl -s -H "$auth" localhost:$port/queue | grep -q '"jobs":\[\]'; do sleep 0.5; done
    python3 - "$backend" "$n" "$port" "$auth" <<'PY'
import datetime, json, sys, urllib.request
backend, n, port, auth = sys.argv[1:]
jobs, cursor = [], None
while True:
    url = f"http://127.0.0.1:{port}/jobs?limit=200" + (f"&cursor={cursor}" if cursor else "")
    page = json.load(urllib.request.urlopen(urllib.request.Request(url, headers={"Authorization": auth.split(": ", 1)[1]})))
    jobs += page["jobs"]
    cursor = page["next_cursor"]
    if not cursor:
        break
assert all(j["status"] == "succeeded" and j["attempt"] == 1 for j in jobs), "every job once, and succeeded"
t = lambda s: datetime.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()
start, end = min(t(j["started_at"]) for j in jobs), max(t(j["finished_at"]) for j in jobs)
per = sorted(t(j["finished_at"]) - t(j["started_at"]) for j in jobs)
print("%-9s %8d %10.1f %12.0f" % (backend, int(n), len(jobs) / (end - start), 1000 * per[len(per) // 2]))
PY
    kill "${workers[@]}" "$api" 2>/dev/null || true
    wait "${workers[@]}" "$api" 2>/dev/null || true
  done
done
