#!/usr/bin/env python3
"""Client side of ops/observability-test.sh (Python 3 standard library only).

Drives traffic against a local RiftKV cluster, checks each node's /metrics, and evaluates
every Grafana panel query and every alert rule through Prometheus's HTTP API. Every wait is
bounded; every address is on 127.0.0.1. Exits non-zero with one clear line on failure.
"""

import argparse
import json
import math
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

HTTP_TIMEOUT = 10


class CheckFailed(Exception):
    pass


def http(method, url, body=None, headers=None, timeout=HTTP_TIMEOUT):
    """Returns (status, headers, body bytes); HTTP error statuses are answers, not exceptions."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def get_json(url):
    status, _, body = http("GET", url)
    if status != 200:
        raise CheckFailed(f"GET {url} answered {status}: {body[:200]!r}")
    return json.loads(body)


def wait_until(what, timeout, probe, pause=0.25):
    """Calls probe() until it returns a true value or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            got = probe()
            if got:
                return got
        except (OSError, CheckFailed, ValueError) as e:
            last_error = e
        time.sleep(pause)
    raise CheckFailed(f"timed out after {timeout}s waiting for {what}"
                      + (f" (last error: {last_error})" if last_error else ""))


# ---------------------------------------------------------------- cluster

def status(url):
    return get_json(f"{url}/v1/admin/status")


def cmd_wait_ready(a):
    def ready():
        for url in a.urls:
            s = status(url)
            if not s.get("ring_settled") or len(s.get("members", [])) != a.members:
                return False
            if not all(m.get("reachable") for m in s["members"]):
                return False
        return True
    wait_until(f"{len(a.urls)} nodes to settle with {a.members} reachable members",
               a.timeout, ready)


def cmd_wait_reachable(a):
    want = a.state == "up"

    def seen():
        for url in a.urls:
            members = {m["node_id"]: m for m in status(url)["members"]}
            m = members.get(a.node)
            if m is None or bool(m.get("reachable")) != want:
                return False
        return True
    wait_until(f"{a.node} to be seen {a.state} by {', '.join(a.urls)}", a.timeout, seen)


def metric_values(url, name):
    """Sum of every sample of `name` (exact family member, any labels) in a node's /metrics."""
    status_code, _, body = http("GET", f"{url}/metrics")
    if status_code != 200:
        raise CheckFailed(f"{url}/metrics answered {status_code}")
    total = 0.0
    for line in body.decode().splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def cluster_sum(urls, name):
    return sum(metric_values(u, name) for u in urls)


CONTRACT_METRICS = {
    "riftkv_requests_total": "counter",
    "riftkv_request_duration_seconds": "histogram",
    "riftkv_quorum_failures_total": "counter",
    "riftkv_sloppy_writes_total": "counter",
    "riftkv_hints_pending": "gauge",
    "riftkv_hints_delivered_total": "counter",
    "riftkv_read_repairs_total": "counter",
    "riftkv_aae_exchanges_total": "counter",
    "riftkv_aae_keys_repaired_total": "counter",
    "riftkv_siblings": "histogram",
    "riftkv_clock_entries": "histogram",
    "riftkv_members": "gauge",
    "riftkv_peer_up": "gauge",
    "riftkv_partitions_owned": "gauge",
    "riftkv_handoffs_pending": "gauge",
    "riftkv_rpc_requests_total": "counter",
    "riftkv_rpc_duration_seconds": "histogram",
    "riftkv_storage_bytes": "gauge",
    "riftkv_storage_blob_garbage_bytes": "gauge",
    "process_cpu_seconds_total": "counter",
    "process_resident_memory_bytes": "gauge",
    "process_open_fds": "gauge",
}
# Labels each family may carry (besides `le` of histogram buckets): bounded sets only.
ALLOWED_LABELS = {
    "riftkv_requests_total": {"op", "code"},
    "riftkv_request_duration_seconds": {"op"},
    "riftkv_quorum_failures_total": {"op"},
    "riftkv_members": {"status"},
    "riftkv_peer_up": {"peer"},
    "riftkv_rpc_requests_total": {"msg", "outcome"},
    "riftkv_rpc_duration_seconds": {"msg"},
    "riftkv_build_info": {"version"},
}
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def cmd_check_metrics(a):
    for url in a.urls:
        status_code, headers, body = http("GET", f"{url}/metrics")
        if status_code != 200:
            raise CheckFailed(f"{url}/metrics answered {status_code}")
        if not headers.get("content-type", "").startswith("text/plain"):
            raise CheckFailed(f"{url}/metrics content-type is {headers.get('content-type')}")
        text = body.decode()
        for name, kind in CONTRACT_METRICS.items():
            if f"# TYPE {name} {kind}\n" not in text:
                raise CheckFailed(f"{url}/metrics lacks '# TYPE {name} {kind}'")
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            m = SAMPLE.match(line)
            if not m:
                raise CheckFailed(f"{url}/metrics has an unparsable line: {line!r}")
            name, labels = m.group(1), dict(LABEL.findall(m.group(2) or ""))
            family = re.sub(r"_(bucket|sum|count)$", "", name)
            if not family.startswith("riftkv_"):
                continue
            allowed = ALLOWED_LABELS.get(family, set()) | {"le"}
            extra = set(labels) - allowed
            if extra:
                raise CheckFailed(f"{url}: {name} carries unexpected labels {sorted(extra)}")
            if family == "riftkv_requests_total" and not re.fullmatch(r"\d{3}", labels["code"]):
                raise CheckFailed(f"{url}: code label {labels['code']!r} is not a status code")
    print(f"metrics: every contract metric with its type on {len(a.urls)} nodes, bounded labels")


