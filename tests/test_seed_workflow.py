"""Seed 1 end to end, as a user runs it (issue 13, "Done when"): an ALERT trial through dnsfw
against a recursive upstream with CNAME chains (Unbound from Debian, resolving the test's
zones), ``dnsfw audit --suggest`` on the trial's query log, then the suggested list as the
seed's policy in BLOCK mode: every name the trial saw resolve still resolves, with the same
answer, and everything else is NODATA from the firewall.

Unbound iterates through a stub zone for the root pointed at the in-process upstream
(``tests.kit.unbound``); its answers carry the chains of the field report:
``mirrors.fedoraproject.org`` -> ``wildcard.fedoraproject.org`` and the Amazon Linux repo ->
``s3-r-w.dualstack.ap-northeast-1.amazonaws.com``, which ``redirection inspect`` evaluates.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import dns.edns
import dns.message
import dns.rcode
import dns.rdatatype

from tests.kit.corefiles import corefile
from tests.kit.dnsfw import Dnsfw, run_cli
from tests.kit.scenario import SCENARIO
from tests.kit.unbound import Unbound

# the trial: a query log, and an ALERT on everything (nothing allowed yet)
TRIAL = """\
.:$PORT {
    bind 127.0.0.1
    log . {
        format route53
        output trial.log
    }
    firewall {
        list all domains *
        group seed 100 {
            rule alert-all 1000 ALERT all
        }
    }
    cache
    forward . $UPSTREAM
}
"""

# the seed's policy: the reviewed list allowed, everything else blocked (redirection inspect)
ENFORCE = """\
.:$PORT {
    bind 127.0.0.1
    firewall {
        list seen file seen.txt
        list all  domains *
        group seed 100 {
            rule allow-seen 100  ALLOW seen
            rule block-all  1000 BLOCK all
        }
    }
    cache
    forward . $UPSTREAM
}
"""

# names the trial never asked for: blocked once the policy enforces
UNSEEN = (
    "ads.yahoo.co.jp.",
    "beacon.yahoo.co.jp.",
    "www.google.com.",
    "cdn-redirect.google.com.",
    "edge.akamaiedge.net.",
    "example.com.",
    "a.example.",
    "controldomain1.aggregatelist.firewall.route53resolver.us-east-1.amazonaws.com.",
)
TIMEOUT = 20.0


def wait_until(done, what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not done():
        assert time.monotonic() < deadline, f"no {what} within {TIMEOUT}s"
        time.sleep(0.05)


def records(msg: dns.message.Message) -> set[tuple[str, str, str]]:
    """The answer section without TTLs (they count down between the two queries)."""
    return {
        (rrset.name.to_text().lower(), dns.rdatatype.to_text(rrset.rdtype), rd.to_text().lower())
        for rrset in msg.answer
        for rd in rrset
    }


def ede(msg: dns.message.Message) -> list[str]:
    return [o.text or "" for o in msg.options if isinstance(o, dns.edns.EDEOption)]


def assert_nodata_by_block_all(msg: dns.message.Message, name: str) -> None:
    assert (dns.rcode.to_text(msg.rcode()), msg.answer) == ("NOERROR", []), (name, msg)
    assert [rrset[0].mname.to_text() for rrset in msg.authority] == ["dnsfw.invalid."], name
    assert ede(msg) == ["blocked by dnsfw rule 'block-all' (group 'seed', list 'all')"], name


def test_alert_trial_audit_then_block(tmp_path: Path, upstream) -> None:
    with Unbound(upstream.address, tmp_path) as unbound:
        d = Dnsfw(corefile(TRIAL, UPSTREAM=unbound.address), tmp_path).start()
        try:
            # 1. the trial: the host's queries, answered by Unbound, each logged as ALERT
            trial = {
                (name, qtype): d.query(name, qtype, use_edns=0)
                for name, types in SCENARIO.items()
                for qtype in types
            }
            mirrors = trial["mirrors.fedoraproject.org.", "AAAA"]
            assert [r.rdtype for r in mirrors.answer] == [dns.rdatatype.CNAME, dns.rdatatype.AAAA]
            repo = trial[
                "amazonlinux-2-repos-ap-northeast-1.s3.dualstack.ap-northeast-1.amazonaws.com.", "A"
            ]
            assert repo.answer[0].rdtype == dns.rdatatype.CNAME
            log = tmp_path / "trial.log"
            # every query, and the start-up probe, is in the log
            wait_until(
                lambda: log.exists() and len(log.read_text().splitlines()) > len(trial),
                "trial log lines",
            )

            # 2. the audit suggests the list to allow
            seen = tmp_path / "seen.txt"
            audit = run_cli("audit", "--suggest", str(seen), str(log))
            assert audit.returncode == 0, audit.stderr
            assert "wrote" in audit.stderr and "2 CNAME/DNAME targets" in audit.stderr

            # 3. the seed's policy, enforcing, with the suggested list (a reload, as a user does)
            d.write(corefile(ENFORCE, UPSTREAM=unbound.address))
            d.signal(signal.SIGHUP)
            wait_until(lambda: "event='reloaded'" in d.stderr, "reload")
            assert "reload_failed" not in d.stderr

            # 4. what resolved in the trial resolves the same; the rest is NODATA
            resolved = 0
            for (name, qtype), before in trial.items():
                after = d.query(name, qtype, use_edns=0)
                if before.rcode() == dns.rcode.NOERROR:
                    resolved += 1
                    assert after.rcode() == dns.rcode.NOERROR, (name, qtype, after)
                    assert records(after) == records(before), (name, qtype)
                    assert ede(after) == [], (name, qtype)
                else:  # names that do not exist: flagged by the audit as noise, not allowed
                    assert_nodata_by_block_all(after, name)
            assert resolved == 32  # of 46 pairs: probes, search-path names and the like fail
            for name in UNSEEN:
                assert_nodata_by_block_all(d.query(name, "A", use_edns=0), name)
        finally:
            d.stop()
