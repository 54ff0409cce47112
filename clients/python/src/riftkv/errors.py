"""Typed errors of the RiftKV client.

Every answer of the server that is not a success is raised as a subclass of
:class:`RiftKVError`, which carries the HTTP status, the server's machine-readable ``error``
code, its one-sentence ``message`` and the whole JSON body (``body``) with any extra fields.
"""

from __future__ import annotations

from typing import Any

import httpx

__all__ = [
    "RiftKVError",
    "TransportError",
    "BadRequest",
    "InvalidContext",
    "Unauthorized",
    "Forbidden",
    "NotFound",
    "Conflict",
    "TooManySiblings",
    "PreconditionFailed",
    "TooLarge",
    "ServiceUnavailable",
    "QuorumUnavailable",
    "RequestTimeout",
    "Overloaded",
    "ServerError",
    "SiblingsError",
    "UpdateFailed",
    "error_from_response",
]


class RiftKVError(Exception):
    """Base class of every error raised by this package.

    ``status`` is the HTTP status (0 when no answer came), ``error`` the server's code
    (e.g. ``"quorum_unavailable"``), ``message`` its human sentence, ``body`` the decoded
    JSON error body (empty when the answer had none).
    """

    status: int
    error: str
    message: str
    body: dict[str, Any]

    def __init__(
        self,
        message: str,
        *,
        status: int = 0,
        error: str = "",
        body: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{error}: {message}" if error else message)
        self.status = status
        self.error = error
        self.message = message
        self.body = dict(body or {})


class TransportError(RiftKVError):
    """The server could not be reached or did not answer in time (connection refused, TLS
    failure, client-side timeout). The original ``httpx`` exception is ``__cause__``."""


class BadRequest(RiftKVError):
    """400: a bad parameter, path, body or context. ``error`` is the server's code
    (``bad_request`` or ``invalid_context``)."""


class InvalidContext(BadRequest):
    """400 ``invalid_context``: a malformed or forged context token, or one read from
    another key."""


class Unauthorized(RiftKVError):
    """401: no bearer token, or an unknown, revoked or expired one."""


class Forbidden(RiftKVError):
    """403: the token is valid but lacks the permission."""


class NotFound(RiftKVError):
    """404: nothing live under the key (or no such user, token or route).

    ``context`` is the causal context of the tombstones or expired versions when the server
    sent one: writing with it supersedes them instead of standing beside them.
    """

    context: str | None

    def __init__(self, message: str, *, context: str | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.context = context


class Conflict(RiftKVError):
    """409 ``conflict``: e.g. changing ``n`` or ``datatype`` of a bucket that holds data."""


class TooManySiblings(Conflict):
    """409 ``too_many_siblings``: read, resolve the siblings and write back with the
    context. ``limit`` is the server's sibling limit."""

    @property
    def limit(self) -> int | None:
        v = self.body.get("limit")
        return int(v) if isinstance(v, int) else None


class PreconditionFailed(RiftKVError):
    """412: ``If-None-Match: *`` was given and a live value exists."""


class TooLarge(RiftKVError):
    """413: the value (or all siblings together) is over the server's limit (``limit``,
    in bytes)."""

    @property
    def limit(self) -> int | None:
        v = self.body.get("limit")
        return int(v) if isinstance(v, int) else None


class ServiceUnavailable(RiftKVError):
    """503: the cluster could not serve the request now (base of the three 503 codes)."""


class QuorumUnavailable(ServiceUnavailable):
    """503 ``quorum_unavailable``: ``needed`` replies were required (for the parameter
    ``which``, e.g. ``"pr"``) and only ``got`` could be had."""

    @property
    def needed(self) -> int | None:
        v = self.body.get("needed")
        return int(v) if isinstance(v, int) else None

    @property
    def got(self) -> int | None:
        v = self.body.get("got")
        return int(v) if isinstance(v, int) else None

    @property
    def which(self) -> str | None:
        v = self.body.get("which")
        return v if isinstance(v, str) else None


class RequestTimeout(ServiceUnavailable):
    """503 ``timeout``: the server gave up before enough replicas answered."""


class Overloaded(ServiceUnavailable):
    """503 ``overloaded``: the node has too many requests in flight. ``retry_after`` is the
    server's ``Retry-After`` in seconds (None when absent)."""

    retry_after: float | None

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


class ServerError(RiftKVError):
    """Any other unexpected status (500, 405, ...)."""


class SiblingsError(RiftKVError):
    """Raised by :attr:`riftkv.Object.value` (and by ``update`` without a resolver) when the
    key holds several live siblings and no resolver chose one. ``obj`` is the object read."""

    def __init__(self, message: str, obj: Any) -> None:
        super().__init__(message, error="siblings")
        self.obj = obj


class UpdateFailed(RiftKVError):
    """``update()`` gave up after its bounded number of attempts; ``__cause__`` is the last
    error."""


_BY_CODE: dict[str, type[RiftKVError]] = {
    "bad_request": BadRequest,
    "invalid_context": InvalidContext,
    "unauthorized": Unauthorized,
    "forbidden": Forbidden,
    "not_found": NotFound,
    "conflict": Conflict,
    "too_many_siblings": TooManySiblings,
    "precondition_failed": PreconditionFailed,
    "too_large": TooLarge,
    "quorum_unavailable": QuorumUnavailable,
    "timeout": RequestTimeout,
    "overloaded": Overloaded,
}

_BY_STATUS: dict[int, type[RiftKVError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    412: PreconditionFailed,
    413: TooLarge,
    503: ServiceUnavailable,
}


def _retry_after(resp: httpx.Response) -> float | None:
    raw = resp.headers.get("retry-after")
    if raw is None:
        return None
    try:
        return float(raw.strip())
    except ValueError:
        return None


def error_from_response(resp: httpx.Response) -> RiftKVError:
    """The typed error of a non-success answer."""
    body: dict[str, Any] = {}
    try:
        decoded = resp.json()
        if isinstance(decoded, dict):
            body = decoded
    except ValueError:
        pass
    code = body.get("error") if isinstance(body.get("error"), str) else ""
    message = body.get("message") if isinstance(body.get("message"), str) else ""
    if not message:
        message = f"HTTP {resp.status_code} {resp.reason_phrase}".strip()
    cls = _BY_CODE.get(code or "") or _BY_STATUS.get(resp.status_code) or ServerError
    kw: dict[str, Any] = {"status": resp.status_code, "error": code or "", "body": body}
    if issubclass(cls, NotFound):
        ctx = resp.headers.get("x-riftkv-context") or body.get("context")
        return cls(message, context=ctx if isinstance(ctx, str) and ctx else None, **kw)
    if issubclass(cls, Overloaded):
        return cls(message, retry_after=_retry_after(resp), **kw)
    return cls(message, **kw)
