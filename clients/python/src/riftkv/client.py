"""The RiftKV client: objects, siblings and their resolution, read-modify-write, data types,
bucket props and a few admin calls, over the REST API (httpx)."""

from __future__ import annotations

import json as _json
import random
import ssl
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias, overload
from urllib.parse import quote

import httpx

from .errors import (
    Conflict,
    NotFound,
    Overloaded,
    PreconditionFailed,
    RiftKVError,
    SiblingsError,
    TransportError,
    UpdateFailed,
    error_from_response,
)
from .models import Object, Sibling, TypeValue
from .resolvers import ResolvedValue, Resolver

__all__ = ["Client", "Bucket", "KeysPage", "Quorum", "Value"]

Quorum: TypeAlias = int | Literal["one", "quorum", "all"]
"""A consistency parameter: a number of replicas, or ``"one"``, ``"quorum"``, ``"all"``."""

Value: TypeAlias = bytes | bytearray | memoryview | str
Name: TypeAlias = str | bytes



class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


_UNSET: Any = _Unset()

CONTEXT_HEADER = "X-RiftKV-Context"
_QUORUM_WORDS = ("one", "quorum", "all")
# A pooled connection the server closed before reading the request shows as one of these.
_STALE = (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)
_IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE"})
# update(): errors after which a fresh read and another attempt make sense.
_RETRYABLE = (PreconditionFailed, Conflict, Overloaded)


@dataclass(frozen=True)
class KeysPage:
    """One page of a key listing: ``keys`` in byte order and the cursor ``next`` to pass as
    ``after`` (None at the end)."""

    keys: list[str]
    next: str | None


def _segment(name: Name) -> str:
    if isinstance(name, str):
        name = name.encode("utf-8")
    if not name:
        raise ValueError("bucket and key names must not be empty")
    return quote(bytes(name), safe="")


def _quorum(name: str, v: Quorum | None) -> str | None:
    if v is None:
        return None
    if isinstance(v, bool):
        raise TypeError(f"{name} must be an int or one of {_QUORUM_WORDS}, not a bool")
    if isinstance(v, int):
        if v < 0:
            raise ValueError(f"{name} must be >= 0")
        return str(v)
    if isinstance(v, str) and v in _QUORUM_WORDS:
        return v
    raise ValueError(f"{name}={v!r}: an int or one of {_QUORUM_WORDS}")


def _params(**kw: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in kw.items():
        if v is None:
            continue
        if k in ("r", "w", "dw", "pr", "pw"):
            q = _quorum(k, v)
            if q is not None:
                out[k] = q
        elif isinstance(v, bool):
            out[k] = "true" if v else "false"
        else:
            out[k] = str(v)
    return out


def _body(value: Value) -> tuple[bytes, str]:
    """The bytes of a value and the content type it implies."""
    if isinstance(value, str):
        return value.encode("utf-8"), "text/plain; charset=utf-8"
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value), "application/octet-stream"
    raise TypeError(f"a value is bytes or str, not {type(value).__name__}")


def _context_token(context: str | Object | None) -> str | None:
    if context is None:
        return None
    if isinstance(context, Object):
        return context.context or None
    return context or None


def _as_sibling(resolved: ResolvedValue, live: Sequence[Sibling]) -> Sibling:
    """A resolver's answer as a sibling (bytes keep the newest sibling's content type)."""
    if isinstance(resolved, Sibling):
        return resolved
    newest = max(live, key=lambda s: (s.last_modified is not None, s.last_modified or 0, s.etag)) if live else None
    if isinstance(resolved, str):
        return Sibling(value=resolved.encode("utf-8"), content_type="text/plain; charset=utf-8")
    if isinstance(resolved, (bytes, bytearray, memoryview)):
        ct = newest.content_type if newest is not None else "application/octet-stream"
        return Sibling(value=bytes(resolved), content_type=ct)
    raise TypeError(f"a resolver returns bytes, str or Sibling, not {type(resolved).__name__}")


