"""The firewall stage: decides on the query name, builds block answers, inspects CNAME chains."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import random
import struct
import time
from collections.abc import Sequence
from typing import Any

import dns.exception
import dns.message
import dns.rcode
import dns.rdatatype
import structlog

from proxy import wire
from proxy.metrics import Metric, Registry
from proxy.names import in_zones, text_to_wire, wire_suffixes, wire_to_text
from proxy.pipeline import Handler, Plugin
from proxy.replay import TAKES_PART, Effect, Guard, not_replayed
from proxy.request import Request, Response, parse

from .config import FirewallSpec
from .explain import FirewallExplanation, describe_reply, describe_rules, explanation
from .policy import ALERT, ALLOW, BLOCK, Decision, NotLoaded, Policy, Rule, Step, Verdict
from .sources import ListEditError, ListSlot, ListStatus

log = structlog.get_logger("dnsfw.firewall")

SOA_MNAME = text_to_wire("dnsfw.invalid")
SOA_RNAME = text_to_wire("hostmaster.dnsfw.invalid")
EDE_BLOCKED = 15
_NOERROR = wire.NOERROR
_NXDOMAIN = wire.NXDOMAIN
_UNKNOWN = object()  # not in the decision memo
OUTSIDE = Verdict(None, inside=False)  # a name outside the firewall's zones: not filtered
EDE_NOT_READY = 14
BYPASS_NXDOMAIN = text_to_wire("use-application-dns.net")
BYPASS_NODATA = text_to_wire("_dns.resolver.arpa")
TYPE_SVCB = 64


class Firewall(Plugin):
    name = "firewall"

    def __init__(
        self, spec: FirewallSpec, *, reloading: bool = False, discovery: list[bytes] | None = None
    ) -> None:
        self.spec = spec
        # the configuration's discovery records (filled once its listeners are known)
        self.discovery = discovery if discovery is not None else []
        self.reloading = reloading
        self.slots = {s.name: ListSlot(s) for s in spec.lists}
        slots = self.slots
        self.policy = Policy(spec.groups, lambda name: slots[name].current)
        for slot in slots.values():
            slot.on_swap.append(self.policy.forget)
        self.bypass_signals = spec.bypass_signals
        self.all_zones = "." in spec.zones
        self.zones = frozenset(text_to_wire(z) for z in spec.zones)
        self.soa = wire.rr(
            wire.QNAME_PTR,
            wire.TYPE_SOA,
            spec.block_ttl,
            SOA_MNAME + SOA_RNAME + struct.pack("!IIIII", 1, 3600, 600, 86400, spec.block_ttl),
        )
        # per-rule EDE option and match counter, computed once
        self.ede = {
            rule: wire.ede_option(
                EDE_BLOCKED,
                f"blocked by dnsfw rule '{rule.name}' (group '{rule.group}', list '{rule.list}')",
            )
            if spec.ede
            else b""
            for rule, _ in self.policy.walk
        }
        self.matches = dict.fromkeys(self.ede, 0)
        self.count_match = {rule: RuleMatch(self.matches, rule) for rule in self.ede}
        self.fail_counts = {"open": 0, "closed": 0}
        # a replay is keyed by the query's bytes, not its client
        self.replays = (
            not_replayed("a rule group with clients decides per client address")
            if self.policy.has_clients
            else TAKES_PART
        )
        self._unchanged = ListsUnchanged(self.policy)
        # the verdicts of the query name, made once (a chain target's is made when it decides)
        inspects = self.policy.inspects
        self._no_rule = Verdict(None, inspects_chain=inspects)
        self._verdicts = {
            rule: Verdict(rule, inspects_chain=inspects and rule.action != BLOCK and not rule.trust)
            for rule in self.ede
        }
        self.tasks: list[asyncio.Task] = []
        self._last_fail_log = 0.0

    # --- the query path -----------------------------------------------------------------
    async def serve(self, req: Request, next: Handler) -> Response:
        qname = req.qname_wire
        if not self.all_zones and not in_zones(qname, self.zones):
            return await next(req)
        if self.bypass_signals:
            signal = self._bypass_signal(req)
            if signal is not None:
                return signal
        verdict = self.decide(qname, req.qtype, req.client[0])
        if verdict.not_loaded is not None:
            return await self._failed(req, next, verdict.not_loaded)
        policy = self.policy
        unchanged = self._unchanged
        if unchanged.generation != policy.generation:
            unchanged = self._unchanged = ListsUnchanged(policy)
        req.record(unchanged)  # what follows holds while no list changes
        rule = verdict.rule
        if rule is not None:
            req.run(self.count_match[rule])
            req.meta["firewall"] = rule.decision
            if rule.action == BLOCK:
                return await self.block(req, rule, next)
        resp = await next(req)
        # an NXDOMAIN answer can hold a chain too (a CNAME to a name that does not exist)
        if verdict.inspects_chain and (resp.rcode == _NOERROR or resp.rcode == _NXDOMAIN):
            info = resp.info
            chain = info.chain if info is not None else _chain(resp)
            if chain:
                return await self._chain_decided(req, resp, next, verdict, chain)
        return resp

    def verdict(
        self, qname: bytes, qtype: int, client_ip: str, chain: Sequence[bytes] | None = None
    ) -> Verdict:
        """What this firewall does with a query for the lower-case wire name ``qname``: the
        rule that decides on the name, then (``chain``: the CNAME/DNAME targets of the answer,
        in order) on the targets. Without a chain, ``inspects_chain`` says whether the answer's
        targets would still be evaluated. Pure but for the decision memo."""
        if not self.all_zones and not in_zones(qname, self.zones):
            return OUTSIDE
        verdict = self.decide(qname, qtype, client_ip)
        if chain and verdict.inspects_chain:
            return self._decide_chain(verdict, chain, qtype, client_ip)
        return verdict

    def decide(self, qname: bytes, qtype: int, client_ip: str) -> Verdict:
        """The verdict on the query name alone, for a name inside the firewall's zones."""
        policy = self.policy
        # a name decided before costs one look-up here, without a call
        rule = policy.memo.get(qname, _UNKNOWN) if policy.by_name_only else _UNKNOWN
        if rule is _UNKNOWN:
            try:
                rule = policy.decide(qname, qtype, client_ip)
            except NotLoaded as err:
                return Verdict(None, not_loaded=err.list_name)
        return self._no_rule if rule is None else self._verdicts[rule]  # type: ignore[index]

    def _decide_chain(
        self, decided: Verdict, chain: Sequence[bytes], qtype: int, client_ip: str
    ) -> Verdict:
        try:
            found = self.policy.inspect_chain(chain, qtype, client_ip, decided.rule)
        except NotLoaded as err:
            return Verdict(decided.rule, not_loaded=err.list_name)
        if found is None:
            return decided
        rule, target = found
        return Verdict(rule, target)

    async def _chain_decided(
        self,
        req: Request,
        resp: Response,
        next: Handler,
        decided: Verdict,
        chain: tuple[bytes, ...],
    ) -> Response:
        verdict = self._decide_chain(decided, chain, req.qtype, req.client[0])
        if verdict is decided:
            return resp
        if verdict.not_loaded is not None:
            return await self._failed(req, next, verdict.not_loaded, resp)
        rule = verdict.rule
        assert rule is not None
        req.run(self.count_match[rule])
        req.meta["firewall"] = Decision(
            rule.action, rule.group, rule.name, rule.list, wire_to_text(verdict.target), True
        )
        if rule.action == BLOCK:
            return await self.block(req, rule, next, verdict.target)
        return resp

    async def _failed(
        self, req: Request, next: Handler, list_name: str, answer: Response | None = None
    ) -> Response:
        """Fail open (``answer``, the upstream's reply when there is one already) or closed."""
        mode = "open" if self.spec.fail_open else "closed"
        self.fail_counts[mode] += 1
        error = str(NotLoaded(list_name))
        req.no_replay()  # counted per query until every list is loaded
        now = time.monotonic()
        if now - self._last_fail_log >= 5.0:
            self._last_fail_log = now
            log.warning(
                "firewall_cannot_evaluate",
                mode=f"fail {mode}",
                error=error,
                total=self.fail_counts[mode],
            )
        if self.spec.fail_open:
            return answer if answer is not None else await next(req)
        options = wire.ede_option(EDE_NOT_READY, error) if self.spec.ede else b""
        return req.reply(
            wire.SERVFAIL, options=options, source="firewall", error=f"plugin/firewall: {error}"
        )

    def _bypass_signal(self, req: Request) -> Response | None:
        if req.qname_wire == BYPASS_NXDOMAIN:
            return req.reply(wire.NXDOMAIN, authority=(self.soa,), source="firewall")
        if req.qname_wire == BYPASS_NODATA:
            if req.qtype == TYPE_SVCB and self.discovery:  # dnsfw's own encrypted listeners
                return req.reply(
                    wire.NOERROR,
                    flags=wire.AA | wire.RA,
                    answer=tuple(self.discovery),
                    source="firewall",
                )
            return req.reply(wire.NOERROR, authority=(self.soa,), source="firewall")
        return None

    # --- block answers ---------------------------------------------------------------
    async def block(self, req: Request, rule: Rule, next: Handler, target: bytes = b"") -> Response:
        reply = self.block_reply(req, rule, target)
        if reply is not None:
            return reply
        return await self._override_cname(req, rule, next, self._ede(rule, target))

    def block_reply(self, req: Request, rule: Rule, target: bytes = b"") -> Response | None:
        """The reply to ``req`` that ``rule`` blocks (``target``: the CNAME/DNAME target of the
        answer that it matched, named in the EDE), or None for an override with a CNAME that
        needs its target resolved (:meth:`_override_cname`)."""
        response = rule.response
        options = self._ede(rule, target)
        if response.kind == "nxdomain":
            return req.reply(
                wire.NXDOMAIN, authority=(self.soa,), options=options, source="firewall"
            )
        if response.kind == "override":
            if response.target_ip is not None:
                return self._sinkhole(req, rule, options)
            if req.qtype == wire.TYPE_CNAME:
                return self._cname_reply(req, rule, options)
            return None
        return req.reply(wire.NOERROR, authority=(self.soa,), options=options, source="firewall")

    def _ede(self, rule: Rule, target: bytes) -> bytes:
        """The EDE option of a block by ``rule``: made once per rule for the query name; a
        block on a CNAME/DNAME target (rare) names that target, so a client sees which
        name of the chain failed."""
        if not target or not self.spec.ede:
            return self.ede[rule]
        return wire.ede_option(
            EDE_BLOCKED,
            f"blocked by dnsfw rule '{rule.name}' (group '{rule.group}', list '{rule.list}') "
            f"on the CNAME/DNAME target {wire_to_text(target)}",
        )

    def _sinkhole(self, req: Request, rule: Rule, options: bytes) -> Response:
        address = ipaddress.ip_address(rule.response.target_ip)
        wanted = wire.TYPE_A if address.version == 4 else wire.TYPE_AAAA
        if req.qtype != wanted:
            return req.reply(
                wire.NOERROR, authority=(self.soa,), options=options, source="firewall"
            )
        answer = wire.rr(wire.QNAME_PTR, wanted, rule.response.ttl, address.packed)
        return req.reply(wire.NOERROR, answer=(answer,), options=options, source="firewall")

    def _cname_reply(
        self, req: Request, rule: Rule, options: bytes, *more: bytes, rcode: int = wire.NOERROR
    ) -> Response:
        """``QNAME CNAME TARGET`` (and ``more`` records after it)."""
        target = rule.response.target_wire
        assert target is not None
        cname = wire.rr(wire.QNAME_PTR, wire.TYPE_CNAME, rule.response.ttl, target)
        return req.reply(rcode, answer=(cname, *more), options=options, source="firewall")

    async def _override_cname(
        self, req: Request, rule: Rule, next: Handler, options: bytes
    ) -> Response:
        """``QNAME CNAME TARGET`` plus TARGET's records, resolved through the rest of the chain."""
        target = rule.response.target_wire
        assert target is not None
        resolved = await next(_subquery(req, target))
        extra: tuple[bytes, ...] = ()
        rcode = resolved.rcode
        with contextlib.suppress(dns.exception.DNSException, ValueError):
            # a rare path: dnspython re-renders the target's records without compression pointers
            msg = dns.message.from_wire(resolved.wire, ignore_trailing=True)
            extra = tuple(record for rrset in msg.answer for record in _render(rrset))
        if rcode not in (wire.NOERROR, wire.NXDOMAIN):
            rcode = wire.NOERROR  # the CNAME is still an answer
        return self._cname_reply(req, rule, options, *extra, rcode=rcode)

    # --- lifecycle and readiness ------------------------------------------------------
    async def start(self) -> None:
        pending = [slot for slot in self.slots.values() if slot.current is None]
        if self.reloading:
            # a reload swaps in only a configuration whose lists are loaded; a url list whose
            # download failed but whose last good copy was read from disk counts as loaded
            results = await asyncio.gather(
                *(slot.load() for slot in pending), return_exceptions=True
            )
            for slot, result in zip(pending, results, strict=True):
                if isinstance(result, Exception) and slot.current is None:
                    raise result
        else:
            for slot in pending:
                if slot.spec.kind != "url":  # url lists: their refresh loop's first download
                    self.tasks.append(asyncio.ensure_future(self._load_quietly(slot)))
        for slot in self.slots.values():
            if slot.spec.kind == "url":
                first = not self.reloading and slot in pending
                self.tasks.append(asyncio.ensure_future(self._refresh_loop(slot, first)))

    async def _load_quietly(self, slot: ListSlot) -> None:
        with contextlib.suppress(Exception):  # logged by the slot; fail mode applies meanwhile
            await slot.load()

    async def _refresh_loop(self, slot: ListSlot, first: bool) -> None:
        """Download ``slot`` when it is due: every ``refresh``, sooner after a failure (the
        slot's backoff; a list never loaded would otherwise fail closed for hours). A load
        from elsewhere (``POST /v1/lists/NAME/refresh``) reschedules it."""
        if first:
            await self._load_quietly(slot)
        while True:
            slot.rescheduled.clear()
            due = slot.next_download_at
            delay = slot.spec.refresh if due is None else max(0.0, due - time.time())
            try:
                await asyncio.wait_for(slot.rescheduled.wait(), delay)  # a Task: allowed here
            except TimeoutError:
                await self._load_quietly(slot)

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.tasks.clear()
        # a stopped firewall serves no more (a reload's grace time is over): let go of the
        # lists, most of a configuration's memory, which its reference cycles would otherwise
        # hold until the next full garbage collection
        for slot in self.slots.values():
            slot.current = None
        self.policy.forget()

    def ready(self) -> bool:
        return all(slot.current is not None for slot in self.slots.values())

    def waiting(self) -> str:
        return "; ".join(filter(None, (slot.waiting() for slot in self.slots.values())))

    # --- the admin interface (proxy.services: DOMAIN_LISTS, RULE_COUNTERS) ----------------
    @property
    def location(self) -> str:
        """Where the firewall is configured: ``FILE:LINE`` of its Corefile directive."""
        return f"{self.spec.file}:{self.spec.line}"

    def lists(self) -> list[ListStatus]:
        return [slot.describe() for slot in self.slots.values()]

    def entries(self, name: str, offset: int = 0, limit: int = 1000) -> list[str]:
        content = self._slot(name).current
        if content is None:
            return []
        out: list[str] = []
        for i, entry in enumerate(content.entries()):
            if i >= offset + limit:
                break
            if i >= offset:
                out.append(entry)
        return out

    async def edit(
        self, name: str, operation: str, domains: Sequence[str], *, client: str, identity: str
    ) -> int:
        return await self._slot(name).edit(operation, domains, client=client, identity=identity)

    async def replace(self, name: str, text: str, *, client: str, identity: str) -> int:
        """REPLACE a list with a route53-format text (the admin API's bulk path)."""
        return await self._slot(name).replace_text(text, client=client, identity=identity)

    def explain(
        self, qname: bytes, qtype: int, client_ip: str, chain: Sequence[bytes] | None = None
    ) -> FirewallExplanation:
        """How this firewall decides a query (lower-case wire name): its :meth:`verdict`, the
        rules the walk considered and, for a BLOCK, the reply this firewall builds for it.
        ``chain``: the CNAME/DNAME targets of the answer (``dnsfw explain --resolve``); None
        when the answer is not known, so the verdict may still depend on it."""
        verdict = self.verdict(qname, qtype, client_ip, chain)
        steps: list[Step] = []
        target_steps: list[Step] = []
        if verdict.inside:
            with contextlib.suppress(NotLoaded):  # the verdict says which list
                self.policy.evaluate(wire_suffixes(qname), qtype, client_ip, steps)
                if verdict.target:
                    self.policy.evaluate(
                        wire_suffixes(verdict.target), qtype, client_ip, target_steps
                    )
        rule = verdict.rule
        blocked = None
        if rule is not None and rule.action == BLOCK:
            req = parse(_query(qname, qtype), ("0.0.0.0", 0), "udp", "explain")
            reply = self.block_reply(req, rule, verdict.target)
            resolved = None
            if reply is None:  # a CNAME override: the CNAME, then the target's records
                reply = self._cname_reply(req, rule, self._ede(rule, verdict.target))
                resolved = rule.response.target_name
            blocked = describe_reply(reply.wire, resolved)
        return explanation(
            self.spec, self.policy, verdict, steps, blocked, chain=chain, target_steps=target_steps
        )

    def rules(self) -> dict[str, Any]:
        """The effective evaluation order: groups, rules, lists, actions."""
        return describe_rules(self.spec, self.policy)

    def rule_matches(self) -> list[tuple[tuple[str, str, str, str], int]]:
        """Matches per rule: ((group, rule, list, action), count), in evaluation order."""
        return [((r.group, r.name, r.list, r.action), n) for r, n in self.matches.items()]

    async def refresh(self, name: str) -> ListStatus:
        slot = self._slot(name)
        if slot.spec.kind == "domains":
            raise ListEditError(f"list '{name}' is inline in the Corefile: nothing to re-read", 409)
        try:
            await slot.load()
        except Exception as err:  # noqa: BLE001 - reported to the caller; the old list keeps serving
            raise ListEditError(f"refresh of list '{name}' failed: {err}", 502) from None
        return slot.describe()

    def _slot(self, name: str) -> ListSlot:
        slot = self.slots.get(name)
        if slot is None:
            raise ListEditError(f"no domain list named '{name}'", 404)
        return slot