# ---------------------------------------------------------------- traffic

def kv(url, bucket, key, query=""):
    return (f"{url}/v1/kv/{urllib.parse.quote(bucket, safe='')}/"
            f"{urllib.parse.quote(key, safe='')}" + (f"?{query}" if query else ""))


def expect(status_code, want, what, body=b""):
    if status_code not in want:
        raise CheckFailed(f"{what}: answered {status_code}, expected {want}: {body[:200]!r}")


def cmd_traffic_healthy(a):
    urls, marker = a.urls, a.value_marker
    n = 0
    for i in range(a.keys):
        url = urls[i % len(urls)]
        s, _, b = http("PUT", kv(url, "obs", f"k{i}"), f"{marker}-{i}".encode(),
                       {"content-type": "text/plain"})
        expect(s, {204}, f"PUT obs/k{i}", b)
        n += 1
    for i in range(a.keys):
        s, _, b = http("GET", kv(urls[(i + 1) % len(urls)], "obs", f"k{i}"))
        expect(s, {200}, f"GET obs/k{i}", b)
        if b != f"{marker}-{i}".encode():
            raise CheckFailed(f"GET obs/k{i} returned {b[:80]!r}")
        n += 1
    for i in range(0, a.keys, 10):
        s, _, b = http("DELETE", kv(urls[i % len(urls)], "obs", f"gone{i}"))
        expect(s, {204}, "DELETE", b)
        s, _, b = http("GET", kv(urls[0], "obs", f"never-written-{i}"))
        expect(s, {404}, "GET of a missing key", b)
        n += 2
    # Concurrent writes without context: siblings.
    for j, url in enumerate(urls):
        s, _, b = http("PUT", kv(url, "obs", "conflicted"), f"{marker}-sib{j}".encode())
        expect(s, {204}, "PUT obs/conflicted", b)
    s, _, b = http("GET", kv(urls[0], "obs", "conflicted"), headers={"accept": "application/json"})
    expect(s, {300}, "GET of a key with siblings", b)
    if len(json.loads(b)["siblings"]) < 2:
        raise CheckFailed("siblings were not kept")
    s, _, b = http("GET", f"{urls[0]}/v1/kv/obs?keys=true&limit=100")
    expect(s, {200}, "key listing", b)
    # A bucket with two replicas: on three nodes, its writes need a fallback when one is down.
    s, _, b = http("PUT", f"{urls[0]}/v1/buckets/sloppy/props", b'{"n": 2}',
                   {"content-type": "application/json"})
    expect(s, {204, 200}, "PUT sloppy bucket props", b)
    # Request ids: a client's id is echoed; without one, the node makes one up.
    s, h, b = http("PUT", kv(urls[0], "obs", "traced"), f"{marker}-traced".encode(),
                   {"x-request-id": a.request_id})
    expect(s, {204}, "PUT with a request id", b)
    if h.get("x-request-id") != a.request_id:
        raise CheckFailed(f"X-Request-Id not echoed: got {h.get('x-request-id')!r}")
    s, h, b = http("GET", kv(urls[1], "obs", "traced"))
    if len(h.get("x-request-id", "")) < 16:
        raise CheckFailed(f"no generated X-Request-Id in the answer: {h.get('x-request-id')!r}")
    print(f"traffic: {n + 8} requests on a healthy cluster")


