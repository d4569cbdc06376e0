#!/usr/bin/env bash
# Fused groups: benches/group.rs on the real CIFAR-10 (prepared as for the other benchmarks;
# CIFAR_BIN names another binary directory). usage: bench/group.sh (`make bench-group` calls it)
set -euo pipefail
root=$(pwd)
if [[ -z ${CIFAR_BIN:-} ]]; then
  . "$root/bench/cifar.sh"
  export CIFAR_BIN=$bin_dir
fi
exec ${CARGO:-cargo} bench --bench group
