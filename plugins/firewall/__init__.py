"""firewall - Route 53 Resolver DNS Firewall: domain lists, prioritised rules, block answers.

Syntax::

    firewall [ZONES...] {
        list NAME file PATH [format FORMAT] [lenient] [versions N]
        list NAME url URL [refresh DURATION] [format FORMAT] [lenient] [headers_file PATH]
        list NAME feed FEED [refresh DURATION] [headers_file PATH]
        list NAME domains ENTRY...
        group NAME PRIORITY {
            clients CIDR...
            rule NAME PRIORITY ALLOW|ALERT|BLOCK LIST [qtype TYPE] [redirection inspect|trust] [response nodata|nxdomain|override TARGET] [ttl SECONDS]
        }
        block_ttl SECONDS
        fail open|closed
        ede on|off
        bypass_signals on|off
    }

Once per server block; ZONES (default: the block's zones, else read as keys are: a CIDR is
its reverse zones, ``straße.de`` the list entry's ``xn--strae-oqa.de``) limit the names it
filters.

**Lists.** ``file`` (a path relative to the Corefile's directory, or absolute), ``url``
(http/https, refreshed every ``refresh``, default 4h, with a conditional GET; the last good
copy is kept on disk for restarts without network), ``feed`` (a ``url`` list from dnsfw's
catalogue of public threat feeds, ``data/feeds.json``: ``urlhaus``, ``threatfox``,
``hagezi-tif``, ``hagezi-tif-medium``, ``oisd-big``; its URL, format and default refresh come
from the catalogue, each names the AWS managed lists it stands in for, and it is ``lenient``;
``DNSFW_FEEDS=PATH`` replaces the catalogue, e.g. with an internal mirror) or ``domains``
(entries inline). ``headers_file PATH`` (url and feed lists; relative to the Corefile) sends
the file's ``Name: value`` lines (``#`` comments) as request headers, e.g. an Authorization
header for a commercial or internal feed: the file is read at each download (a rotated token
needs no reload), checked at setup, never logged (errors name its line number, not its
text), and its headers are not sent on to a redirect's target. FORMAT is
``route53`` (default: ``example.com`` only that name, ``*.example.com`` every name strictly
below it, ``*`` every name; case-insensitive, trailing dot optional, ``_`` allowed, IDN
converted to punycode), ``hosts`` (``0.0.0.0 name`` lines, exact names) or ``adblock``
(``||name^`` = the name and everything below; other rules skipped and counted). See
``lists.py`` for the details. A bad line is an error with file and line (a line in another
format's syntax, such as ``0.0.0.0 ads.example`` in a route53 list, names the format to give);
with ``lenient``, bad lines are skipped and counted instead (``skipped`` in ``/v1/lists``, the
``list_loaded`` and ``list_downloaded`` log lines), so one junk line in a downloaded list does
not keep the rest out. A route53-format ``file`` list that dnsfw can write (the file and
its directory) is editable through the admin API (``/v1/lists``: ``editable``, else
``editable_reason`` and an edit answers 409; under the systemd unit, keep such lists in
``/var/lib/dnsfw/lists``). An edit keeps the file's comments: ADD appends the new entries
under ``# added by dnsfw admin API TIME (CLIENT, IDENTITY)``, REMOVE deletes their lines in
place, REPLACE (and PUT) keeps the header comment block; the ``versions`` (0-100, default 5)
previous files are kept beside it as ``PATH.1`` (newest) ... ``PATH.N``, and each edit is
logged (``list_edited``) with the client address and identity (``anonymous``, or
``token:`` and a fingerprint of the token, never the token). File and url lists
load in the background at start (the plugin is not ready until they are; a ``file`` list
that cannot be read is an error at start, ``dnsfw run`` exits 1 with the Corefile line, and
on reload, where the old configuration stays) and a failed refresh keeps the old list
serving. A url download that fails (at start or on a refresh) is
retried after 5 s, then 10 s, 20 s... up to ``refresh`` (with jitter), each failure logged
once (``list_load_failed`` with ``retry_in``); while a list was never loaded, ``/ready``
names the firewall with the error and the next try, and ``/v1/lists`` shows ``error``,
``failures``, ``consecutive_failures`` and ``next_download_at``. ``dnsfw check`` downloads
url lists: one it cannot download is a warning (``-strict``: an error). A list is swapped whole: no query sees half a list.

**Evaluation** (Route 53's): groups by ascending PRIORITY, the rules of a group by ascending
PRIORITY (both unique; names are letters, digits, ``-``, ``_``). A group with ``clients``
applies only to queries from those networks. The first rule whose list matches the query
name, and whose ``qtype`` (a type mnemonic or ``TYPEn``), if set, equals the query's type,
decides: ALLOW, ALERT and BLOCK all end the walk. No match: the query resolves normally.
A list may be used by several rules of a group only with different qtypes.

**BLOCK answers.** ``response nodata`` (default): NOERROR with an empty answer;
``response nxdomain``: NXDOMAIN; both carry a synthesised SOA (``dnsfw.invalid.``) in the
authority section whose TTL and MINIMUM are ``block_ttl`` (default 60 s), so resolvers
cache the denial that long. ``response override TARGET``: with a domain TARGET, the answer is
``QNAME CNAME TARGET`` (TTL ``ttl``, 0-604800, default 0) followed by TARGET's own records,
resolved through the rest of the chain; with an IPv4/IPv6 TARGET (a sinkhole), A/AAAA
queries of that family get that address (TTL ``ttl``) and other types NODATA. With
``ede on`` (default) every blocked answer to an EDNS client carries an RFC 8914 Extended DNS
Error (15, Blocked) naming the rule, group and list (``blocked by dnsfw rule 'R' (group 'G',
list 'L')``), and, for a block on a CNAME/DNAME target, that target too (``... on the
CNAME/DNAME target wildcard.fedoraproject.org.``).

**ALERT** answers normally; like BLOCK and ALLOW it records its decision in
``req.meta["firewall"]`` (a :class:`~.policy.Decision`: ``action``, ``group``, ``rule``,
``list``) for the query log.

**Redirection.** With ``redirection inspect`` (default) every CNAME/DNAME target in the
answer is evaluated too, from the top of the order; if one evaluates to BLOCK, the client
gets that rule's block answer for its original question, attributed to that rule (the
decision's ``name`` is the target, ``via_chain`` True: the EDE names it, and the ``log``
plugin writes it as ``firewall_redirection_domain``); an ALERT on a target is recorded if
the query itself had no decision. A rule with ``redirection trust`` that matches the query
name (or a target) ends inspection: the rest of the chain is trusted. ``dnsfw explain
--resolve`` shows the decision on an answer's chain; ``dnsfw audit --suggest`` lists the
targets seen in a trial's answers, so an allowlist ending in a BLOCK on ``*`` keeps them.

**Failure.** ``fail closed`` (default, as Route 53): while a list a rule needs is not loaded,
the answer is SERVFAIL; ``fail open``: the query resolves unfiltered. Both are counted and
logged.

**Bypass signals.** ``bypass_signals on`` answers the signals by which clients discover or
decide to use encrypted DNS that would bypass dnsfw: ``use-application-dns.net`` gets
NXDOMAIN (Firefox then keeps its built-in DoH off) and ``_dns.resolver.arpa`` NODATA (no
Discovery of Designated Resolvers, RFC 9462) -- unless dnsfw serves encrypted DNS itself
(``tls://``, ``https://`` blocks): then its SVCB query gets dnsfw's own DoT and DoH listeners
(``proxy.discovery``: alpn, port, dohpath, address hints; the target is the certificate's
DNS name), so clients that discover encrypted DNS upgrade to dnsfw instead of going around
it. dnsfw ships ``data/doh-dot-endpoints.txt``, a list of public DoH/DoT endpoint names to use
in a BLOCK rule.

**Replays** (``proxy.replay``): for each query it decides, the firewall records a guard (the
list generation) and runs its rule count (:class:`RuleMatch`) as a recorded effect, so a cache
hit answered again without the chain counts the same rules, CNAME targets included, while any
list swap (a reload, a url refresh, an admin edit) sends the next query through the firewall
again: a change still applies at once. Firewalls with client groups (decisions per client)
take no part.

**Metrics.** ``dnsfw_firewall_rule_matches_total{group,rule,list,action}``,
``dnsfw_firewall_list_entries{list}``, ``dnsfw_firewall_list_load_timestamp_seconds{list}``,
``dnsfw_firewall_list_load_failures_total{list}``, ``dnsfw_firewall_failures_total{mode}``.

**Admin API.** Each firewall is registered under ``proxy.services.DOMAIN_LISTS`` (its lists,
edits, ``explain()`` and ``rules()``: :mod:`.explain`), and the configuration's rule-match
counter under ``RULE_COUNTERS``. ``dnsfw audit`` (:mod:`commands.audit`) checks query logs
against the firewalls of a Corefile (:func:`load_offline`).

Example (the Gmail-only allowlist of the Route 53 field report)::

    firewall {
        list google   domains gmail.com *.google.com
        list aws      domains *.amazonaws.com *.amazon.pool.ntp.org
        list internal file lists/internal.txt
        list all      domains *
        group egress 101 {
            rule allow-google   100 ALLOW google   redirection trust
            rule allow-aws      110 ALLOW aws      redirection trust
            rule allow-internal 120 ALLOW internal
            rule block-rest     900 BLOCK all      response nodata
        }
    }

``dnsfw explain -conf FILE NAME [TYPE] [--client IP]`` (:mod:`commands.explain`) prints the
walk for one query.
"""

