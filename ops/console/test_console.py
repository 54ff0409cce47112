"""Browser test of the web console (`GET /ui`) against a running 3-node dev cluster.

Run by ops/console-test.sh, which starts the cluster and passes, in the environment:
  CONSOLE_BASE     http://127.0.0.1:PORT of node 1 (the console is at /ui)
  AUTH_BASE, AUTH_TOKEN  a node with auth on, and the token of its bootstrap admin
  VICTIM_NODE      node id of the member this test kills at the end
  VICTIM_PID       its process id
  CONSOLE_ARTIFACTS  directory for the screenshots
  CHROMIUM, CHROMEDRIVER  the browser and its driver

Every wait is bounded; any failed check raises, and the script exits non-zero.
"""

import base64
import json
import os
import signal
import sys
import time
import urllib.error
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

BASE = os.environ["CONSOLE_BASE"].rstrip("/")
VICTIM_NODE = os.environ["VICTIM_NODE"]
VICTIM_PID = int(os.environ["VICTIM_PID"])
ARTIFACTS = os.environ["CONSOLE_ARTIFACTS"]
BUCKET = "console-test"


def api(method, path, body=None, headers=None):
    """One request to node 1: (status, headers, body bytes)."""
    req = urllib.request.Request(BASE + path, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def api_json(path):
    status, _, body = api("GET", path, headers={"Accept": "application/json"})
    return status, json.loads(body) if body else None


def step(name):
    print(f"== console test: {name}", flush=True)


def shot(driver, name):
    os.makedirs(ARTIFACTS, exist_ok=True)
    path = os.path.join(ARTIFACTS, name + ".png")
    driver.save_screenshot(path)
    print(f"   screenshot {path}", flush=True)


def wait(driver, what, cond, seconds=10):
    """Polls `cond(driver)` until it is true; exceptions (an element re-rendered between two
    calls) count as not yet."""
    deadline = time.monotonic() + seconds
    last = None
    while True:
        try:
            got = cond(driver)
            if got:
                return got
        except Exception as e:  # noqa: BLE001 - stale or missing elements while rendering
            last = e
        if time.monotonic() >= deadline:
            shot(driver, "failed-" + what.replace(" ", "-")[:40])
            detail = f" (last error: {type(last).__name__}: {str(last)[:200]})" if last else ""
            raise AssertionError(f"timed out after {seconds} s waiting for {what}{detail}")
        time.sleep(0.2)


def text(driver, element_id):
    """The text of the element with this id, read in one script call."""
    return driver.execute_script(
        "const e = document.getElementById(arguments[0]); return e ? e.textContent : null;",
        element_id,
    )


def attr(driver, element_id, name):
    return driver.execute_script(
        "const e = document.getElementById(arguments[0]); return e ? e.getAttribute(arguments[1]) : null;",
        element_id,
        name,
    )


def css(driver, selector):
    return driver.find_elements(By.CSS_SELECTOR, selector)


def attrs(driver, selector, name):
    """Attribute `name` of every element matching `selector`, read in one script call (no
    stale elements while the page re-renders)."""
    return driver.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0])).map(e => e.getAttribute(arguments[1]));",
        selector,
        name,
    )


def go(driver, hash_route):
    driver.get(BASE + "/ui#/" + hash_route)


def make_driver():
    opts = webdriver.ChromeOptions()
    opts.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
              "--window-size=1280,900", "--hide-scrollbars"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver"))
    driver = webdriver.Chrome(options=opts, service=service)
    driver.set_page_load_timeout(20)
    driver.set_script_timeout(10)
    return driver


def check_cluster(driver):
    step("cluster page lists 3 reachable members")
    go(driver, "cluster")
    wait(driver, "3 reachable member rows",
         lambda d: attrs(d, "tr.member", "data-reachable") == ["true"] * 3, 15)
    nodes = attrs(driver, "tr.member", "data-node")
    assert len(set(nodes)) == 3, nodes
    assert VICTIM_NODE in nodes, nodes
    _, status = api_json("/v1/admin/status")
    wait(driver, "ring version and settled flag",
         lambda d: attr(d, "ring-settled", "data-settled") == "true"
         and text(d, "ring-version") == str(status["ring_version"]))
    # Partition counts of the rows come from the ring and add up to its size.
    counts = [int(c) for c in driver.execute_script(
        "return Array.from(document.querySelectorAll('tr.member td.member-partitions')).map(e => e.textContent);")]
    assert sum(counts) == status["ring_size"], counts
    shot(driver, "cluster")


