#!/usr/bin/env bash
# make test's API check: schemathesis (PyPI) against a real `trainyard serve` (its own
# database, the synthetic data, no workers, rate limit off), with every check, through the
# examples, coverage and fuzzing phases, for at most ST_SECONDS (default 60). Any finding
# fails make test. Allowances, each explained, are in schemathesis.toml.
# Usage: tests/schemathesis.sh [BINARY]   (run from the repository root)
set -euo pipefail
bin=${1:-target/release/trainyard}
st=${ST:-.venv/bin/st}
seconds=${ST_SECONDS:-60}
dir=$(mktemp -d)
server=
cleanup() { [ -n "$server" ] && kill "$server" 2>/dev/null; wait 2>/dev/null; rm -rf "$dir"; }
trap cleanup EXIT
"$bin" data synthetic --data-dir "$dir/data" >/dev/null
RUST_LOG=warn,trainyard=info "$bin" serve --bind 127.0.0.1:0 --database "sqlite://$dir/st.db" \
  --data-dir "$dir/data" --no-workers --rate-limit 0 --admin-token-file "$dir/admin.token" \
  >"$dir/serve.out" 2>"$dir/serve.log" &
server=$!
for _ in $(seq 100); do
  base=$(grep -o 'listening on http://[0-9.:]*' "$dir/serve.log" | head -1 | sed 's/listening on //') || true
  [ -n "$base" ] && break
  sleep 0.1
done
[ -n "$base" ] || { echo "error: trainyard serve did not start:" >&2; cat "$dir/serve.log" >&2; exit 1; }
token=$(cat "$dir/admin.token")
echo "schemathesis against $base for ${seconds}s (the token is the server's first admin's)"
# N.B.: no --checks on the command line: it would override schemathesis.toml's allowances;
# schemathesis runs every check by default.
"$st" run "$base/openapi.yaml" --phases examples,coverage,fuzzing \
  -H "Authorization: Bearer $token" --max-time "$seconds" --no-color --workers 2