from __future__ import annotations

from proxy.config import SetupContext, load
from proxy.corefile import CorefileError, Directive
from proxy.services import DOMAIN_LISTS, RULE_COUNTERS, ServiceKey

from .config import parse
from .lint import warnings
from .lists import ListError
from .plugin import Firewall, RuleTotals, register_metrics

ONCE = True
FIREWALLS = ServiceKey[Firewall]("firewall")  # every firewall of a configuration

__all__ = ["FIREWALLS", "Firewall", "load_offline", "setup"]


def setup(directive: Directive, ctx: SetupContext) -> Firewall:
    spec = parse(directive, ctx)
    firewall = Firewall(spec, reloading=ctx.app.reloading, discovery=ctx.app.discovery)
    for slot in firewall.slots.values():
        try:
            if ctx.app.checking:
                # `dnsfw check` / `explain`: read file lists now, so bad lines are reported
                # with file:line
                slot.load_now()
            else:
                # `run` and reloads parse lists in the background, but a file that cannot be
                # read is a configuration error now (a reload keeps the old configuration)
                slot.check_readable()
        except ListError as err:
            raise _list_error(err, directive) from None
        except OSError as err:
            raise CorefileError(slot.spec.file, slot.spec.line, slot.unreadable(err)) from None
    if ctx.app.checking:
        if ctx.app.probe:
            _probe_urls(firewall, ctx, directive)
        for file, line, message in warnings(spec, lambda name: firewall.slots[name].current):
            ctx.app.warn(file, line, message)
    services = ctx.app.services
    services.add(FIREWALLS, firewall)
    services.add(DOMAIN_LISTS, firewall)
    firewalls = services.get(FIREWALLS)
    matches = register_metrics(ctx.app.metrics, firewalls)
    if len(firewalls) == 1:  # one counter over every firewall of the configuration
        services.add(RULE_COUNTERS, RuleTotals(matches))
    return firewall


