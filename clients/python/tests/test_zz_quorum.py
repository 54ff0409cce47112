"""Quorum errors: with two of three nodes down, a read needing two primaries fails with
QuorumUnavailable. Kills nodes, so it is marked destructive and runs last."""

from __future__ import annotations

import os
import signal
import socket
import time
from urllib.parse import urlsplit

import pytest

from riftkv import Client, QuorumUnavailable


def _port_closed(url: str) -> bool:
    u = urlsplit(url)
    try:
        with socket.create_connection((u.hostname, u.port or 80), timeout=0.5):
            return False
    except OSError:
        return True


@pytest.mark.destructive
def test_pr_2_with_two_nodes_down(cluster, bucket: str) -> None:  # type: ignore[no-untyped-def]
    with Client(cluster.urls[0], token=cluster.token, timeout=15) as c:
        c.put(bucket, "k", b"v", w="all")
        assert c.get(bucket, "k", pr=2).value == b"v"
        for pid in cluster.pids[1:]:
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while not all(_port_closed(u) for u in cluster.urls[1:]):
            assert time.monotonic() < deadline, "the killed nodes still accept connections"
            time.sleep(0.1)
        with pytest.raises(QuorumUnavailable) as ei:
            c.get(bucket, "k", pr=2, timeout=3000)
        e = ei.value
        assert e.status == 503 and e.error == "quorum_unavailable"
        assert e.needed == 2
        assert e.got is not None and e.got < 2
