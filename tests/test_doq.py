"""DNS over QUIC (RFC 9250): `quic://` blocks with dnspython's DoQ client against a
certificate the test makes; the query runs the chain (whoami sees it as a stream transport,
Route 53 logs it as DoQ); discovery lists it. Loopback only, bounded."""

from __future__ import annotations

import json
import sys
import time

import dns.message
import dns.query
import dns.rcode
import pytest

import proxy
from proxy.config import load
from proxy.corefile import CorefileError
from tests.kit.corefiles import ENCRYPTED, corefile
from tests.kit.dnsfw import Dnsfw, free_port
from tests.kit.tls import make_cert

NAME = "dns.test"


def test_dnspython_doq_query_is_answered_and_logged_as_doq(tmp_path):
    make_cert(tmp_path, NAME)
    port = free_port()
    log = tmp_path / "queries.log"
    plugins = f"log . {{\n    format route53\n    output {log}\n}}\nwhoami"
    dnsfw = Dnsfw(
        corefile(
            ENCRYPTED, KEYS=f"quic://.:{port}", CERT="dot.crt", KEY="dot.key", PLUGINS=plugins
        ),
        tmp_path,
    ).start()
    try:
        for i in range(3):  # one connection per query from dnspython's sync client
            reply = dns.query.quic(
                dns.message.make_query(f"q{i}.example.org.", "A"),
                "127.0.0.1",
                port=port,
                verify=str(tmp_path / "dot.crt"),
                server_hostname=NAME,
                timeout=5,
            )
            assert reply.rcode() == dns.rcode.NOERROR
            assert str(reply.additional[0][0]) == "127.0.0.1"
        deadline = time.monotonic() + 10
        while True:
            lines = [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []
            doq = [x for x in lines if x["transport"] == "DoQ"]
            if len(doq) == 3 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert sorted(x["query_name"] for x in doq) == [f"q{i}.example.org." for i in range(3)]
    finally:
        dnsfw.stop()


def test_without_aioquic_a_quic_block_is_refused_naming_the_extra(tmp_path, monkeypatch):
    make_cert(tmp_path, NAME)
    # as where the extra is not installed: proxy.doq cannot be imported
    monkeypatch.setitem(sys.modules, "proxy.doq", None)
    monkeypatch.delattr(proxy, "doq", raising=False)
    conf = tmp_path / "Corefile"
    conf.write_text("quic://.:8853 {\n    tls dot.crt dot.key\n    whoami\n}\n")
    with pytest.raises(CorefileError) as refused:
        load(str(conf), checking=True)
    assert str(refused.value) == (
        f"{conf}:1 - Error during parsing: quic:// (DNS over QUIC) needs the optional extra "
        "dnsfw[quic]: pip install 'dnsfw[quic]' (aioquic)"
    )
