"""Read-modify-write with update(): no lost increment under concurrent writers."""

from __future__ import annotations

import threading
import uuid

from riftkv import Client, union_resolver

WRITERS = 8
INCREMENTS = 10


def test_update_creates_and_modifies(client: Client, bucket: str) -> None:
    assert client.update(bucket, "n", lambda v: (v or 0) + 1, json_value=True) == 1
    assert client.update(bucket, "n", lambda v: (v or 0) + 1, json_value=True) == 2
    obj = client.get(bucket, "n")
    assert obj.json() == 2 and obj.content_type == "application/json"
    assert client.update(bucket, "raw", lambda v: (v or b"") + b"x") == b"x"
    assert client.get(bucket, "raw").value == b"x"


def test_concurrent_updates_lose_no_increment(cluster, bucket: str) -> None:  # type: ignore[no-untyped-def]
    """8 threads, each on its own connection to one of the nodes, append unique ids to one
    key. Racing writes leave siblings; every later read merges them with the union resolver,
    so the final value holds every id once."""
    errors: list[BaseException] = []
    done: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(WRITERS)

    def writer(i: int) -> None:
        try:
            with cluster.client(i % 3, resolver=union_resolver) as c:
                start.wait(timeout=10)
                for j in range(INCREMENTS):
                    inc = f"{i}-{j}-{uuid.uuid4().hex[:6]}"
                    c.update(
                        bucket,
                        "counter",
                        lambda ids, inc=inc: (ids or []) + [inc],
                        json_value=True,
                        max_attempts=20,
                    )
                    with lock:
                        done.append(inc)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(i,), daemon=True) for i in range(WRITERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a writer did not finish in 60 s"
    assert not errors, errors
    assert len(done) == WRITERS * INCREMENTS

    with cluster.client(0, resolver=union_resolver) as c:
        final = c.get(bucket, "counter", r="all").json()
        assert len(final) == len(set(final)) == WRITERS * INCREMENTS
        assert set(final) == set(done)
        # The read above wrote the merge back: one version remains.
        assert len(c.get(bucket, "counter", r="all", resolver=None).live) == 1
