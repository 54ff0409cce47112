"""Sibling resolvers: callables that take the live siblings of a key (at least two) and
return the one value to keep. The client writes that value back with the context covering
every sibling, so the siblings collapse into one version.

A resolver returns ``bytes`` (the content type of the newest sibling is kept), a ``str``
(UTF-8), or a :class:`~riftkv.Sibling` to choose the content type too.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any, Union

from .models import Sibling

__all__ = ["Resolver", "ResolvedValue", "union_resolver", "last_write_wins", "json_union"]

ResolvedValue = Union[bytes, str, Sibling]
Resolver = Callable[[list[Sibling]], ResolvedValue]

_EPOCH = datetime.min.replace(tzinfo=timezone.utc)


def _canonical(item: Any) -> str:
    return json.dumps(item, sort_keys=True, separators=(",", ":"))


def json_union(values: Sequence[Any]) -> list[Any]:
    """The union of JSON lists: every distinct element (compared as canonical JSON), in the
    order first seen."""
    seen: set[str] = set()
    out: list[Any] = []
    for v in values:
        if v is None:
            continue
        if not isinstance(v, list):
            raise ValueError(f"union_resolver needs JSON lists, got {type(v).__name__}")
        for item in v:
            c = _canonical(item)
            if c not in seen:
                seen.add(c)
                out.append(item)
    return out


def union_resolver(siblings: list[Sibling]) -> Sibling:
    """Merges siblings whose values are JSON lists used as sets (a shopping cart, the ids of
    increments): the result holds every element of every sibling once.

    Removals are not tracked: an element removed in one sibling but present in a concurrent
    one comes back. Use the ``set`` data type (``/v1/types``) when removals must win.
    """
    merged = json_union([json.loads(s.value) if s.value else [] for s in siblings])
    return Sibling(value=json.dumps(merged).encode(), content_type="application/json")


def last_write_wins(siblings: list[Sibling]) -> Sibling:
    """Keeps the sibling with the newest ``last_modified`` (ties broken by etag)."""
    return max(siblings, key=lambda s: (s.last_modified or _EPOCH, s.etag))