def _probe_urls(firewall: Firewall, ctx: SetupContext, directive: Directive) -> None:
    """``dnsfw check``: download each url list now. One that cannot be downloaded is a
    warning (the service may start before the network and retries), with ``-strict`` an
    error; one that downloads is checked line by line like a file."""
    for slot in firewall.slots.values():
        spec = slot.spec
        if spec.kind != "url":
            continue
        try:
            slot.probe()
        except ListError as err:
            raise _list_error(err, directive) from None
        except OSError as err:
            message = f"cannot download list '{spec.name}' from {spec.url}: {err}"
            if ctx.app.strict:
                raise CorefileError(spec.file, spec.line, message) from None
            ctx.app.warn(spec.file, spec.line, message + " (dnsfw retries it with backoff)")


def _list_error(err: ListError, directive: Directive) -> CorefileError:
    """The first bad line as the error's location; the others listed after it."""
    if not err.errors:
        return directive.error(str(err))
    first, *rest = str(err).splitlines()
    bad = err.errors[0]
    message = f"invalid domain list entry {bad.text!r}: {bad.reason}"
    return CorefileError(bad.file, bad.line, "\n".join([message, *rest]))


def load_offline(conf_path: str) -> list[Firewall]:
    """Every firewall of a Corefile with its lists loaded, without serving (explain, audit)."""
    config = load(conf_path, checking=True)
    return list(config.app.services.get(FIREWALLS))