def check_ring(driver):
    step("ring page draws every partition of /v1/admin/ring")
    _, ring = api_json("/v1/admin/ring")
    partitions = len(ring["partitions"])
    assert partitions == ring["ring_size"], ring["ring_size"]
    # `riftkv dev` founds its cluster with the server's default ring size.
    assert partitions == 64, partitions
    go(driver, "ring")
    wait(driver, f"{partitions} partition arcs",
         lambda d: len(css(d, "svg#ring-svg path.partition")) == partitions)
    owners = attrs(driver, "svg#ring-svg path.partition", "data-owner")
    ids = sorted(int(i) for i in attrs(driver, "svg#ring-svg path.partition", "data-partition"))
    assert ids == sorted(p["id"] for p in ring["partitions"]), ids
    by_id = {p["id"]: p["owner"] for p in ring["partitions"]}
    drawn = dict(zip((int(i) for i in attrs(driver, "svg#ring-svg path.partition", "data-partition")), owners))
    assert drawn == by_id, "arcs are coloured by another owner than the ring reports"
    legend = attrs(driver, "#ring-legend li", "data-owner")
    assert sorted(legend) == sorted(set(by_id.values())), legend
    legend_total = sum(int(c) for c in attrs(driver, "#ring-legend li", "data-count"))
    assert legend_total == partitions, legend_total
    # Clicking a partition shows its preference list.
    target = ring["partitions"][5]
    css(driver, f'svg#ring-svg path.partition[data-partition="{target["id"]}"]')[0].click()
    wait(driver, "the preference list of the clicked partition",
         lambda d: attrs(d, "#preflist li", "data-node") == target["preference_list"])
    shot(driver, "ring")


def check_traffic(driver):
    step("traffic page shows rates and latency from /metrics")
    go(driver, "traffic")
    for i in range(20):
        api("PUT", f"/v1/kv/console-traffic/k{i}", f"v{i}".encode(), {"Content-Type": "text/plain"})
        api("GET", f"/v1/kv/console-traffic/k{i}")
    wait(driver, "put and get rows with a measured rate",
         lambda d: {"put", "get"} <= set(attrs(d, "tr.op-row", "data-op"))
         and "measuring" not in (text(d, "total-rate") or "measuring"), 15)
    assert css(driver, 'tr.op-row[data-op="put"] td.op-quorum-failures'), "no quorum failure column"
    p50 = driver.execute_script(
        "return document.querySelector('tr.op-row[data-op=\"put\"] td.op-p50').textContent;")
    assert p50.endswith("s") and p50 != "-", f"put p50 shown as {p50!r}"
    assert css(driver, "#traffic-spark polyline")
    shot(driver, "traffic")


def check_siblings(driver):
    step("key page shows 2 siblings and a save resolves them")
    key = f"conflicted-{int(time.time())}"
    for v in (b"apple", b"banana"):
        status, _, body = api("PUT", f"/v1/kv/{BUCKET}/{key}", v, {"Content-Type": "text/plain"})
        assert status == 204, (status, body)
    status, read = api_json(f"/v1/kv/{BUCKET}/{key}")
    assert status == 300 and len(read["siblings"]) == 2, (status, read)

    go(driver, f"keys/{BUCKET}")
    wait(driver, "the key in the bucket's listing",
         lambda d: key in attrs(d, "#key-list li.key", "data-key"))
    shot(driver, "keys")
    css(driver, f'#key-list li.key[data-key="{key}"] a')[0].click()
    wait(driver, "2 sibling cards", lambda d: len(css(d, "#siblings .sibling")) == 2)
    shown = sorted(e.text for e in css(driver, "#siblings .sibling pre.sibling-value"))
    assert shown == ["apple", "banana"], shown
    types = [e.text for e in css(driver, "#siblings .sibling .sibling-content-type")]
    assert types == ["text/plain", "text/plain"], types
    shot(driver, "key-siblings")

    editor = driver.find_element(By.ID, "value-editor")
    editor.clear()
    editor.send_keys("cherry")
    driver.find_element(By.ID, "save-button").click()
    wait(driver, "the saved value as the only version",
         lambda d: attr(d, "save-result", "data-saved") == "put"
         and len(css(d, "#siblings .sibling")) == 1)
    shot(driver, "key-resolved")

    status, read = api_json(f"/v1/kv/{BUCKET}/{key}")
    assert status == 200, (status, read)
    values = [base64.b64decode(s["value_base64"]) for s in read["siblings"]]
    assert values == [b"cherry"], values
    status, _, body = api("GET", f"/v1/kv/{BUCKET}/{key}")
    assert (status, body) == (200, b"cherry"), (status, body)


