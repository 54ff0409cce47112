"""Cluster administration through the client, on the shared test cluster: reads of the ring
and of the (empty) ring-change plan, and the refusals that leave the cluster as it is."""

from __future__ import annotations

import pytest

from riftkv import Client, Conflict, RiftKVError


def test_ring_and_status_agree(client: Client) -> None:
    ring = client.ring()
    status = client.status()
    assert ring["ring_version"] == status["ring_version"]
    assert ring["ring_size"] == len(ring["partitions"])
    owners = {p["owner"] for p in ring["partitions"]}
    assert len(owners) == 3


def test_a_settled_cluster_has_no_plan_and_nothing_to_commit(client: Client) -> None:
    plan = client.plan()
    assert plan["pending"] is False
    assert plan["staged"] is False
    assert plan["plan_id"] is None
    assert plan["transfers"] == []
    per_node = plan["partitions"]
    assert len(per_node) == 3
    assert all(n["before"] == n["after"] for n in per_node.values())
    assert sum(n["after"] for n in per_node.values()) == client.ring()["ring_size"]
    with pytest.raises(Conflict):
        client.commit_plan()


def test_changes_naming_unknown_members_are_refused(client: Client) -> None:
    before = client.ring()
    with pytest.raises(RiftKVError) as removed:
        client.remove("no-such-node")
    assert removed.value.status in (400, 404, 409)
    with pytest.raises(RiftKVError) as replaced:
        client.replace("no-such-node", "nor-this-one")
    assert replaced.value.status in (400, 404, 409)
    after = client.ring()
    assert after["ring_version"] == before["ring_version"]
    assert client.plan()["pending"] is False
