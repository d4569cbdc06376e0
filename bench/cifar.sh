# Sourced by the benchmarks (with $root set to the repo root): the real CIFAR-10, built once
# from ../shared into $CIFAR_ROOT by prepare-cifar10. Sets data_root and bin_dir (the binary
# format's directory).
data_root=${CIFAR_ROOT:-$HOME/.cache/cifar10}
prep=${PREPARE_CIFAR10:-$root/../shared/data/prepare-cifar10}
bin_dir=$("$prep" "$data_root" | tail -n 1)
