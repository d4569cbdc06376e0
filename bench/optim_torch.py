"""torch.optim's step over G separate tutorial CNNs' parameters (benches/optim.rs's peer):
SGD (momentum 0.9) and Adadelta as torch runs them on a CPU (for-loop), Adam with
foreach=True, as BENCHMARKS.md's "Optimisers" compares.

    .venv/bin/python bench/optim_torch.py [--groups 1 8 32] [--steps 200] [--threads 2]
"""
import argparse
import time

import torch
import torch.nn as nn


def cnn():
    return nn.Sequential(nn.Conv2d(3, 6, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84),
                         nn.ReLU(), nn.Linear(84, 10))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--groups", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    print(f"torch.optim step, tutorial CNN, {a.threads} threads, torch {torch.__version__}")
    print(f"{'optimizer':<16} {'G':>4} {'us/step':>12} {'us/step/member':>16}")
    recipes = [
        ("sgd", lambda ps: torch.optim.SGD(ps, lr=1e-3, momentum=0.9)),
        ("adam foreach", lambda ps: torch.optim.Adam(ps, lr=1e-3, foreach=True)),
        ("adam", lambda ps: torch.optim.Adam(ps, lr=1e-3)),
        ("adadelta", lambda ps: torch.optim.Adadelta(ps)),
    ]
    for name, make in recipes:
        for g in a.groups:
            params = [p for _ in range(g) for p in cnn().parameters()]
            for p in params:
                p.grad = torch.randn_like(p) * 1e-2
            opt = make(params)
            for _ in range(20):
                opt.step()
            t = time.perf_counter()
            for _ in range(a.steps):
                opt.step()
            us = (time.perf_counter() - t) * 1e6 / a.steps
            print(f"{name:<16} {g:>4} {us:>12.1f} {us / g:>16.1f}")


if __name__ == "__main__":
    main()
