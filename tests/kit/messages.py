"""Requests and replies as plugins see them, built without sockets, and a firewall decision
as a plugin's annotation carries it."""

from __future__ import annotations

from dataclasses import dataclass

import dns.flags
import dns.message
import dns.rcode
import dns.rrset

from proxy.request import Request, Response, parse


def make_request(
    name: str = "example.org.",
    rdtype: str = "A",
    *,
    qid: int = 29008,
    client: tuple = ("::1", 50759),
    transport: str = "udp",
    server: str = "dns://127.0.0.1:53",
    edns: int | bool = 0,
    payload: int = 4096,
    want_dnssec: bool = False,
) -> Request:
    q = dns.message.make_query(
        name, rdtype, use_edns=edns, payload=payload, want_dnssec=want_dnssec
    )
    q.id = qid
    return parse(q.to_wire(), client, transport, server)


def make_reply(
    req: Request,
    rcode: int = dns.rcode.NOERROR,
    answers: tuple[str, ...] = (),
    authority: tuple[str, ...] = (),
    flags: str = "QR RD RA",
) -> Response:
    query = dns.message.from_wire(req.wire)
    reply = dns.message.make_response(query)
    reply.flags = dns.flags.from_text(flags)
    reply.set_rcode(rcode)
    for text in answers:
        reply.answer.append(dns.rrset.from_text(*text.split(maxsplit=4)))
    for text in authority:
        reply.authority.append(dns.rrset.from_text(*text.split(maxsplit=4)))
    return Response(reply.to_wire(), rcode, "upstream")


@dataclass(frozen=True)
class Decision:
    action: str
    group: str
    rule: str
    list: str