def cmd_traffic_degraded(a):
    urls, marker = a.urls, a.value_marker
    # Sloppy writes: keys of the two-replica bucket whose primaries include the down node.
    for i in range(a.keys):
        s, _, b = http("PUT", kv(urls[i % len(urls)], "sloppy", f"s{i}"), f"{marker}-s{i}".encode())
        expect(s, {204}, f"PUT sloppy/s{i} with a node down", b)
    sloppy = cluster_sum(urls, "riftkv_sloppy_writes_total")
    if sloppy < 1:
        raise CheckFailed("no sloppy write was counted with a node down")
    wait_until("hints to be pending on a fallback", 20,
               lambda: cluster_sum(urls, "riftkv_hints_pending") > 0)
    # Update keys the down node holds (n=3), each with the context of a read so the new
    # version supersedes the old: the down node is stale when it comes back.
    for i in range(a.stale):
        url = urls[i % len(urls)]
        s, h, b = http("GET", kv(url, "obs", f"k{i}"))
        expect(s, {200}, f"GET obs/k{i} with a node down", b)
        s, _, b = http("PUT", kv(url, "obs", f"k{i}"), f"{marker}-v2-{i}".encode(),
                       {"x-riftkv-context": h.get("x-riftkv-context", "")})
        expect(s, {204}, f"PUT obs/k{i} with a node down", b)
    # Strict quorums cannot be met with a primary down: 503 quorum_unavailable.
    for i in range(5):
        s, _, b = http("PUT", kv(urls[0], "obs", f"strict{i}", "pw=3"), b"x")
        expect(s, {503}, "PUT with pw=3 and a node down", b)
        s, _, b = http("GET", kv(urls[-1], "obs", "k1", "pr=3"))
        expect(s, {503}, "GET with pr=3 and a node down", b)
    print(f"traffic: {a.keys} writes with a node down, {int(sloppy)} sloppy, 10 strict refusals")


def cmd_traffic_recovered(a):
    urls = a.urls
    wait_until("hints to be delivered to the restarted node", a.timeout,
               lambda: cluster_sum(urls, "riftkv_hints_delivered_total") > 0)
    for i in range(a.stale):
        s, _, b = http("GET", kv(urls[i % len(urls)], "obs", f"k{i}", "r=all"))
        expect(s, {200}, f"GET obs/k{i} after the restart", b)
        if b != f"{a.value_marker}-v2-{i}".encode():
            raise CheckFailed(f"GET obs/k{i} after the restart returned {b[:80]!r}")
    wait_until("read repair of the restarted node", a.timeout,
               lambda: cluster_sum(urls, "riftkv_read_repairs_total") > 0)
    print("traffic: hints delivered and stale replicas read-repaired after the restart")


# ---------------------------------------------------------------- Prometheus

def prom(base, path, **params):
    url = f"{base}{path}"
    if params:
        url += "?" + urllib.parse.urlencode(params)
    doc = get_json(url)
    if doc.get("status") != "success":
        raise CheckFailed(f"{path} failed: {doc.get('errorType')}: {doc.get('error')}")
    return doc["data"]


def cmd_wait_targets(a):
    def all_up():
        targets = prom(a.prom, "/api/v1/targets")["activeTargets"]
        up = [t for t in targets if t["health"] == "up"]
        return len(up) == a.count
    wait_until(f"Prometheus to scrape {a.count} targets", a.timeout, all_up)


def firing(base, alert, labels):
    for al in prom(base, "/api/v1/alerts")["alerts"]:
        if al["labels"].get("alertname") != alert or al["state"] != "firing":
            continue
        if all(al["labels"].get(k) == v for k, v in labels.items()):
            return al
    return None


def parse_labels(pairs):
    out = {}
    for p in pairs:
        k, _, v = p.partition("=")
        out[k] = v
    return out


def cmd_wait_alert(a):
    labels = parse_labels(a.label)
    if a.gone:
        wait_until(f"alert {a.alert} {labels} to stop firing", a.timeout,
                   lambda: firing(a.prom, a.alert, labels) is None)
        print(f"alerts: {a.alert} {labels} resolved")
        return
    al = wait_until(f"alert {a.alert} {labels} to fire", a.timeout,
                    lambda: firing(a.prom, a.alert, labels))
    print(f"alerts: {a.alert} firing for {al['labels']}")