class Client:
    """A connection to a RiftKV node.

    ``url``: the node's API URL (``http://127.0.0.1:8701`` or ``https://...``).
    ``token``: bearer token, sent as ``Authorization: Bearer`` on every request.
    ``ca``: path of a CA certificate (PEM) to verify an https node with; default: the
    system's trust store. ``timeout``: HTTP timeout in seconds (connect, read, write).
    ``retry_stale``: resend an idempotent request once when a pooled connection turns out
    closed by the server before it answered (see :meth:`request`).
    ``resolver``: the default sibling resolver (see :mod:`riftkv.resolvers`); None = raise
    :class:`SiblingsError` from ``.value`` and let the caller look at the siblings.

    Thread-safe: one client may be shared by threads (httpx's connection pool is).
    """

    def __init__(
        self,
        url: str,
        token: str | None = None,
        ca: str | None = None,
        timeout: float = 10.0,
        *,
        resolver: Resolver | None = None,
        headers: Mapping[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
        retry_stale: bool = True,
    ) -> None:
        self.url = url.rstrip("/")
        self.timeout = float(timeout)
        self.resolver = resolver
        self.retry_stale = retry_stale
        h = {"User-Agent": "riftkv-python/0.1"}
        if headers:
            h.update(headers)
        if token:
            h["Authorization"] = f"Bearer {token}"
        verify: ssl.SSLContext | bool = True
        if ca is not None:
            verify = ssl.create_default_context(cafile=str(ca))
        self._http = httpx.Client(
            base_url=self.url,
            headers=h,
            timeout=self.timeout,
            verify=verify,
            transport=transport,
        )

    # -- lifecycle ------------------------------------------------------------------------

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client({self.url!r})"

    def bucket(self, name: Name, *, resolver: Resolver | None = _UNSET) -> Bucket:
        """A handle on one bucket, optionally with its own resolver."""
        return Bucket(self, name, resolver=resolver)

    # -- transport ------------------------------------------------------------------------

    def _http_timeout(self, server_timeout_ms: int | None) -> float:
        if server_timeout_ms is None:
            return self.timeout
        return max(self.timeout, server_timeout_ms / 1000.0 + 2.0)

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        content: bytes | None = None,
        json: Any = None,
        server_timeout_ms: int | None = None,
        ok: Sequence[int] = (200, 201, 202, 204),
    ) -> httpx.Response:
        """Sends one request; answers outside ``ok`` raise their typed error.

        A request of an idempotent method (GET, HEAD, PUT, DELETE) that fails because the
        server closed a pooled keep-alive connection before answering is sent once more on a
        new connection (as browsers and Go's net/http do); other failures raise
        :class:`TransportError`.
        """
        if json is not None:
            content = _json.dumps(json).encode()
            headers = {**(headers or {}), "Content-Type": "application/json"}
        attempts = 2 if self.retry_stale and method.upper() in _IDEMPOTENT else 1
        for attempt in range(attempts):
            try:
                resp = self._http.request(
                    method,
                    path,
                    params=params,
                    headers=headers,
                    content=content,
                    timeout=self._http_timeout(server_timeout_ms),
                )
                break
            except _STALE as e:
                if attempt + 1 < attempts:
                    continue
                raise TransportError(f"{method} {path}: {e!r}") from e
            except httpx.HTTPError as e:
                raise TransportError(f"{method} {path}: {e!r}") from e
        if resp.status_code not in ok:
            raise error_from_response(resp)
        return resp

    @staticmethod
    def _kv_path(bucket: Name, key: Name | None = None) -> str:
        if key is None:
            return f"/v1/kv/{_segment(bucket)}"
        return f"/v1/kv/{_segment(bucket)}/{_segment(key)}"

    # -- objects --------------------------------------------------------------------------

    def _read(
        self,
        bucket: Name,
        key: Name,
        r: Quorum | None,
        pr: Quorum | None,
        timeout: int | None,
    ) -> Object:
        resp = self.request(
            "GET",
            self._kv_path(bucket, key),
            params=_params(r=r, pr=pr, timeout=timeout),
            headers={"Accept": "application/json"},
            server_timeout_ms=timeout,
            ok=(200, 300),
        )
        return Object.from_json(bucket, key, resp.json())

    def _pick_resolver(self, resolver: Resolver | None) -> Resolver | None:
        return self.resolver if resolver is _UNSET else resolver

    def get(
        self,
        bucket: Name,
        key: Name,
        *,
        r: Quorum | None = None,
        pr: Quorum | None = None,
        timeout: int | None = None,
        resolver: Resolver | None = _UNSET,
        write_back: bool = True,
    ) -> Object:
        """Reads a key. Raises :class:`NotFound` when nothing is live.

        With several live siblings and a resolver (this call's, else the bucket's, else the
        client's), the resolver picks one value, which is written back with the context
        covering every sibling (unless ``write_back=False``) so the siblings collapse; the
        returned object then holds that one value (``resolved`` is True). Without a
        resolver the object keeps every sibling and ``.value`` raises
        :class:`SiblingsError`.

        ``r``, ``pr``: replies needed (int, ``"one"``, ``"quorum"``, ``"all"``);
        ``timeout``: the server's timeout in milliseconds.
        """
        obj = self._read(bucket, key, r, pr, timeout)
        res = self._pick_resolver(resolver)
        if res is not None and obj.has_siblings:
            obj = self._resolve(obj, res, write_back=write_back, timeout=timeout)
        return obj

    def get_or_none(self, bucket: Name, key: Name, **kw: Any) -> Object | None:
        """Like :meth:`get`, but None instead of :class:`NotFound`."""
        try:
            return self.get(bucket, key, **kw)
        except NotFound:
            return None

    def _resolve(self, obj: Object, resolver: Resolver, *, write_back: bool, timeout: int | None) -> Object:
        for _ in range(5):
            chosen = _as_sibling(resolver(obj.live), obj.live)
            if not write_back:
                break
            written = self.put(
                obj.bucket,
                obj.key,
                chosen.value,
                content_type=chosen.content_type,
                context=obj.context,
                timeout=timeout,
                returnbody=True,
            )
            if not written.has_siblings:
                return Object(written.bucket, written.key, written.context, written.siblings, resolved=True)
            obj = written  # a concurrent write landed in between: resolve again
        return Object(obj.bucket, obj.key, obj.context, [chosen], resolved=True)

    @overload
    def put(
        self,
        bucket: Name,
        key: Name,
        value: Value,
        *,
        content_type: str | None = ...,
        context: str | Object | None = ...,
        if_none_match: bool = ...,
        ttl: int | None = ...,
        w: Quorum | None = ...,
        dw: Quorum | None = ...,
        pw: Quorum | None = ...,
        timeout: int | None = ...,
        returnbody: Literal[False] = ...,
    ) -> str: ...

    @overload
    def put(
        self,
        bucket: Name,
        key: Name,
        value: Value,
        *,
        content_type: str | None = ...,
        context: str | Object | None = ...,
        if_none_match: bool = ...,
        ttl: int | None = ...,
        w: Quorum | None = ...,
        dw: Quorum | None = ...,
        pw: Quorum | None = ...,
        timeout: int | None = ...,
        returnbody: Literal[True],
    ) -> Object: ...

    def put(
        self,
        bucket: Name,
        key: Name,
        value: Value,
        *,
        content_type: str | None = None,
        context: str | Object | None = None,
        if_none_match: bool = False,
        ttl: int | None = None,
        w: Quorum | None = None,
        dw: Quorum | None = None,
        pw: Quorum | None = None,
        timeout: int | None = None,
        returnbody: bool = False,
    ) -> str | Object:
        """Writes a value.

        ``context``: the object read earlier (or its ``.context``): the write supersedes
        exactly the versions it saw; without it the write stands beside every stored
        version (siblings, unless the bucket is ``lww``). ``if_none_match=True``: write only
        when no live value exists, else :class:`PreconditionFailed`. ``ttl``: seconds until
        the value expires. ``content_type`` defaults to ``application/octet-stream`` for
        bytes and ``text/plain; charset=utf-8`` for str.

        Returns the new context token, or with ``returnbody=True`` the object as stored
        after the write (siblings included).
        """
        data, implied = _body(value)
        headers = {"Content-Type": content_type or implied}
        token = _context_token(context)
        if token:
            headers[CONTEXT_HEADER] = token
        if if_none_match:
            headers["If-None-Match"] = "*"
        if returnbody:
            headers["Accept"] = "application/json"
        resp = self.request(
            "PUT",
            self._kv_path(bucket, key),
            params=_params(w=w, dw=dw, pw=pw, timeout=timeout, ttl=ttl, returnbody=returnbody or None),
            headers=headers,
            content=data,
            server_timeout_ms=timeout,
            ok=(200, 204, 300),
        )
        if returnbody:
            return Object.from_json(bucket, key, resp.json())
        return str(resp.headers.get(CONTEXT_HEADER, ""))

    def put_json(self, bucket: Name, key: Name, value: Any, **kw: Any) -> Any:
        """:meth:`put` of ``value`` encoded as JSON (``application/json``)."""
        kw.setdefault("content_type", "application/json")
        return self.put(bucket, key, _json.dumps(value).encode(), **kw)

    def delete(
        self,
        bucket: Name,
        key: Name,
        *,
        context: str | Object | None = None,
        w: Quorum | None = None,
        dw: Quorum | None = None,
        pw: Quorum | None = None,
        timeout: int | None = None,
    ) -> str:
        """Deletes a key (also fine when nothing is there). With ``context`` the delete
        supersedes exactly what was read; without it, what the coordinator reads first.
        Returns the context of the tombstone."""
        headers = {}
        token = _context_token(context)
        if token:
            headers[CONTEXT_HEADER] = token
        resp = self.request(
            "DELETE",
            self._kv_path(bucket, key),
            params=_params(w=w, dw=dw, pw=pw, timeout=timeout),
            headers=headers,
            server_timeout_ms=timeout,
            ok=(200, 204),
        )
        return str(resp.headers.get(CONTEXT_HEADER, ""))

    def list_keys(
        self,
        bucket: Name,
        *,
        limit: int | None = None,
        after: str | None = None,
        timeout: int | None = None,
    ) -> KeysPage:
        """One page of the live keys of a bucket, in byte order (``limit`` up to 10000,
        server default 1000). Keys that are not UTF-8 come percent-encoded."""
        resp = self.request(
            "GET",
            self._kv_path(bucket),
            params={"keys": "true", **_params(limit=limit, after=after, timeout=timeout)},
            server_timeout_ms=timeout,
        )
        d = resp.json()
        return KeysPage(keys=list(d.get("keys") or []), next=d.get("next"))

    def iter_keys(self, bucket: Name, *, page_size: int = 1000, timeout: int | None = None) -> Iterator[str]:
        """Every live key of a bucket, page after page."""
        after: str | None = None
        while True:
            page = self.list_keys(bucket, limit=page_size, after=after, timeout=timeout)
            yield from page.keys
            if page.next is None or not page.keys:
                return
            after = page.next

    # -- read-modify-write ---------------------------------------------------------------

    def update(
        self,
        bucket: Name,
        key: Name,
        fn: Callable[[Any], Any],
        *,
        json_value: bool = False,
        content_type: str | None = None,
        resolver: Resolver | None = _UNSET,
        r: Quorum | None = None,
        pr: Quorum | None = None,
        w: Quorum | None = None,
        dw: Quorum | None = None,
        pw: Quorum | None = None,
        timeout: int | None = None,
        ttl: int | None = None,
        max_attempts: int = 10,
        backoff: float = 0.02,
        max_backoff: float = 1.0,
    ) -> Any:
        """Read-modify-write of one key.

        Reads the key (several live siblings are merged in memory by the resolver, else
        :class:`SiblingsError`), calls ``fn(current)`` with the current value (bytes, or
        the decoded JSON with ``json_value=True``; None when the key has no live value),
        and writes what ``fn`` returns with the context of the read, so the write
        supersedes every sibling it merged. A first write of a missing key uses
        ``If-None-Match: *``.

        On 412 (someone created the key first), 409 (too many siblings, conflict) or 503
        overloaded it reads again and retries, at most ``max_attempts`` times with
        exponential backoff and jitter; then :class:`UpdateFailed`. ``fn`` may therefore
        run more than once and should have no side effects. A write concurrent with
        another writer's does not fail: both versions remain as siblings, and the next
        read resolves them, so a resolver that loses nothing (e.g. ``union_resolver`` on
        sets of unique ids) loses no update.

        Returns the value written (as ``fn`` returned it).
        """
        res = self._pick_resolver(resolver)
        last: RiftKVError | None = None
        delay = backoff
        for attempt in range(max(1, max_attempts)):
            if attempt:
                wait = delay * (0.5 + random.random())
                if isinstance(last, Overloaded) and last.retry_after:
                    wait = max(wait, min(last.retry_after, max_backoff))
                time.sleep(min(wait, max_backoff))
                delay = min(delay * 2, max_backoff)
            try:
                current: bytes | None
                ctx: str | None
                ct = content_type
                try:
                    obj = self._read(bucket, key, r, pr, timeout)
                    live = obj.live
                    ctx = obj.context or None
                    if len(live) > 1:
                        if res is None:
                            raise SiblingsError(
                                f"{len(live)} live siblings and no resolver to merge them", obj
                            )
                        chosen = _as_sibling(res(live), live)
                    elif live:
                        chosen = live[0]
                    else:
                        chosen = None
                    current = chosen.value if chosen is not None else None
                    if ct is None and chosen is not None:
                        ct = chosen.content_type
                except NotFound as e:
                    current, ctx = None, e.context
                arg = _json.loads(current) if (json_value and current is not None) else current
                new = fn(arg)
                if json_value:
                    data: Value = _json.dumps(new).encode()
                    ct = content_type or "application/json"
                else:
                    data = new
                self.put(
                    bucket,
                    key,
                    data,
                    content_type=ct,
                    context=ctx,
                    if_none_match=ctx is None,
                    ttl=ttl,
                    w=w,
                    dw=dw,
                    pw=pw,
                    timeout=timeout,
                )
                return new
            except _RETRYABLE as e:
                last = e
        raise UpdateFailed(
            f"update of {key!r} did not succeed in {max_attempts} attempts: {last}",
            error=last.error if last else "",
            status=last.status if last else 0,
        ) from last

    # -- data types -----------------------------------------------------------------------

    @staticmethod
    def _type_path(bucket: Name, key: Name) -> str:
        return f"/v1/types/{_segment(bucket)}/{_segment(key)}"

    def get_type(
        self,
        bucket: Name,
        key: Name,
        *,
        r: Quorum | None = None,
        pr: Quorum | None = None,
        timeout: int | None = None,
    ) -> TypeValue:
        """Reads a data type value (counter, set, map). Raises :class:`NotFound`."""
        resp = self.request(
            "GET",
            self._type_path(bucket, key),
            params=_params(r=r, pr=pr, timeout=timeout),
            server_timeout_ms=timeout,
        )
        return TypeValue.from_json(resp.json())

    def update_type(
        self,
        bucket: Name,
        key: Name,
        op: Mapping[str, Any],
        *,
        context: str | TypeValue | None = None,
        w: Quorum | None = None,
        dw: Quorum | None = None,
        pw: Quorum | None = None,
        timeout: int | None = None,
        returnbody: bool = False,
    ) -> TypeValue | None:
        """Applies one data type operation (the JSON of CONTRACT §6). Removes need the
        ``context`` of a read. Returns the new value with ``returnbody=True``."""
        body = dict(op)
        if isinstance(context, TypeValue):
            context = context.context
        if context:
            body["context"] = context
        resp = self.request(
            "POST",
            self._type_path(bucket, key),
            params=_params(w=w, dw=dw, pw=pw, timeout=timeout, returnbody=returnbody or None),
            json=body,
            server_timeout_ms=timeout,
        )
        if returnbody and resp.status_code == 200:
            return TypeValue.from_json(resp.json())
        return None

    def counter_increment(self, bucket: Name, key: Name, by: int = 1, **kw: Any) -> int | None:
        """Adds ``by`` (negative: subtracts) to a counter. Returns the new value when
        ``returnbody=True`` is passed, else None."""
        tv = self.update_type(bucket, key, {"increment": int(by)}, **kw)
        return int(tv.value) if tv is not None else None

    def counter_value(self, bucket: Name, key: Name, **kw: Any) -> int:
        """A counter's value; a counter never written reads as 0."""
        try:
            return int(self.get_type(bucket, key, **kw).value)
        except NotFound:
            return 0

    def set_add(self, bucket: Name, key: Name, members: Sequence[str], **kw: Any) -> TypeValue | None:
        """Adds members to a set."""
        return self.update_type(bucket, key, {"add": list(members)}, **kw)

    def set_remove(
        self,
        bucket: Name,
        key: Name,
        members: Sequence[str],
        *,
        context: str | TypeValue | None = None,
        **kw: Any,
    ) -> TypeValue | None:
        """Removes members from a set. Without ``context`` the set is read first and its
        context used (a remove only removes what a read has seen)."""
        if context is None:
            try:
                context = self.get_type(bucket, key).context
            except NotFound:
                return None
        return self.update_type(bucket, key, {"remove": list(members)}, context=context, **kw)

    def set_members(self, bucket: Name, key: Name, **kw: Any) -> list[str]:
        """The sorted members of a set; a set never written reads as empty."""
        try:
            return list(self.get_type(bucket, key, **kw).value or [])
        except NotFound:
            return []

    def map_update(
        self,
        bucket: Name,
        key: Name,
        update: Mapping[str, Any] | None = None,
        remove: Sequence[str] | None = None,
        *,
        context: str | TypeValue | None = None,
        **kw: Any,
    ) -> TypeValue | None:
        """Updates fields of a map: ``update`` maps field names to operations such as
        ``{"counter": {"increment": 1}}``, ``{"register": {"assign": "x"}}``; ``remove``
        lists fields to drop (read first for the context when none is given)."""
        op: dict[str, Any] = {}
        if update:
            op["update"] = dict(update)
        if remove:
            op["remove"] = list(remove)
            if context is None:
                try:
                    context = self.get_type(bucket, key).context
                except NotFound:
                    op.pop("remove")
        return self.update_type(bucket, key, op, context=context, **kw)

    # -- buckets --------------------------------------------------------------------------

    def get_props(self, bucket: Name) -> dict[str, Any]:
        """The bucket's props (n, r, w, dw, pr, pw, conflict, datatype, ttl)."""
        resp = self.request("GET", f"/v1/buckets/{_segment(bucket)}/props")
        out: dict[str, Any] = resp.json()
        return out

    def set_props(self, bucket: Name, props: Mapping[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
        """Changes some props (the others keep their values); returns all of them."""
        body = {**(props or {}), **kw}
        resp = self.request("PUT", f"/v1/buckets/{_segment(bucket)}/props", json=body)
        out: dict[str, Any] = resp.json() if resp.content else self.get_props(bucket)
        return out

    # -- admin ----------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """``GET /v1/admin/status`` of this node."""
        out: dict[str, Any] = self.request("GET", "/v1/admin/status").json()
        return out

    def ring(self) -> dict[str, Any]:
        """``GET /v1/admin/ring``: ring version, size, ``n`` and each partition's owner and
        preference list."""
        out: dict[str, Any] = self.request("GET", "/v1/admin/ring").json()
        return out

    def plan(self) -> dict[str, Any]:
        """``GET /v1/admin/plan``: the pending ring change (``pending``, ``staged``,
        ``changes``, ``transfers`` and the partitions per node before and after); with
        nothing pending, ``pending`` is false and ``before`` equals ``after``."""
        out: dict[str, Any] = self.request("GET", "/v1/admin/plan").json()
        return out

    def commit_plan(self) -> dict[str, Any]:
        """``POST /v1/admin/plan/commit``: applies the staged plan and returns it. Raises
        :class:`Conflict` when nothing is staged."""
        out: dict[str, Any] = self.request("POST", "/v1/admin/plan/commit").json()
        return out

    def remove(self, node_id: str) -> None:
        """``POST /v1/admin/remove/{node_id}``: drops a dead member; its partitions are
        reassigned (staged on a cluster started with ``--staged-changes``)."""
        self.request("POST", f"/v1/admin/remove/{_segment(node_id)}")

    def replace(self, old: str, new: str) -> None:
        """``POST /v1/admin/replace/{old}/{new}``: the joined member ``new`` takes over every
        partition of ``old``."""
        self.request("POST", f"/v1/admin/replace/{_segment(old)}/{_segment(new)}")

    def put_user(self, name: str, groups: Sequence[str] = ()) -> None:
        """Creates or updates a user."""
        self.request("PUT", f"/v1/admin/users/{_segment(name)}", json={"groups": list(groups)})

    def delete_user(self, name: str) -> None:
        self.request("DELETE", f"/v1/admin/users/{_segment(name)}")

    def list_users(self) -> list[dict[str, Any]]:
        return list(self.request("GET", "/v1/admin/users").json().get("users") or [])

    def create_token(self, user: str, ttl_seconds: int | None = None) -> dict[str, Any]:
        """A new token of ``user``: ``{"id", "token", "expires_at"}`` (the value is shown
        only here)."""
        body: dict[str, Any] = {} if ttl_seconds is None else {"ttl_seconds": ttl_seconds}
        out: dict[str, Any] = self.request(
            "POST", f"/v1/admin/users/{_segment(user)}/tokens", json=body
        ).json()
        return out

    def revoke_token(self, user: str, token_id: str) -> None:
        self.request("DELETE", f"/v1/admin/users/{_segment(user)}/tokens/{_segment(token_id)}")

    def grant(self, subject: str, bucket: str, permissions: Sequence[str]) -> None:
        """Grants permissions on ``bucket`` (or ``"*"``) to ``"user:NAME"`` or
        ``"group:NAME"``."""
        self._grants("grant", subject, bucket, permissions)

    def revoke(self, subject: str, bucket: str, permissions: Sequence[str]) -> None:
        self._grants("revoke", subject, bucket, permissions)

    def _grants(self, action: str, subject: str, bucket: str, permissions: Sequence[str]) -> None:
        self.request(
            "POST",
            "/v1/admin/grants",
            json={"action": action, "subject": subject, "bucket": bucket, "permissions": list(permissions)},
        )


class Bucket:
    """One bucket of a client, with its own resolver when given (``client.bucket(name,
    resolver=...)``). Its methods are the client's without the bucket argument."""

    def __init__(self, client: Client, name: Name, *, resolver: Resolver | None = _UNSET) -> None:
        self.client = client
        self.name = name
        self.resolver = resolver

    def __repr__(self) -> str:
        return f"Bucket({self.name!r})"

    def _res(self, kw: dict[str, Any]) -> dict[str, Any]:
        if "resolver" not in kw and self.resolver is not _UNSET:
            kw["resolver"] = self.resolver
        return kw

    def get(self, key: Name, **kw: Any) -> Object:
        return self.client.get(self.name, key, **self._res(kw))

    def get_or_none(self, key: Name, **kw: Any) -> Object | None:
        return self.client.get_or_none(self.name, key, **self._res(kw))

    def put(self, key: Name, value: Value, **kw: Any) -> Any:
        return self.client.put(self.name, key, value, **kw)

    def put_json(self, key: Name, value: Any, **kw: Any) -> Any:
        return self.client.put_json(self.name, key, value, **kw)

    def delete(self, key: Name, **kw: Any) -> str:
        return self.client.delete(self.name, key, **kw)

    def update(self, key: Name, fn: Callable[[Any], Any], **kw: Any) -> Any:
        return self.client.update(self.name, key, fn, **self._res(kw))

    def list_keys(self, **kw: Any) -> KeysPage:
        return self.client.list_keys(self.name, **kw)

    def iter_keys(self, **kw: Any) -> Iterator[str]:
        return self.client.iter_keys(self.name, **kw)

    def props(self) -> dict[str, Any]:
        return self.client.get_props(self.name)

    def set_props(self, props: Mapping[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
        return self.client.set_props(self.name, props, **kw)