def register_metrics(metrics: Registry, firewalls: list[Firewall]) -> Metric:
    """Firewall metrics over every firewall of the configuration (one per server block); the
    rule-match counter is returned.

    Blocks may reuse group, rule and list names, so series with the same labels are combined:
    counts and sizes added, load times the latest.
    """

    def combined(samples, merge=lambda a, b: a + b):
        out: dict[tuple[str, ...], float] = {}
        for labels, value in samples:
            out[labels] = merge(out[labels], value) if labels in out else value
        return list(out.items())

    def statuses():
        return [s for fw in firewalls for s in fw.lists()]

    matches = metrics.gauge_func(
        "dnsfw_firewall_rule_matches_total",
        "Queries (or CNAME targets) a firewall rule matched, by rule.",
        ("group", "rule", "list", "action"),
        lambda: combined(sample for fw in firewalls for sample in fw.rule_matches()),
        kind="counter",
    )
    metrics.gauge_func(
        "dnsfw_firewall_list_entries",
        "Entries of each domain list as loaded now.",
        ("list",),
        lambda: combined(((s.name,), s.entries) for s in statuses()),
    )
    metrics.gauge_func(
        "dnsfw_firewall_list_load_timestamp_seconds",
        "When each domain list was last loaded (Unix time).",
        ("list",),
        lambda: combined((((s.name,), s.loaded_at or 0) for s in statuses()), max),
    )
    metrics.gauge_func(
        "dnsfw_firewall_list_load_failures_total",
        "Failed loads or refreshes of each domain list.",
        ("list",),
        lambda: combined(((s.name,), s.failures) for s in statuses()),
        kind="counter",
    )
    metrics.gauge_func(
        "dnsfw_firewall_failures_total",
        "Queries the firewall could not evaluate (a list not loaded), by fail mode.",
        ("mode",),
        lambda: combined(((mode,), n) for fw in firewalls for mode, n in fw.fail_counts.items()),
        kind="counter",
    )
    return matches


