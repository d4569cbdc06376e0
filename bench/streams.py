#!/usr/bin/env python3
"""Event-stream benchmark: N Server-Sent Event streams (GET /jobs/{id}/events) following
running jobs on an API process (`serve --no-workers`) while a separate `trainyard worker`
process trains them. Reports the API process's CPU (seconds of CPU per second of wall time)
and peak resident memory, with the streams and without them, and the delay from an epoch's
end (its `at`, logged by the worker in the same transaction as the epoch row) to its event
reaching a client (p50, p99). Standard library only.
usage: bench/streams.py BASE_URL TOKEN API_PID STREAMS SECONDS JOB_ID..."""
import datetime, http.client, json, statistics, sys, threading, time, urllib.parse


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0  # utime + stime, in clock ticks


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def follow(base, token, job, stop, delays, opened):
    u = urllib.parse.urlparse(base)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    c.request("GET", f"/jobs/{job}/events", headers={"Authorization": f"Bearer {token}"})
    r = c.getresponse()
    assert r.status == 200, r.status
    opened.append(1)
    event, data = None, None
    while not stop.is_set():
        line = r.fp.readline()
        if not line:
            break
        line = line.decode().rstrip("\n")
        if line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data = line[5:].strip()
        elif line == "" and event:
            now = time.time()
            if event == "epoch" and not stop.is_set():
                at = json.loads(data)["at"]
                t = datetime.datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp()
                delays.append(now - t)
            event, data = None, None
    c.close()


def measure(pid, seconds):
    c0, t0, peak = cpu_seconds(pid), time.time(), rss_mb(pid)
    while time.time() - t0 < seconds:
        time.sleep(0.2)
        peak = max(peak, rss_mb(pid))
    return (cpu_seconds(pid) - c0) / (time.time() - t0), peak


def main():
    base, token, pid, n, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
    jobs = sys.argv[6:]
    idle_cpu, idle_rss = measure(pid, seconds)
    stop, delays, opened, threads = threading.Event(), [], [], []
    for i in range(n):
        t = threading.Thread(target=follow, args=(base, token, jobs[i % len(jobs)], stop, delays, opened), daemon=True)
        t.start()
        threads.append(t)
    while len(opened) < n:
        time.sleep(0.05)
    # The history each stream replays first is not a live delay: count from here on.
    time.sleep(1.0)
    delays.clear()
    cpu, rss = measure(pid, seconds)
    stop.set()
    d = sorted(delays)
    p = lambda q: d[min(len(d) - 1, int(q * len(d)))] * 1000 if d else float("nan")
    print(f"streams        {n} following {len(jobs)} running jobs, {seconds:.0f} s each measurement")
    print(f"API CPU        {idle_cpu:.3f} cores without streams, {cpu:.3f} cores with them")
    print(f"API memory     {idle_rss:.0f} MB RSS without streams, {rss:.0f} MB peak with them")
    print(f"epoch events   {len(d)} received; delay from the epoch's end: p50 {p(0.5):.0f} ms, p99 {p(0.99):.0f} ms")


if __name__ == "__main__":
    main()
