"""Discovery of Designated Resolvers (RFC 9462): with DoT and DoH listeners, the firewall's
`bypass_signals` answers `_dns.resolver.arpa` SVCB with them (alpn, port, dohpath, address
hint, the certificate's name) instead of NODATA; checked with dig and dnspython, and the
discovered DoH endpoint is then used as a client would."""

from __future__ import annotations

import subprocess

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype

from tests.kit.corefiles import ENCRYPTED, corefile
from tests.kit.dnsfw import Dnsfw, free_port
from tests.kit.tls import client_context, make_cert
from tests.kit.tools import need_tool

NAME = "dns.test"
FIREWALL = """\
firewall {
    list all domains *
    group main 10 {
        rule watch 10 ALERT all
    }
    bypass_signals on
}
whoami"""


def start(tmp_path, keys: str) -> Dnsfw:
    make_cert(tmp_path, NAME)
    text = corefile(ENCRYPTED, KEYS=keys, CERT="dot.crt", KEY="dot.key", PLUGINS=FIREWALL)
    return Dnsfw(text, tmp_path).start()


def test_svcb_lists_the_encrypted_listeners_and_the_doh_one_answers(tmp_path):
    dot_port, doh_port = free_port(), free_port()
    dnsfw = start(tmp_path, f"tls://.:{dot_port} https://.:{doh_port}")
    try:
        reply = dnsfw.query("_dns.resolver.arpa.", "SVCB")
        assert reply.rcode() == dns.rcode.NOERROR
        records = sorted(reply.answer[0], key=lambda rd: rd.priority)
        dot, doh = (rd.to_text() for rd in records)
        assert dot == f'1 {NAME}. alpn="dot" port="{dot_port}" ipv4hint="127.0.0.1"'
        assert doh == (
            f'2 {NAME}. alpn="h2,http/1.1" port="{doh_port}" ipv4hint="127.0.0.1" '
            'dohpath="/dns-query{?dns}"'
        )
        # a client follows the DoH record: target name, port and path from the answer
        query = dns.message.make_query("example.org.", "A")
        answer = dns.query.https(
            query,
            f"https://{records[1].target.to_text(omit_final_dot=True)}:{records[1].params[3].port}"
            + "/dns-query",
            bootstrap_address="127.0.0.1",
            verify=client_context(tmp_path / "dot.crt", NAME),
            timeout=5,
        )
        assert answer.rcode() == dns.rcode.NOERROR
    finally:
        dnsfw.stop()


def test_dig_reads_the_discovery_answer(tmp_path):
    dig = need_tool("dig", "bind9-dnsutils")
    dot_port = free_port()
    dnsfw = start(tmp_path, f"tls://.:{dot_port}")
    try:
        out = subprocess.run(
            [dig, "@127.0.0.1", "-p", str(dnsfw.port), "+short", "_dns.resolver.arpa", "SVCB"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert out.stdout.strip() == f'1 {NAME}. alpn="dot" port={dot_port} ipv4hint=127.0.0.1'
    finally:
        dnsfw.stop()


def test_without_encrypted_listeners_the_signal_is_still_nodata(tmp_path):
    dnsfw = start(tmp_path, "")
    try:
        reply = dnsfw.query("_dns.resolver.arpa.", "SVCB")
        assert reply.rcode() == dns.rcode.NOERROR and not reply.answer
        assert reply.authority[0].rdtype == dns.rdatatype.SOA
    finally:
        dnsfw.stop()