def check_buckets(driver):
    step("buckets page edits props")
    bucket = f"console-props-{int(time.time())}"
    go(driver, f"buckets/{bucket}")
    wait(driver, "the props form", lambda d: len(css(d, "#prop-r")) == 1)
    field = driver.find_element(By.ID, "prop-r")
    field.clear()
    field.send_keys("one")
    driver.find_element(By.ID, "props-save").click()
    wait(driver, "the save confirmation",
         lambda d: "Saved r" in (text(d, "props-result") or ""))
    _, props = api_json(f"/v1/buckets/{bucket}/props")
    assert props["r"] == "one", props
    shot(driver, "buckets")


def check_node_down(driver):
    step(f"killing {VICTIM_NODE} (pid {VICTIM_PID}); its row must turn unreachable")
    go(driver, "cluster")
    wait(driver, "3 member rows", lambda d: len(css(d, "tr.member")) == 3)
    os.kill(VICTIM_PID, signal.SIGKILL)
    killed = time.monotonic()
    wait(driver, f"{VICTIM_NODE} unreachable",
         lambda d: attrs(d, f'tr.member[data-node="{VICTIM_NODE}"]', "data-reachable") == ["false"], 10)
    print(f"   unreachable after {time.monotonic() - killed:.1f} s", flush=True)
    reachable = attrs(driver, "tr.member", "data-reachable")
    assert reachable.count("true") == 2, reachable
    shot(driver, "cluster-node-down")


def check_auth(driver):
    step("with auth on: the page loads, 401 asks for the token, 403 is said per panel")
    base = os.environ["AUTH_BASE"].rstrip("/")
    driver.get(base + "/ui#/cluster")
    wait(driver, "the login form", lambda d: d.find_element(By.ID, "login").is_displayed())
    shot(driver, "login")
    driver.find_element(By.ID, "token-input").send_keys(os.environ["AUTH_TOKEN"])
    driver.find_element(By.ID, "login-save").click()
    wait(driver, "the member row of the auth node",
         lambda d: attrs(d, "tr.member", "data-node") == ["auth1"])
    assert not driver.find_element(By.ID, "login").is_displayed()
    # The bootstrap admin administers the cluster but holds no bucket permission.
    driver.get(base + "/ui#/keys/console-test")
    wait(driver, "the refusal on the key list",
         lambda d: (text(d, "keys-list-panel") or "").strip() == "your token does not allow this")
    shot(driver, "forbidden")


def check_console_log(driver):
    """No Content-Security-Policy violation and no script error in the browser's console."""
    entries = driver.get_log("browser")
    bad = [e for e in entries if e.get("level") == "SEVERE"
           and ("Content Security Policy" in e.get("message", "")
                or "Uncaught" in e.get("message", ""))]
    assert not bad, bad


def main():
    os.makedirs(ARTIFACTS, exist_ok=True)
    started = time.monotonic()
    driver = make_driver()
    try:
        check_cluster(driver)
        check_ring(driver)
        check_traffic(driver)
        check_siblings(driver)
        check_buckets(driver)
        check_console_log(driver)
        check_auth(driver)
        check_node_down(driver)
        check_console_log(driver)
    finally:
        driver.quit()
    print(f"== console test: passed in {time.monotonic() - started:.0f} s", flush=True)


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print(f"console test FAILED: {e}", file=sys.stderr, flush=True)
        sys.exit(1)
