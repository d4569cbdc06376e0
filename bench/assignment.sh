#!/usr/bin/env bash
# The assignment preset (12 jobs) with "epochs": 1 through `trainyard serve` on real CIFAR-10:
# seconds from the POST to the last job's end, for each set of serve flags given.
# usage: bench/assignment.sh [FLAGS ...]   (TRAINYARD_BIN: another build) e.g. bench/assignment.sh "" "--max-group 1" "--cpu-workers 2 --threads-per-worker 1"
#        (no argument: the default settings). `make bench-assignment` runs the table of BENCHMARKS.md.
set -euo pipefail
root=$(pwd)
bin=${TRAINYARD_BIN:-$root/target/release/trainyard}
. "$root/bench/cifar.sh"
port=18081
[[ $# -gt 0 ]] || set -- ""
echo "# $(date -u +%FT%TZ) $(nproc) cores; the assignment preset, 1 epoch, real CIFAR-10"
for flags in "$@"; do
  work=$(mktemp -d)
  # shellcheck disable=SC2086
  "$bin" serve --bind 127.0.0.1:$port --database "sqlite://$work/db.sqlite" --data-dir "$bin_dir" \
    --admin-token-file "$work/admin.token" --rate-limit 0 $flags >/dev/null 2>"$work/log" &
  server=$!
  for _ in $(seq 100); do curl -sf localhost:$port/healthz >/dev/null && break; sleep 0.1; done
  auth="Authorization: Bearer $(cat "$work/admin.token")"
  start=$(date +%s.%N)
  sweep=$(curl -s -H "$auth" -X POST localhost:$port/sweeps -d '{"preset": "cifar10-assignment", "overrides": {"epochs": 1, "seed": 1}}' \
    | sed 's/.*"id":"\([^"]*\)".*/\1/' | head -c 36)
  sleep 0.5
  until curl -s -H "$auth" localhost:$port/queue | grep -q '"jobs":\[\]'; do sleep 0.2; done
  end=$(date +%s.%N)
  failed=$(curl -s -H "$auth" "localhost:$port/jobs?status=failed&limit=100" | grep -c '"id"' || true)
  groups=$(grep -c "group started" "$work/log" || true)
  printf '%-50s %6.1f s  (%s groups, %s failed; sweep %s)\n' "serve ${flags:-(defaults)}" "$(echo "$end - $start" | bc)" "$groups" "$failed" "$sweep"
  if [[ -n ${SHOW_JOBS:-} ]]; then
    curl -s -H "$auth" "localhost:$port/jobs?limit=100" | python3 -c '
import json, sys, datetime as d
t = lambda s: d.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()
jobs = json.load(sys.stdin)["jobs"]
t0 = min(t(j["created_at"]) for j in jobs)
for j in sorted(jobs, key=lambda j: t(j["started_at"])):
    s = j["spec"]
    print("  %-28s group of %2d  %-12s  starts %5.1f s, ends %5.1f s" % (s.get("name") or s["model"] + "@" + str(s["batch_size"]), j["group"]["size"], j["worker"].split("/")[-1], t(j["started_at"]) - t0, t(j["finished_at"]) - t0))
'
  fi
  kill $server; wait $server 2>/dev/null || true
  rm -rf "$work"
done
