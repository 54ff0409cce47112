"""Data types: counters, sets and maps on typed buckets."""

from __future__ import annotations

import pytest

from riftkv import BadRequest, Client, Conflict, NotFound


def test_counter(client: Client, bucket: str) -> None:
    assert client.set_props(bucket, datatype="counter")["datatype"] == "counter"
    assert client.counter_value(bucket, "c") == 0
    client.counter_increment(bucket, "c", 5)
    client.counter_increment(bucket, "c", -2, w="all")
    assert client.counter_value(bucket, "c", r="all") == 3
    assert client.counter_increment(bucket, "c", returnbody=True) == 4
    tv = client.get_type(bucket, "c")
    assert tv.type == "counter" and tv.value == 4 and tv.context
    # Plain-value endpoints refuse a typed bucket.
    with pytest.raises(BadRequest):
        client.put(bucket, "c", b"1")


def test_set(client: Client, bucket: str) -> None:
    client.set_props(bucket, datatype="set")
    client.set_add(bucket, "s", ["b", "a", "c"])
    assert client.set_members(bucket, "s") == ["a", "b", "c"]
    client.set_remove(bucket, "s", ["b"])
    assert client.set_members(bucket, "s") == ["a", "c"]
    with pytest.raises(BadRequest):
        client.update_type(bucket, "s", {"remove": ["a"]})  # a remove without context
    assert client.set_members(bucket, "nothing") == []
    with pytest.raises(NotFound):
        client.get_type(bucket, "nothing")


def test_map(client: Client, bucket: str) -> None:
    client.set_props(bucket, datatype="map")
    client.map_update(
        bucket,
        "m",
        {"visits": {"counter": {"increment": 2}}, "name": {"register": {"assign": "ann"}}},
    )
    v = client.get_type(bucket, "m").value
    assert v["visits"] == {"counter": 2} and v["name"] == {"register": "ann"}
    client.map_update(bucket, "m", remove=["name"])
    assert "name" not in client.get_type(bucket, "m").value


def test_type_endpoints_refuse_a_plain_bucket(client: Client, bucket: str) -> None:
    with pytest.raises(BadRequest):
        client.counter_increment(bucket, "c")


def test_datatype_of_a_bucket_with_data_is_a_conflict(client: Client, bucket: str) -> None:
    client.put(bucket, "k", b"v")
    with pytest.raises(Conflict) as ei:
        client.set_props(bucket, datatype="set")
    assert ei.value.status == 409