class RuleTotals:
    """The firewalls' rule matches for the admin API (``proxy.services.RULE_COUNTERS``): the
    rule-match counter, which counts on across reloads (see ``proxy.metrics``)."""

    __slots__ = ("counter",)

    def __init__(self, counter: Metric) -> None:
        self.counter = counter

    def rule_matches(self) -> list[tuple[tuple[str, str, str, str], int]]:
        return [(labels, n) for labels, n in self.counter.samples()]  # type: ignore[misc]


class ListsUnchanged(Guard):
    """True while no list of the policy was swapped since a decision was made (one object per
    list generation, shared by every query decided under it)."""

    __slots__ = ("policy", "generation")

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.generation = policy.generation

    def __call__(self) -> bool:
        return self.policy.generation == self.generation


class RuleMatch(Effect):
    """One more match of ``rule`` (made once per rule, at setup)."""

    __slots__ = ("matches", "rule")

    def __init__(self, matches: dict[Rule, int], rule: Rule) -> None:
        self.matches = matches
        self.rule = rule

    def __call__(self, client: Any, start: float) -> None:
        self.matches[self.rule] += 1


def _chain(resp: Response) -> tuple[bytes, ...]:
    """CNAME/DNAME targets of a reply that has no AnswerInfo yet (a cache hit brings one):
    a scan of the answer section only."""
    try:
        return wire.answer_chain(resp.wire)
    except (wire.WireError, IndexError):
        return resp.answer_info().chain  # raises the same way: the reply is malformed


