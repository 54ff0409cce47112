"""HTTPS with the client's ``ca`` option, against a node serving a test CA's certificate
(ops/python-client-test.sh exports RIFTKV_TEST_TLS_URL and RIFTKV_TEST_CA)."""

from __future__ import annotations

import os

import pytest

from riftkv import Client, TransportError, Unauthorized

TLS_URL = os.environ.get("RIFTKV_TEST_TLS_URL", "")
CA = os.environ.get("RIFTKV_TEST_CA", "")

pytestmark = pytest.mark.skipif(not (TLS_URL and CA), reason="no TLS node (openssl missing)")


def test_https_with_ca(cluster, bucket: str) -> None:  # type: ignore[no-untyped-def]
    with Client(TLS_URL, token=cluster.token, ca=CA, timeout=10) as c:
        c.put(bucket, "k", b"over tls", content_type="text/plain", w=1)  # a one-node cluster
        obj = c.get(bucket, "k", r=1)
        assert obj.value == b"over tls" and obj.content_type == "text/plain"
    with Client(TLS_URL, ca=CA, timeout=10) as anon:
        with pytest.raises(Unauthorized):
            anon.get(bucket, "k")


def test_https_without_the_ca_fails_verification(cluster, bucket: str) -> None:  # type: ignore[no-untyped-def]
    with Client(TLS_URL, token=cluster.token, timeout=10) as c:
        with pytest.raises(TransportError):
            c.get(bucket, "k")
