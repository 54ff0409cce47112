#!/usr/bin/env python3
"""Ring-change cost: how long a fourth node takes to join a loaded 3-node cluster, per binary
and transfer limit, alternating the variants in one run (the machine is noisy: compare ratios
within a run, not figures across runs).

    ops/bench/transfer.py BEFORE_BIN AFTER_BIN [ROUNDS] [KEYS]

Variants: BEFORE_BIN, AFTER_BIN with no limit, AFTER_BIN with --transfer-max-bytes-per-sec
LIMIT (250000). Each run: 3 nodes on 127.0.0.1 (ports from 29700), KEYS (3000) values of
1 KiB written at w=2, then node 4 joins; the figure is the time from its start until every
node reports the ring settled with 4 members. Nodes and data are removed after each run,
failed or not; a run is abandoned after 300 s.
"""

import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

LIMIT = 250000
BASE = 29700
DEADLINE_S = 300


def status(port):
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        c.request("GET", "/v1/admin/status")
        r = c.getresponse()
        return json.loads(r.read()) if r.status == 200 else None
    except (OSError, ValueError):
        return None


def wait(what, f):
    end = time.time() + DEADLINE_S
    while time.time() < end:
        if f():
            return
        time.sleep(0.1)
    raise RuntimeError(f"timed out waiting for {what}")


def settled(ports, members):
    for p in ports:
        s = status(p)
        if not s or not s.get("ring_settled") or len(s.get("members", [])) != members:
            return False
    return True


def run(binary, extra, keys):
    work = tempfile.mkdtemp(prefix="riftkv-transfer-bench.")
    procs = []
    try:

        def start(i):
            args = [binary, "server", "--node-id", f"n{i}",
                    "--api-addr", f"127.0.0.1:{BASE + i}",
                    "--peer-addr", f"127.0.0.1:{BASE + 100 + i}",
                    "--data-dir", os.path.join(work, f"n{i}"), "--ring-size", "32",
                    "--gossip-interval-ms", "200", "--handoff-interval-ms", "200"] + extra
            if i > 1:
                args += ["--seeds", f"127.0.0.1:{BASE + 101}"]
            log = open(os.path.join(work, f"n{i}.log"), "w")
            procs.append(subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=log))

        for i in (1, 2, 3):
            start(i)
        ports = [BASE + i for i in (1, 2, 3)]
        wait("3 nodes settled", lambda: settled(ports, 3))
        c = http.client.HTTPConnection("127.0.0.1", BASE + 1, timeout=30)
        value = b"v" * 1024
        for k in range(keys):
            c.request("PUT", f"/v1/kv/bench/k{k:06d}?w=2", body=value,
                      headers={"content-type": "application/octet-stream"})
            r = c.getresponse()
            r.read()
            if r.status != 204:
                raise RuntimeError(f"write answered {r.status}")
        t0 = time.time()
        start(4)
        ports.append(BASE + 4)
        wait("4 nodes settled", lambda: settled(ports, 4))
        return time.time() - t0
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(work, ignore_errors=True)


def main():
    before, after = sys.argv[1], sys.argv[2]
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    keys = int(sys.argv[4]) if len(sys.argv) > 4 else 3000
    variants = [("before", before, []), ("after", after, []),
                (f"after, {LIMIT} B/s", after, ["--transfer-max-bytes-per-sec", str(LIMIT)])]
    times = {name: [] for name, _, _ in variants}
    for r in range(rounds):
        for name, binary, extra in variants:
            t = run(binary, extra, keys)
            times[name].append(t)
            print(f"round {r + 1}: {name}: join settled in {t:.2f} s", flush=True)
    base = sum(times["before"]) / len(times["before"])
    for name, ts in times.items():
        mean = sum(ts) / len(ts)
        print(f"{name}: mean {mean:.2f} s, {mean / base:.2f}x before")


if __name__ == "__main__":
    main()
