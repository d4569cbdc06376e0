#!/usr/bin/env python3
"""A search through `trainyard serve` on real CIFAR-10: N trials of the tutorial CNN over
lr ~ log-uniform [1e-4, 1], with ASHA and with every trial run to its end (the same seed, so
the same trials), each with fusion on (the defaults) and off (--max-group 1). Prints, per
run: wall time from the POST to the last trial's end, epochs run, and the best trial's best
test accuracy.

usage: bench/search.py [--trials 27] [--epochs 27] [--train-limit 1000] [--seed 7]
       (CIFAR_ROOT as for the other benchmarks; `make bench-search` runs the BENCHMARKS row)
"""
import argparse
import json
import os
import subprocess
import tempfile
import time
import urllib.request

root = os.getcwd()
binary = os.path.join(root, "target/release/trainyard")


def cifar_bin_dir():
    data_root = os.environ.get("CIFAR_ROOT", os.path.expanduser("~/.cache/cifar10"))
    prep = os.environ.get("PREPARE_CIFAR10", os.path.join(root, "../shared/data/prepare-cifar10"))
    out = subprocess.run([prep, data_root], check=True, capture_output=True, text=True).stdout
    return out.strip().splitlines()[-1]


def call(port, token, method, path, body=None):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                 data=None if body is None else json.dumps(body).encode(),
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req) as r:
        return json.load(r)


def fetch(port, token, path):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req) as r:
        return r.read()


def run(flags, body, data_dir, port=18083, report=None):
    with tempfile.TemporaryDirectory() as work:
        token_file = os.path.join(work, "admin.token")
        server = subprocess.Popen([binary, "serve", "--bind", f"127.0.0.1:{port}", "--database",
                                   f"sqlite://{work}/db.sqlite", "--data-dir", data_dir, "--admin-token-file",
                                   token_file, "--rate-limit", "0", *flags],
                                  stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "log"), "w"))
        try:
            for _ in range(300):
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz")
                    break
                except OSError:
                    time.sleep(0.1)
            token = open(token_file).read().strip()
            start = time.time()
            sweep = call(port, token, "POST", "/sweeps", body)
            while True:
                s = call(port, token, "GET", f"/sweeps/{sweep['id']}")
                if all(j["status"] not in ("queued", "running") for j in s["jobs"]):
                    break
                time.sleep(0.5)
            wall = time.time() - start
            if report:
                for fmt, ext in [("html", "html"), ("zip", "zip")]:
                    with open(f"{report}.{ext}", "wb") as f:
                        f.write(fetch(port, token, f"/sweeps/{sweep['id']}/report?format={fmt}"))
            search = s["search"]
            statuses = {}
            for j in s["jobs"]:
                statuses[j["status"]] = statuses.get(j["status"], 0) + 1
            best = search["best"]
            return {"wall": wall, "epochs_run": search["epochs_run"], "epochs_full": search["epochs_full"],
                    "best": best["best"] if best else None, "best_label": best["label"] if best else None,
                    "statuses": statuses}
        finally:
            server.terminate()
            server.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=27)
    ap.add_argument("--epochs", type=int, default=27)
    ap.add_argument("--train-limit", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--grace", type=int, default=1, help="ASHA's grace_epochs")
    ap.add_argument("--reduction", type=int, default=3, help="ASHA's reduction")
    ap.add_argument("--only", choices=["asha", "full"], default=None)
    ap.add_argument("--report", help="save the first ASHA run's report as REPORT.html and REPORT.zip")
    ap.add_argument("--fusion", choices=["on", "off"], default=None)
    a = ap.parse_args()
    data_dir = cifar_bin_dir()
    base = {"epochs": a.epochs, "train_limit": a.train_limit, "seed": 1}
    search = {"lr": {"log_uniform": [0.0001, 1.0]}}
    asha = {"asha": {"metric": "test_acc", "grace_epochs": a.grace, "reduction": a.reduction}}
    print(f"# {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {os.cpu_count()} cores; {a.trials} trials of the "
          f"tutorial CNN, lr ~ log-uniform [1e-4, 1], {a.epochs} epochs on the first {a.train_limit} training images "
          f"of real CIFAR-10, sampling seed {a.seed}; ASHA grace {a.grace}, reduction {a.reduction}")
    results = {}
    for fusion, flags in [("on", []), ("off", ["--max-group", "1"])]:
        if a.fusion and a.fusion != fusion:
            continue
        for kind in ["asha", "full"]:
            if a.only and a.only != kind:
                continue
            body = {"name": f"bench {kind}", "base": base, "search": search, "trials": a.trials, "seed": a.seed}
            if kind == "asha":
                body["early_stop"] = asha
            keep = a.report if kind == "asha" and not any(k[1] == "asha" for k in results) else None
            r = run(flags, body, data_dir, report=keep)
            results[(fusion, kind)] = r
            print(f"fusion {fusion:3}  {kind:4}  {r['wall']:7.1f} s  epochs {r['epochs_run']:4}/{r['epochs_full']} "
                  f"({100 * r['epochs_run'] / r['epochs_full']:.0f} %)  best test acc {100 * (r['best'] or 0):.2f} % "
                  f"({r['best_label']})  {r['statuses']}", flush=True)
    for fusion in ["on", "off"]:
        if (fusion, "asha") in results and (fusion, "full") in results:
            s, f = results[(fusion, "asha")], results[(fusion, "full")]
            print(f"fusion {fusion}: ASHA ran {100 * s['epochs_run'] / f['epochs_run']:.0f} % of the epochs in "
                  f"{100 * s['wall'] / f['wall']:.0f} % of the wall time; best {100 * (s['best'] - f['best']):+.2f} points")


if __name__ == "__main__":
    main()
