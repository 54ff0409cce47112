"""The mapping of error answers to exception classes, on answers built in memory (the
503 overloaded and 409 too_many_siblings answers are hard to provoke on a test cluster)."""

from __future__ import annotations

import httpx
import pytest

from riftkv import (
    BadRequest,
    Conflict,
    InvalidContext,
    NotFound,
    Overloaded,
    QuorumUnavailable,
    RequestTimeout,
    RiftKVError,
    ServerError,
    ServiceUnavailable,
    TooLarge,
    TooManySiblings,
)
from riftkv.errors import error_from_response


def answer(status: int, body: object = None, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers) if body is not None else httpx.Response(status, headers=headers)


@pytest.mark.parametrize(
    ("status", "code", "cls"),
    [
        (400, "bad_request", BadRequest),
        (400, "invalid_context", InvalidContext),
        (404, "not_found", NotFound),
        (409, "conflict", Conflict),
        (409, "too_many_siblings", TooManySiblings),
        (413, "too_large", TooLarge),
        (503, "quorum_unavailable", QuorumUnavailable),
        (503, "timeout", RequestTimeout),
        (503, "overloaded", Overloaded),
        (500, "internal", ServerError),
    ],
)
def test_codes(status: int, code: str, cls: type[RiftKVError]) -> None:
    e = error_from_response(answer(status, {"error": code, "message": "m"}))
    assert type(e) is cls
    assert (e.status, e.error, e.message) == (status, code, "m")


def test_fields() -> None:
    e = error_from_response(
        answer(503, {"error": "overloaded", "message": "busy"}, {"Retry-After": "1"})
    )
    assert isinstance(e, Overloaded) and isinstance(e, ServiceUnavailable)
    assert e.retry_after == 1.0
    q = error_from_response(
        answer(503, {"error": "quorum_unavailable", "message": "m", "needed": 2, "got": 1, "which": "pr"})
    )
    assert isinstance(q, QuorumUnavailable) and (q.needed, q.got, q.which) == (2, 1, "pr")
    t = error_from_response(answer(409, {"error": "too_many_siblings", "message": "m", "limit": 100}))
    assert isinstance(t, TooManySiblings) and t.limit == 100
    n = error_from_response(answer(404, {"error": "not_found", "message": "m"}, {"X-RiftKV-Context": "c"}))
    assert isinstance(n, NotFound) and n.context == "c"


def test_answers_without_a_json_body() -> None:
    e = error_from_response(answer(502))
    assert isinstance(e, ServerError) and e.status == 502 and e.error == ""
    e = error_from_response(answer(503))
    assert type(e) is ServiceUnavailable
