"""Authentication and authorization: 401 and 403 are typed errors."""

from __future__ import annotations

import time
import uuid

import pytest

from riftkv import Client, Forbidden, NotFound, RiftKVError, Unauthorized


def test_no_token_is_unauthorized(cluster, bucket: str) -> None:  # type: ignore[no-untyped-def]
    with Client(cluster.urls[0], timeout=10) as anon:
        with pytest.raises(Unauthorized) as ei:
            anon.get(bucket, "k")
    assert ei.value.status == 401 and ei.value.error == "unauthorized" and ei.value.message


def test_wrong_token_is_unauthorized(cluster, bucket: str) -> None:  # type: ignore[no-untyped-def]
    with Client(cluster.urls[1], token="not-a-real-token", timeout=10) as bad:
        with pytest.raises(Unauthorized):
            bad.put(bucket, "k", b"v")
        with pytest.raises(Unauthorized):
            bad.status()


def _eventually(fn, seconds: float = 10.0):  # type: ignore[no-untyped-def]
    """Retries ``fn`` while it raises Forbidden/Unauthorized (grants spread by gossip)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return fn()
        except (Forbidden, Unauthorized):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_forbidden_without_the_grant(client: Client, cluster, bucket: str) -> None:  # type: ignore[no-untyped-def]
    name = f"reader-{uuid.uuid4().hex[:8]}"
    client.put_user(name, groups=["py-tests"])
    token = client.create_token(name, ttl_seconds=600)
    assert token["token"] and token["id"]
    client.grant(f"user:{name}", bucket, ["get"])
    client.put(bucket, "k", b"v")
    try:
        with Client(cluster.urls[0], token=token["token"], timeout=10) as reader:
            # The grant allows reading this bucket ...
            assert _eventually(lambda: reader.get(bucket, "k")).value == b"v"
            with pytest.raises(NotFound):
                reader.get(bucket, "missing")
            # ... but not writing it, nor reading another bucket, nor the admin API.
            with pytest.raises(Forbidden) as ei:
                reader.put(bucket, "k", b"w")
            assert ei.value.status == 403 and ei.value.error == "forbidden"
            with pytest.raises(Forbidden):
                reader.get(bucket + "-other", "k")
            with pytest.raises(Forbidden):
                reader.status()
            # A revoked token is unknown: 401.
            client.revoke_token(name, token["id"])
            deadline = time.monotonic() + 10
            while True:
                try:
                    reader.get(bucket, "k")
                except Unauthorized:
                    break
                if time.monotonic() > deadline:
                    pytest.fail("a revoked token still worked after 10 s")
                time.sleep(0.2)
    finally:
        client.delete_user(name)


def test_errors_share_a_base_class() -> None:
    for cls in (Unauthorized, Forbidden, NotFound):
        assert issubclass(cls, RiftKVError)


def test_requests_after_early_error_answers_succeed(cluster, bucket: str) -> None:  # type: ignore[no-untyped-def]
    """The server may close a keep-alive connection after answering a request with a body
    before reading that body (401, 400); the next request on the client must still work."""
    with Client(cluster.urls[0], token="wrong", timeout=10) as bad, cluster.client(0) as good:
        for i in range(30):
            with pytest.raises(Unauthorized):
                bad.put(bucket, "k", b"v" * 100)
            with pytest.raises(Unauthorized):
                bad.status()
            other = good.get_or_none(bucket, "nope")
            assert other is None
            good.put(bucket, "a", b"1")
            try:
                good.put(bucket, "b", b"2", context=good.get(bucket, "a"))
            except RiftKVError as e:
                assert e.error == "invalid_context"
            good.get(bucket, "a")