def cmd_check_rules(a):
    with open(a.rules_file) as f:
        declared = len(re.findall(r"^\s*-\s*alert:", f.read(), re.M))
    groups = prom(a.prom, "/api/v1/rules")["groups"]
    rules = [r for g in groups for r in g["rules"] if r["type"] == "alerting"]
    if len(rules) != declared:
        raise CheckFailed(f"Prometheus loaded {len(rules)} alert rules, {a.rules_file} has {declared}")
    for r in rules:
        if r.get("health") != "ok":
            raise CheckFailed(f"rule {r['name']} health {r.get('health')}: {r.get('lastError')}")
        data = prom(a.prom, "/api/v1/query", query=r["query"])
        if data["resultType"] != "vector":
            raise CheckFailed(f"rule {r['name']} evaluates to a {data['resultType']}")
    print(f"alerts: {len(rules)} rules loaded, healthy, and each expression evaluates")


# Which panels the test traffic must light up. "traffic": some finite value > 0 during the
# run. "present": the query returns series (their metric stays 0 in this scenario).
PANEL_EXPECTATIONS = {
    "Nodes scraped": "traffic",
    "Valid members": "traffic",
    "Client requests/s": "traffic",
    "Hints pending (all nodes)": "traffic",
    "Request rate by operation": "traffic",
    "Answers by status code": "traffic",
    "Latency by operation (p50 / p99 / p99.9)": "traffic",
    "Server errors (5xx)": "traffic",
    "Quorum failures": "traffic",
    "Sloppy writes": "traffic",
    "Hints pending": "traffic",
    "Hints delivered": "traffic",
    "Read repairs": "traffic",
    "Anti-entropy": "present",  # anti-entropy exchanges are not implemented yet: always 0
    "Siblings per read": "traffic",
    "Clock entries per write": "traffic",
    "Siblings and clock entries (p99 / mean)": "traffic",
    "Members by status": "traffic",
    "Peers up": "traffic",
    "Partitions owned": "traffic",
    "Handoffs": "present",  # no ring change in this scenario
    "Inter-node requests": "traffic",
    "Inter-node latency p99": "traffic",
    "Storage bytes": "traffic",
    "Corrupt records": "present",
    "Process memory": "traffic",
    "Process CPU": "present",  # counted in whole seconds: a short run may stay at 0
}


def substitute(expr, variables):
    for name, value in sorted(variables.items(), key=lambda kv: -len(kv[0])):
        expr = expr.replace("${" + name + "}", value).replace("$" + name, value)
    if "$" in expr:
        raise CheckFailed(f"unsubstituted variable in {expr!r}")
    return expr


def panels_of(dash):
    for p in dash.get("panels", []):
        yield p
        yield from p.get("panels", [])


def cmd_check_dashboard(a):
    with open(a.dashboard) as f:
        dash = json.load(f)
    step = 1
    variables = {"job": a.job, "instance": ".*", "__rate_interval": a.rate_interval,
                 "__interval": f"{step}s", "__range": f"{int(a.end - a.start)}s"}
    failures, checked = [], 0
    titles = []
    for panel in panels_of(dash):
        if panel.get("type") == "row":
            continue
        title = panel.get("title", "")
        titles.append(title)
        want = PANEL_EXPECTATIONS.get(title)
        if want is None:
            failures.append(f"panel {title!r} has no expectation in obscheck.py")
            continue
        targets = panel.get("targets", [])
        if not targets:
            failures.append(f"panel {title!r} has no query")
            continue
        series, positive = 0, False
        for t in targets:
            expr = substitute(t["expr"], variables)
            data = prom(a.prom, "/api/v1/query_range", query=expr, start=a.start, end=a.end,
                        step=step)
            checked += 1
            for s in data["result"]:
                series += 1
                for _, v in s["values"]:
                    x = float(v)
                    if math.isfinite(x) and x > 0:
                        positive = True
        if series == 0:
            failures.append(f"panel {title!r}: no series")
        elif want == "traffic" and not positive:
            failures.append(f"panel {title!r}: no value above 0 during the traffic")
    stale = set(PANEL_EXPECTATIONS) - set(titles)
    if stale:
        failures.append(f"expectations for panels that no longer exist: {sorted(stale)}")
    if len(titles) != len(set(titles)):
        failures.append("two panels share a title")
    if failures:
        raise CheckFailed("dashboard: " + "; ".join(failures))
    print(f"dashboard: {len(titles)} panels, {checked} queries, every traffic panel has data")


