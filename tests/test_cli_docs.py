"""The CLI says what it does, and the docs say what the CLI and the code do: ``dnsfw -h`` lists
every command, ``-plugins`` the implemented directives, ``check``/``run`` without ``-conf``
name the configuration they use (./Corefile, else CoreDNS's ``.:53 { whoami }``), and
``Corefile.example`` runs the field report's allowlist as an ALERT trial with a Route 53 query
log and the admin API, over real sockets."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype

import plugins
from tests.kit.api import Api
from tests.kit.dnsfw import ROOT, free_port, run_cli

README = (ROOT / "README.md").read_text()


def test_help_lists_every_command_and_the_readme_agrees() -> None:
    done = run_cli("-h")
    assert done.returncode == 0
    listed = re.findall(r"^  (\S+) +\S.*$", done.stdout.split("commands:\n", 1)[1], re.M)
    assert listed == ["run", "check", *plugins.COMMANDS]
    usage = README.split("## Usage", 1)[1].split("```", 2)[1]
    for command in listed:
        assert re.search(rf"^dnsfw {command} ", usage, re.M), command
        if command in plugins.COMMANDS:  # each command answers its own -h
            assert run_cli(command, "-h").returncode == 0


def test_plugins_lists_the_implemented_directives_in_chain_order() -> None:
    lines = run_cli("-plugins").stdout.splitlines()
    implemented = [name for name in plugins.ORDER if name in plugins.IMPLEMENTED]
    assert lines[:-1] == [f"dns.{name}" for name in implemented]
    others = len(plugins.ORDER) - len(plugins.IMPLEMENTED)
    assert (
        lines[-1]
        == f"({others} other CoreDNS directives parse but are refused: not supported by dnsfw)"
    )


def test_check_without_conf_names_what_it_checked(tmp_path: Path) -> None:
    done = run_cli("check", "-dns.port", "1053", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "dns://:1053: 1 zone(s)\ndefault configuration: OK\n"
    assert done.stderr == (
        "dnsfw: no -conf and no ./Corefile: using the default configuration, .:1053 { whoami }\n"
    )
    assert list(tmp_path.iterdir()) == []  # no file was written to hold it
    (tmp_path / "Corefile").write_text(".:5300 {\n    whoami\n}\n")
    done = run_cli("check", cwd=tmp_path)
    assert (done.returncode, done.stdout) == (0, "dns://:5300: 1 zone(s)\nCorefile: OK\n")


def test_run_without_conf_serves_whoami(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "proxy.cli", "run", "-dns.port", str(port)],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        query = dns.message.make_query("who.example.", "A")
        deadline = time.monotonic() + 20
        while True:
            try:
                reply = dns.query.udp(query, "127.0.0.1", port=port, timeout=1)
                break
            except (dns.exception.Timeout, OSError):
                assert proc.poll() is None and time.monotonic() < deadline
        assert reply.rcode() == dns.rcode.NOERROR
        (address,) = [
            rr for rrset in reply.additional for rr in rrset if rrset.rdtype == dns.rdatatype.A
        ]
        assert address.address == "127.0.0.1"  # whoami: the client's address
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert f"using the default configuration, .:{port} {{ whoami }}" in err


def example(admin: int) -> str:
    """Corefile.example on the test's ports and upstream ($PORT, $UPSTREAM), lists by path."""
    text = (ROOT / "Corefile.example").read_text()
    for old, new in [
        (".:1053 {", ".:$PORT {"),
        ("admin 127.0.0.1:8053", f"admin 127.0.0.1:{admin}"),
        ("forward . /etc/resolv.conf", "forward . $UPSTREAM"),
        (" file examples/", f" file {ROOT}/examples/"),
    ]:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    return text


def test_the_example_runs_the_allowlist_trial(dnsfw, upstream) -> None:
    admin = free_port()
    d = dnsfw(example(admin).replace("$UPSTREAM", upstream.address))
    assert d.query("gmail.com.", "MX").rcode() == dns.rcode.NOERROR
    assert d.query("yahoo.co.jp.", "MX").rcode() == dns.rcode.NOERROR  # the trial blocks nothing
    wanted = {("gmail.com.", "MX"), ("yahoo.co.jp.", "MX")}
    deadline = time.monotonic() + 10
    while True:  # the log is written off the query path: wait for both lines
        lines = map(json.loads, d.stdout_path.read_text().splitlines())
        logged = {(j["query_name"], j["query_type"]): j for j in lines}
        if wanted <= logged.keys():
            break
        assert time.monotonic() < deadline, logged
        time.sleep(0.05)
    assert "firewall_rule_action" not in logged[("gmail.com.", "MX")]
    alert = logged[("yahoo.co.jp.", "MX")]
    assert (alert["firewall_rule_action"], alert["firewall_domain_list_id"]) == (
        "ALERT",
        "all-domains",
    )
    api = Api(admin, token=None)  # loopback: no token
    lists = {ls["name"]: ls for ls in api.ok("GET", "/v1/lists")["lists"]}
    assert lists["ec2-internal"]["status"] == "loaded" and lists["ec2-internal"]["editable"]
    rules = json.dumps(api.ok("GET", "/v1/rules"))
    assert "review-rest" in rules and "ALERT" in rules


def test_docs_name_only_directives_dnsfw_has() -> None:
    # the README's table and the reference list every implemented directive, and no guide
    # says an implemented one is missing (docs/ec2.md once said prometheus/health were)
    table = re.findall(r"^\| `([a-z_0-9]+)` \|", README, re.M)
    assert sorted(table) == sorted(plugins.IMPLEMENTED)
    for doc in sorted((ROOT / "docs").glob("*.md")):
        text = doc.read_text()
        for name in plugins.IMPLEMENTED:
            assert not re.search(rf"`{name}`[^.]*(not in dnsfw|not yet|missing)", text), (
                doc.name,
                name,
            )
