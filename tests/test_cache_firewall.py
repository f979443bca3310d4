"""The firewall sits before the cache: a list change applies at once to names already cached."""

from __future__ import annotations

import json
import urllib.request

import dns.rcode
import dns.rdatatype

from tests.kit.corefiles import corefile
from tests.kit.dnsfw import free_port

# the firewall before the cache; its list edited through the admin API
FIREWALL_CACHE = """
.:$PORT {
    bind 127.0.0.1
    admin 127.0.0.1:$ADMIN
    firewall {
        list blocked file $LIST
        group g 100 {
            rule block-listed 100 BLOCK blocked response nxdomain
        }
    }
    cache
    forward . $UPSTREAM
}
"""


def patch(port: int, name: str, operation: str, domains: list[str]) -> dict:
    body = json.dumps({"operation": operation, "domains": domains}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/lists/{name}",
        data=body,
        method="PATCH",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


def test_a_name_blocked_after_it_was_cached_is_blocked_at_once(dnsfw, upstream, tmp_path):
    listed = tmp_path / "blocked.txt"
    listed.write_text("ads.example\n")
    admin = free_port()
    d = dnsfw(corefile(FIREWALL_CACHE, ADMIN=admin, LIST=listed, UPSTREAM=upstream.address))
    first = d.query("www.example.com.", "A")
    assert first.rcode() == dns.rcode.NOERROR and first.answer
    asked = len([s for s in upstream.seen if s.name == "www.example.com."])
    assert d.query("www.example.com.", "A").answer  # a cache hit
    assert len([s for s in upstream.seen if s.name == "www.example.com."]) == asked

    patch(admin, "blocked", "ADD", ["www.example.com"])
    blocked = d.query("www.example.com.", "A")
    assert blocked.rcode() == dns.rcode.NXDOMAIN and not blocked.answer

    patch(admin, "blocked", "REMOVE", ["www.example.com"])
    again = d.query("www.example.com.", "A")
    assert again.rcode() == dns.rcode.NOERROR
    assert any(rrset.rdtype == dns.rdatatype.A for rrset in again.answer)
    # the answer came from the cache all along: upstream was never asked again
    assert len([s for s in upstream.seen if s.name == "www.example.com."]) == asked
