"""RiftKV: the Python client of the RiftKV key-value database.

>>> from riftkv import Client, union_resolver
>>> with Client("http://127.0.0.1:8701", token="...", resolver=union_resolver) as c:
...     c.put("carts", "alice", b'["apple"]', content_type="application/json")
...     obj = c.get("carts", "alice")
...     c.put("carts", "alice", b'["apple", "pear"]', context=obj)
"""

from .client import Bucket, Client, KeysPage, Quorum, Value
from .errors import (
    BadRequest,
    Conflict,
    Forbidden,
    InvalidContext,
    NotFound,
    Overloaded,
    PreconditionFailed,
    QuorumUnavailable,
    RequestTimeout,
    RiftKVError,
    ServerError,
    ServiceUnavailable,
    SiblingsError,
    TooLarge,
    TooManySiblings,
    TransportError,
    Unauthorized,
    UpdateFailed,
)
from .models import Object, Sibling, TypeValue
from .resolvers import Resolver, json_union, last_write_wins, union_resolver

__version__ = "0.1.0"

__all__ = [
    "Client",
    "Bucket",
    "KeysPage",
    "Quorum",
    "Value",
    "Object",
    "Sibling",
    "TypeValue",
    "Resolver",
    "union_resolver",
    "last_write_wins",
    "json_union",
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
]
