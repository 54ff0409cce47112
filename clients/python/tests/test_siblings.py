"""Siblings: concurrent writers without context, and their resolution."""

from __future__ import annotations

import json

import pytest

from riftkv import Client, Sibling, SiblingsError, last_write_wins, union_resolver


def _make_siblings(clients: list[Client], bucket: str, key: str, carts: list[list[str]]) -> None:
    # Writes without a context are concurrent with every stored version: each one stays.
    for i, cart in enumerate(carts):
        clients[i % len(clients)].put_json(bucket, key, cart, w="all")


def test_writers_without_context_create_siblings(clients: list[Client], bucket: str) -> None:
    _make_siblings(clients, bucket, "cart", [["apple"], ["pear"], ["plum", "apple"]])
    obj = clients[0].get(bucket, "cart", r="all")
    assert obj.has_siblings
    assert len(obj.live) == 3
    assert sorted(json.loads(s.value)[0] for s in obj.live) == ["apple", "pear", "plum"]
    assert all(s.content_type == "application/json" for s in obj.live)
    with pytest.raises(SiblingsError):
        _ = obj.value
    assert not obj.resolved


def test_union_resolver_merges_and_writes_back(clients: list[Client], bucket: str) -> None:
    _make_siblings(clients, bucket, "cart", [["apple"], ["pear", "fig"], ["plum", "apple"]])
    merged = clients[1].get(bucket, "cart", r="all", resolver=union_resolver)
    assert merged.resolved
    assert sorted(merged.json()) == ["apple", "fig", "pear", "plum"]
    # The write-back superseded every sibling: a plain read (no resolver) sees one value.
    for c in clients:
        obj = c.get(bucket, "cart", r="all")
        assert len(obj.live) == 1, obj.siblings
        assert sorted(obj.json()) == ["apple", "fig", "pear", "plum"]


def test_resolver_without_write_back(clients: list[Client], bucket: str) -> None:
    _make_siblings(clients, bucket, "cart", [["a"], ["b"]])
    obj = clients[0].get(bucket, "cart", r="all", resolver=union_resolver, write_back=False)
    assert sorted(obj.json()) == ["a", "b"]
    assert clients[0].get(bucket, "cart", r="all").has_siblings


def test_resolver_precedence(cluster, bucket: str) -> None:  # type: ignore[no-untyped-def]
    calls: list[str] = []

    def tagged(name: str):  # type: ignore[no-untyped-def]
        def res(siblings: list[Sibling]) -> bytes:
            calls.append(name)
            return b"from-" + name.encode()

        return res

    with cluster.client(0, resolver=tagged("client")) as c:
        for who in ("client", "bucket", "call"):
            c.put(bucket, who, b"1")
            c.put(bucket, who, b"2")
        assert c.get(bucket, "client").value == b"from-client"
        b = c.bucket(bucket, resolver=tagged("bucket"))
        assert b.get("bucket").value == b"from-bucket"
        assert b.get("call", resolver=tagged("call")).value == b"from-call"
        assert calls == ["client", "bucket", "call"]
        # resolver=None turns resolution off for one call.
        c.put(bucket, "off", b"1")
        c.put(bucket, "off", b"2")
        assert c.get(bucket, "off", resolver=None).has_siblings


def test_last_write_wins_resolver(clients: list[Client], bucket: str) -> None:
    clients[0].put(bucket, "k", b"old")
    clients[1].put(bucket, "k", b"new")
    obj = clients[2].get(bucket, "k", r="all", resolver=last_write_wins)
    assert obj.value == b"new"
