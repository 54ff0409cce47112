"""Fixtures of the client tests: a real RiftKV cluster (3 nodes, auth on) started by
ops/python-client-test.sh, which exports

- RIFTKV_TEST_URLS: the API URLs of the nodes, comma-separated;
- RIFTKV_TEST_TOKEN: a token of the admin user, which holds every data permission;
- RIFTKV_TEST_PIDS: the node process ids, in the order of the URLs (the quorum test kills
  some of them, so it runs after every other test).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from riftkv import Client


@dataclass(frozen=True)
class Cluster:
    urls: list[str]
    token: str
    pids: list[int]

    def client(self, node: int = 0, **kw: object) -> Client:
        kw.setdefault("timeout", 10.0)
        return Client(self.urls[node], token=self.token, **kw)  # type: ignore[arg-type]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that take nodes down run last, whatever their file."""
    items.sort(key=lambda it: it.get_closest_marker("destructive") is not None)


@pytest.fixture(scope="session")
def cluster() -> Cluster:
    urls = [u for u in os.environ.get("RIFTKV_TEST_URLS", "").split(",") if u]
    token = os.environ.get("RIFTKV_TEST_TOKEN", "")
    pids = [int(p) for p in os.environ.get("RIFTKV_TEST_PIDS", "").split(",") if p]
    if len(urls) != 3 or not token or len(pids) != 3:
        pytest.fail(
            "no test cluster: run ops/python-client-test.sh, or export RIFTKV_TEST_URLS, "
            "RIFTKV_TEST_TOKEN and RIFTKV_TEST_PIDS for 3 nodes",
            pytrace=False,
        )
    return Cluster(urls=urls, token=token, pids=pids)


@pytest.fixture
def client(cluster: Cluster) -> Iterator[Client]:
    with cluster.client(0) as c:
        yield c


@pytest.fixture
def clients(cluster: Cluster) -> Iterator[list[Client]]:
    """One client per node."""
    cs = [cluster.client(i) for i in range(len(cluster.urls))]
    try:
        yield cs
    finally:
        for c in cs:
            c.close()


@pytest.fixture
def bucket() -> str:
    """A bucket name of its own for each test."""
    return f"py-{uuid.uuid4().hex[:12]}"
