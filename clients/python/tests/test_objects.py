"""Plain objects: round trips, delete, listing, parameters, contexts, limits."""

from __future__ import annotations

import time

import pytest

from riftkv import (
    BadRequest,
    Client,
    InvalidContext,
    NotFound,
    Object,
    PreconditionFailed,
    TooLarge,
)


def test_bytes_and_content_type_round_trip(client: Client, bucket: str) -> None:
    value = bytes(range(256)) * 3
    ctx = client.put(bucket, "blob", value, content_type="application/x-test")
    assert ctx
    obj = client.get(bucket, "blob")
    assert isinstance(obj, Object)
    assert obj.value == value
    assert obj.content_type == "application/x-test"
    assert len(obj.siblings) == 1
    s = obj.siblings[0]
    assert not s.deleted and s.etag and s.last_modified is not None
    assert obj.context


def test_text_value_and_default_content_types(client: Client, bucket: str) -> None:
    client.put(bucket, "t", "héllo")
    obj = client.get(bucket, "t")
    assert obj.text == "héllo"
    assert obj.content_type.startswith("text/plain")
    client.put(bucket, "b", b"\x00")
    assert client.get(bucket, "b").content_type == "application/octet-stream"


def test_read_from_every_node(clients: list[Client], bucket: str) -> None:
    clients[0].put(bucket, "k", b"v", w="all")
    for c in clients:
        assert c.get(bucket, "k", r="all").value == b"v"


def test_delete_then_not_found(client: Client, bucket: str) -> None:
    client.put(bucket, "gone", b"x")
    obj = client.get(bucket, "gone")
    client.delete(bucket, "gone", context=obj)
    with pytest.raises(NotFound) as ei:
        client.get(bucket, "gone")
    assert ei.value.status == 404
    assert ei.value.error == "not_found"
    assert ei.value.context, "a tombstone's 404 carries its context"
    assert client.get_or_none(bucket, "gone") is None
    # A key never written: 404 without a context; deleting it is fine.
    with pytest.raises(NotFound):
        client.get(bucket, "never")
    client.delete(bucket, "never")


def test_write_after_delete_with_tombstone_context_leaves_one_version(client: Client, bucket: str) -> None:
    client.put(bucket, "k", b"1")
    client.delete(bucket, "k")
    with pytest.raises(NotFound) as ei:
        client.get(bucket, "k")
    client.put(bucket, "k", b"2", context=ei.value.context)
    obj = client.get(bucket, "k")
    assert obj.value == b"2"
    assert len(obj.siblings) == 1


def test_context_supersedes(client: Client, bucket: str) -> None:
    client.put(bucket, "k", b"1")
    obj = client.get(bucket, "k")
    client.put(bucket, "k", b"2", context=obj)
    obj = client.get(bucket, "k")
    assert obj.value == b"2" and len(obj.siblings) == 1
    client.put(bucket, "k", b"3", context=obj.context)
    assert client.get(bucket, "k").siblings[0].value == b"3"


def test_odd_key_names(client: Client, bucket: str) -> None:
    keys = ["a/b", "sp ace", "q?x=1&y", "pct%41", "ünï", "#frag"]
    for k in keys:
        client.put(bucket, k, k.encode())
    for k in keys:
        assert client.get(bucket, k).value == k.encode()
    assert sorted(client.iter_keys(bucket)) == sorted(keys)


def test_list_keys_pages(client: Client, bucket: str) -> None:
    keys = [f"k{i:03d}" for i in range(25)]
    for k in keys:
        client.put(bucket, k, b"x")
    page = client.list_keys(bucket, limit=10)
    assert page.keys == keys[:10]
    assert page.next is not None
    page2 = client.list_keys(bucket, limit=10, after=page.next)
    assert page2.keys == keys[10:20]
    assert list(client.iter_keys(bucket, page_size=7)) == keys
    client.delete(bucket, "k000")
    assert "k000" not in list(client.iter_keys(bucket))


def test_consistency_parameters(client: Client, bucket: str) -> None:
    client.put(bucket, "k", b"v", w="all", dw=1, pw="quorum", timeout=5000)
    client.put(bucket, "k2", b"v", w=3, dw="one", pw=2)
    assert client.get(bucket, "k", r="all", pr="quorum", timeout=5000).value == b"v"
    assert client.get(bucket, "k2", r=1, pr=0).value == b"v"
    client.delete(bucket, "k", w="quorum", dw=0, pw=1, timeout=5000)
    with pytest.raises(BadRequest) as ei:
        client.get(bucket, "k2", r=4)
    assert ei.value.status == 400 and ei.value.error == "bad_request" and ei.value.message
    with pytest.raises(ValueError):
        client.get(bucket, "k2", r="most")  # type: ignore[arg-type]


def test_if_none_match(client: Client, bucket: str) -> None:
    client.put(bucket, "once", b"1", if_none_match=True)
    with pytest.raises(PreconditionFailed) as ei:
        client.put(bucket, "once", b"2", if_none_match=True)
    assert ei.value.status == 412 and ei.value.error == "precondition_failed"
    assert client.get(bucket, "once").value == b"1"


def test_returnbody(client: Client, bucket: str) -> None:
    obj = client.put(bucket, "rb", b"body", content_type="text/x", returnbody=True)
    assert isinstance(obj, Object)
    assert obj.value == b"body" and obj.content_type == "text/x" and obj.context


def test_ttl_expires(client: Client, bucket: str) -> None:
    client.put(bucket, "short", b"x", ttl=1)
    assert client.get(bucket, "short").value == b"x"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if client.get_or_none(bucket, "short") is None:
            break
        time.sleep(0.25)
    else:
        pytest.fail("a value with ttl=1 was still readable after 10 s")
    assert "short" not in list(client.iter_keys(bucket))


def test_context_of_another_key_is_refused(client: Client, bucket: str) -> None:
    client.put(bucket, "a", b"1")
    a = client.get(bucket, "a")
    with pytest.raises(InvalidContext) as ei:
        client.put(bucket, "b", b"2", context=a)
    assert ei.value.status == 400 and ei.value.error == "invalid_context"
    with pytest.raises(BadRequest):
        client.put(bucket, "b", b"2", context="not-a-token")


def test_too_large(client: Client, bucket: str) -> None:
    with pytest.raises(TooLarge) as ei:
        client.put(bucket, "big", b"\x00" * (8 * 1024 * 1024 + 1))
    assert ei.value.status == 413 and ei.value.error == "too_large"
    assert ei.value.limit == 8 * 1024 * 1024


def test_bucket_props(client: Client, bucket: str) -> None:
    props = client.get_props(bucket)
    assert props["n"] == 3 and props["conflict"] == "siblings"
    new = client.set_props(bucket, r="all", dw=1, conflict="lww")
    assert new["r"] == "all" and new["conflict"] == "lww" and new["n"] == 3
    assert client.get_props(bucket)["conflict"] == "lww"
    b = client.bucket(bucket)
    assert b.props()["r"] == "all"