# ---------------------------------------------------------------- logs

def cmd_check_logs(a):
    lines = 0
    nodes_with_id = []
    for path in a.logs:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
        for forbidden in a.forbid:
            if forbidden in text:
                raise CheckFailed(f"{path} contains a value or secret that must never be logged")
        for line in text.splitlines():
            if not line.strip():
                continue
            try:
                json.loads(line)
            except ValueError:
                raise CheckFailed(f"{path}: not a JSON log line: {line[:120]!r}")
            lines += 1
        if f'"request_id":"{a.request_id}"' in text:
            nodes_with_id.append(path)
    if len(nodes_with_id) < a.min_nodes:
        raise CheckFailed(f"request id {a.request_id} appears in {len(nodes_with_id)} node logs "
                          f"({nodes_with_id}), expected at least {a.min_nodes}")
    print(f"logs: {lines} JSON lines, request id followed on {len(nodes_with_id)} nodes, "
          "no values or secrets")


def main():
    p = argparse.ArgumentParser(description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("wait-ready"); s.add_argument("--members", type=int, required=True)
    s.add_argument("--timeout", type=float, default=60); s.add_argument("urls", nargs="+")
    s.set_defaults(fn=cmd_wait_ready)

    s = sub.add_parser("wait-reachable"); s.add_argument("--node", required=True)
    s.add_argument("--state", choices=["up", "down"], required=True)
    s.add_argument("--timeout", type=float, default=30); s.add_argument("urls", nargs="+")
    s.set_defaults(fn=cmd_wait_reachable)

    s = sub.add_parser("check-metrics"); s.add_argument("urls", nargs="+")
    s.set_defaults(fn=cmd_check_metrics)

    for name, fn in [("traffic-healthy", cmd_traffic_healthy),
                     ("traffic-degraded", cmd_traffic_degraded),
                     ("traffic-recovered", cmd_traffic_recovered)]:
        s = sub.add_parser(name)
        s.add_argument("--keys", type=int, default=60)
        s.add_argument("--stale", type=int, default=20)
        s.add_argument("--value-marker", required=True)
        s.add_argument("--request-id", default="")
        s.add_argument("--timeout", type=float, default=30)
        s.add_argument("urls", nargs="+")
        s.set_defaults(fn=fn)

    s = sub.add_parser("wait-targets"); s.add_argument("--prom", required=True)
    s.add_argument("--count", type=int, required=True)
    s.add_argument("--timeout", type=float, default=30); s.set_defaults(fn=cmd_wait_targets)

    s = sub.add_parser("wait-alert"); s.add_argument("--prom", required=True)
    s.add_argument("--alert", required=True); s.add_argument("--label", action="append", default=[])
    s.add_argument("--gone", action="store_true")
    s.add_argument("--timeout", type=float, default=30); s.set_defaults(fn=cmd_wait_alert)

    s = sub.add_parser("check-rules"); s.add_argument("--prom", required=True)
    s.add_argument("--rules-file", required=True); s.set_defaults(fn=cmd_check_rules)

    s = sub.add_parser("check-dashboard"); s.add_argument("--prom", required=True)
    s.add_argument("--dashboard", required=True); s.add_argument("--job", default="riftkv")
    s.add_argument("--rate-interval", default="30s")
    s.add_argument("--start", type=float, required=True)
    s.add_argument("--end", type=float, required=True); s.set_defaults(fn=cmd_check_dashboard)

    s = sub.add_parser("check-logs"); s.add_argument("--request-id", required=True)
    s.add_argument("--min-nodes", type=int, default=2)
    s.add_argument("--forbid", action="append", default=[]); s.add_argument("logs", nargs="+")
    s.set_defaults(fn=cmd_check_logs)

    a = p.parse_args()
    try:
        a.fn(a)
    except CheckFailed as e:
        print(f"FAIL: {e}", file=sys.stderr)
        sys.exit(1)
    except (OSError, ValueError, KeyError) as e:
        print(f"FAIL: {a.cmd}: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