def _subquery(req: Request, target: bytes) -> Request:
    """A query for TARGET with the client's type, EDNS and addressing (for override CNAMEs)."""
    header = struct.pack(
        "!HHHHHH",
        random.getrandbits(16),
        wire.RD | (req.flags & wire.CD),
        1,  # QDCOUNT
        0,  # ANCOUNT
        0,  # NSCOUNT
        1 if req.edns else 0,  # ARCOUNT: the OPT record
    )
    question = target + struct.pack("!HH", req.qtype, req.qclass)
    opt = wire.opt_record(req.udp_size, req.do) if req.edns else b""
    return req.derive(header + question + opt, target)


def _render(rrset) -> list[bytes]:
    name = rrset.name.to_wire()
    return [
        wire.rr(name, rrset.rdtype, rrset.ttl, rdata.to_wire(), rrset.rdclass) for rdata in rrset
    ]


def _query(qname: bytes, qtype: int) -> bytes:
    """A query for ``qname`` and ``qtype`` as a stub resolver with EDNS sends it."""
    header = struct.pack("!HHHHHH", 0, wire.RD, 1, 0, 0, 1)
    return header + qname + struct.pack("!HH", qtype, wire.CLASS_IN) + wire.opt_record(1232, False)


__all__ = ["ALLOW", "ALERT", "BLOCK", "Firewall"]
