"""Values returned by the client: objects with their siblings, data type values."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .errors import SiblingsError

__all__ = ["Sibling", "Object", "TypeValue"]


def _parse_time(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


@dataclass(frozen=True)
class Sibling:
    """One stored version of a key. A deleted version (tombstone) has an empty ``value``."""

    value: bytes
    content_type: str = "application/octet-stream"
    etag: str = ""
    last_modified: datetime | None = None
    deleted: bool = False

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Sibling:
        return cls(
            value=base64.b64decode(d.get("value_base64") or ""),
            content_type=str(d.get("content_type") or "application/octet-stream"),
            etag=str(d.get("etag") or ""),
            last_modified=_parse_time(str(d.get("last_modified") or "")),
            deleted=bool(d.get("deleted", False)),
        )

    @property
    def text(self) -> str:
        """The value decoded as UTF-8."""
        return self.value.decode("utf-8")

    def json(self) -> Any:
        """The value decoded as JSON."""
        return json.loads(self.value)


@dataclass(frozen=True)
class Object:
    """The result of a read: every version of ``key`` in ``bucket`` and the causal
    ``context`` covering all of them.

    Pass the object (or its ``context``) to ``put``/``delete`` so the write supersedes
    exactly what was read. ``value`` is the only live value; with several live siblings it
    raises :class:`~riftkv.SiblingsError` (use a resolver, or look at ``siblings``).
    """

    bucket: str | bytes
    key: str | bytes
    context: str
    siblings: list[Sibling] = field(default_factory=list)
    #: True when a resolver merged siblings into this object (and wrote the result back).
    resolved: bool = False

    @classmethod
    def from_json(cls, bucket: str | bytes, key: str | bytes, d: dict[str, Any]) -> Object:
        return cls(
            bucket=bucket,
            key=key,
            context=str(d.get("context") or ""),
            siblings=[Sibling.from_json(s) for s in d.get("siblings") or []],
        )

    @property
    def live(self) -> list[Sibling]:
        """The siblings that are not tombstones."""
        return [s for s in self.siblings if not s.deleted]

    @property
    def has_siblings(self) -> bool:
        """True when more than one live version exists."""
        return len(self.live) > 1

    @property
    def sibling(self) -> Sibling:
        """The only live version (raises :class:`SiblingsError` when there are several)."""
        live = self.live
        if len(live) == 1:
            return live[0]
        if not live:
            raise SiblingsError("the object holds no live value", self)
        raise SiblingsError(
            f"the object holds {len(live)} live siblings: resolve them (a resolver, or "
            "read .siblings and write back with the context)",
            self,
        )

    @property
    def value(self) -> bytes:
        """The only live value (raises :class:`SiblingsError` when there are several)."""
        return self.sibling.value

    @property
    def content_type(self) -> str:
        return self.sibling.content_type

    @property
    def text(self) -> str:
        return self.sibling.text

    def json(self) -> Any:
        return self.sibling.json()


@dataclass(frozen=True)
class TypeValue:
    """A data type value (``/v1/types``): ``type`` is ``counter``, ``set`` or ``map``;
    ``value`` an int, a sorted list of strings or a dict; ``context`` is needed to remove."""

    type: str
    value: Any
    context: str

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> TypeValue:
        return cls(type=str(d.get("type")), value=d.get("value"), context=str(d.get("context") or ""))
