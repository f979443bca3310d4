"""Typed services: what plugins offer the core, and the only way the core reaches them.

A plugin's ``setup`` registers an object under a :class:`ServiceKey` (as aiohttp's ``AppKey``:
a name and, for the type checker, the type of what is stored)::

    ctx.app.services.add(CACHES, cache)

and the admin API reads ``ctx.app.services.get(CACHES)``: the objects registered under that
key, in setup order, each satisfying the key's Protocol. The core defines the keys below and
the small Protocols they promise; it never reads a plugin's attributes, classes or metric
names. A plugin may define keys of its own (with its own concrete type) the same way.

Results that the admin API returns as JSON are dataclass instances (:class:`Record`), which
it serialises field by field. A refusal (an edit the plugin will not make) is a
:class:`Refused` with the HTTP status it maps to; any other exception is a bug.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, ClassVar, Generic, Protocol, TypeVar

T = TypeVar("T")


class ServiceKey(Generic[T]):
    """A typed key of :class:`Services`: ``KEY = ServiceKey[SomeProtocol]("name")``."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<ServiceKey {self.name}>"


class Services:
    """The services of one configuration: objects by key, in setup order."""

    def __init__(self) -> None:
        self._objects: dict[ServiceKey[Any], list[Any]] = {}

    def add(self, key: ServiceKey[T], obj: T) -> None:
        self._objects.setdefault(key, []).append(obj)

    def get(self, key: ServiceKey[T]) -> list[T]:
        """The objects added under ``key`` (empty: none). The registry's own list, so a
        collector that holds it (a metric over every instance) sees objects added later;
        callers do not modify it."""
        return self._objects.setdefault(key, [])


class Record(Protocol):
    """A dataclass instance (the admin API returns it with ``dataclasses.asdict``)."""

    __dataclass_fields__: ClassVar[dict[str, Any]]


class Refused(Exception):
    """A request a plugin refuses: ``status`` is the HTTP status, ``errors`` one line each."""

    def __init__(self, message: str, status: int = 400, errors: list[str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.errors = errors or []


class ListState(Record, Protocol):
    """One domain list's status (the admin API returns every field)."""

    @property
    def name(self) -> str: ...
    @property
    def kind(self) -> str: ...  # file, url or domains
    @property
    def source(self) -> str: ...
    @property
    def format(self) -> str: ...
    @property
    def entries(self) -> int: ...


class DomainLists(Protocol):
    """Domain lists and the rules over them (a firewall); edits raise :class:`Refused`."""

    @property
    def location(self) -> str:
        """``FILE:LINE`` of the Corefile directive that configures it."""
        ...

    def lists(self) -> Sequence[ListState]: ...

    def entries(self, name: str, offset: int = 0, limit: int = 1000) -> list[str]: ...

    async def edit(
        self, name: str, operation: str, domains: Sequence[str], *, client: str, identity: str
    ) -> int:
        """``client``: the address that asked; ``identity``: ``anonymous`` (no token), else a
        short fingerprint of its token (never the token): both are logged and written down."""
        ...

    async def replace(self, name: str, text: str, *, client: str, identity: str) -> int: ...

    async def refresh(self, name: str) -> ListState: ...

    def explain(self, qname: bytes, qtype: int, client_ip: str) -> Record:
        """The rule walk of one query (wire name)."""
        ...

    def rules(self) -> dict[str, Any]:
        """The effective evaluation order, as JSON."""
        ...


class RuleCounters(Protocol):
    """Matches per rule."""

    def rule_matches(self) -> Iterable[tuple[tuple[str, str, str, str], int]]:
        """((group, rule, list, action), matches) for each rule."""
        ...


class CacheControl(Protocol):
    """A cache: counters and entries (``stats()``), and removal."""

    def stats(self) -> Record: ...

    def flush(self, name: str | None = None) -> int:
        """Entries removed: all (``name`` None) or ``name``'s. ValueError for a bad name."""
        ...


class UpstreamStatus(Protocol):
    """Upstream servers and their state (a record each, with ``avg_latency`` in seconds)."""

    def upstreams(self) -> Sequence[Record]: ...


DOMAIN_LISTS = ServiceKey[DomainLists]("domain_lists")
RULE_COUNTERS = ServiceKey[RuleCounters]("rule_counters")
CACHES = ServiceKey[CacheControl]("caches")
UPSTREAMS = ServiceKey[UpstreamStatus]("upstreams")
