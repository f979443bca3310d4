"""dnsfw audit: the scenario's trial log (scenario.md §1) in, inventory, list and policy diff out."""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
from pathlib import Path

import pytest

from commands import audit
from commands.audit.names import Domains, flag_names, suggest
from commands.audit.scan import Inventory, TimeWindow, parse_stamp, parse_time_arg
from plugins.firewall.lists import DomainList
from proxy.names import text_to_wire
from tests.kit.dnsfw import run_cli
from tests.kit.scenario import SCENARIO

INSTANCE = "10.0.0.150"
LAB = "10.0.1.5"
T0 = "2026-11-20T10:00:"

NXDOMAIN = {
    "__cloud_init_expected_not_found__.",
    "__cloud_init_expected_not_found__.ap-northeast-1.compute.internal.",
    "2.amazon.pool.ntp.org.ap-northeast-1.compute.internal.",
    "ip-10-0-0-150.ap-northeast-1.compute.internal.ap-northeast-1.compute.internal.",
    "does-not-exist.example.com.",
    "example.invalid.",
    "x.compute.internal.compute.internal.",
}
# what the trial's ALERT rule caught: names outside the allowlists of scenario.md §1 step 2
ALERTED = {"yahoo.co.jp.", "instance-data.", "mirrors.fedoraproject.org."} | {
    f"mx{i}.mail.yahoo.co.jp." for i in (1, 2, 3, 5)
}
FLAGGED = {
    "__cloud_init_expected_not_found__": {"probe", "single-label", "nxdomain"},
    "__cloud_init_expected_not_found__.ap-northeast-1.compute.internal": {
        "probe",
        "search-path",
        "nxdomain",
    },
    "2.amazon.pool.ntp.org.ap-northeast-1.compute.internal": {"search-path", "nxdomain"},
    "ip-10-0-0-150.ap-northeast-1.compute.internal.ap-northeast-1.compute.internal": {
        "search-path",
        "nxdomain",
    },
    "does-not-exist.example.com": {"reserved", "nxdomain"},
    "example.invalid": {"reserved", "nxdomain"},
    "instance-data": {"single-label"},
    "x.compute.internal.compute.internal": {"search-path", "nxdomain"},
}


def record(name: str, qtype: str, second: int, *, client: str = INSTANCE, **extra) -> dict:
    rcode = "NXDOMAIN" if name in NXDOMAIN else "NOERROR"
    answers = []
    if rcode == "NOERROR" and qtype == "A":
        answers = [{"Rdata": "192.0.2.10", "Type": "A", "Class": "IN"}]
    line = {
        "version": "1.100000",
        "account_id": "123456789012",
        "region": "ap-northeast-1",
        "vpc_id": "vpc-0123",
        "query_timestamp": f"{T0}{second:02d}Z",
        "query_name": name,
        "query_type": qtype,
        "query_class": "IN",
        "rcode": rcode,
        "answers": answers,
        "srcaddr": client,
        "srcport": "40000",
        "transport": "UDP",
        "srcids": {"instance": "i-0123"},
    }
    if name.lower() in ALERTED:
        line |= {
            "firewall_rule_action": "ALERT",
            "firewall_rule_group_id": "trial",
            "firewall_domain_list_id": "all",
        }
    return line | extra


def scenario_records() -> list[dict]:
    """Each scenario pair twice (second 0-29, then 30-59), plus noise and the lab client."""
    out = []
    for rnd in range(2):
        for i, (name, types) in enumerate(SCENARIO.items()):
            for qtype in types:
                out.append(record(name, qtype, rnd * 30 + i))
    out.append(record("x.compute.internal.compute.internal.", "A", 59))
    out.append(record("MX1.Mail.Yahoo.co.JP.", "A", 59, client=LAB))  # case-folded
    return out


def write_logs(directory: Path) -> Path:
    """Half the lines in a gzip file, half plain, two bad lines, in a directory tree."""
    lines = [json.dumps(r, separators=(",", ":")) for r in scenario_records()]
    half = len(lines) // 2
    (directory / "2026" / "11").mkdir(parents=True)
    with gzip.open(directory / "2026" / "11" / "part-1.log.gz", "wt") as fh:
        fh.write("\n".join(lines[:half]) + "\n")
    plain = directory / "2026" / "11" / "part-2.log"
    plain.write_text("\n".join([lines[half], "not json at all", *lines[half + 1 :], "[1,2]"]))
    return directory


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    return write_logs(tmp_path / "logs")


def run_audit(capsys, *args: str) -> tuple[int, str, str]:
    code = audit.main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def audit_json(capsys, *args: str) -> dict:
    code, out, err = run_audit(capsys, "--format", "json", *args)
    assert code == 0, err
    return json.loads(out)


# --- inventory -------------------------------------------------------------------------


def test_inventory_of_the_scenario(capsys, logs: Path) -> None:
    doc = audit_json(capsys, str(logs))
    names = {n["name"]: n for n in doc["names"]}
    scenario = {k.rstrip("."): v for k, v in SCENARIO.items()}
    assert set(names) == set(scenario) | {"x.compute.internal.compute.internal"}
    assert sum(len(names[n]["types"]) for n in scenario) == 46
    for name, types in scenario.items():
        entry = names[name]
        extra = 1 if name == "mx1.mail.yahoo.co.jp" else 0
        assert entry["types"] == {t: 2 + (extra if t == "A" else 0) for t in types}, name
        assert entry["queries"] == 2 * len(types) + extra
        rcode = "NXDOMAIN" if name + "." in NXDOMAIN else "NOERROR"
        assert entry["rcodes"] == {rcode: entry["queries"]}
        assert entry["sources"] == ([INSTANCE, LAB] if extra else [INSTANCE])
        logged = entry["logged"]
        if name + "." in ALERTED:
            assert logged == [
                {"action": "ALERT", "group": "trial", "list": "all", "queries": entry["queries"]}
            ]
        else:
            assert logged == [
                {"action": None, "group": None, "list": None, "queries": entry["queries"]}
            ]
    gmail = names["gmail.com"]
    assert (gmail["first"], gmail["last"]) == ("2026-11-20T10:00:06Z", "2026-11-20T10:00:36Z")
    summary = doc["summary"]
    assert summary["queries"] == 2 * 46 + 2
    assert summary["names"] == 29 and summary["pairs"] == 47
    assert summary["bad_lines"] == 2
    assert len(summary["files"]) == 2 and summary["files"][0].endswith("part-1.log.gz")
    assert summary["bad_examples"] == [
        f"{logs}/2026/11/part-2.log:2: no JSON object on the line",
        f"{logs}/2026/11/part-2.log:{len(scenario_records()) // 2 + 2}: no JSON object on the line",
    ]


def test_grouping_by_registrable_domain(capsys, logs: Path) -> None:
    doc = audit_json(capsys, str(logs))
    domain = {n["name"]: n["domain"] for n in doc["names"]}
    assert domain["alt3.gmail-smtp-in.l.google.com"] == "google.com"
    assert domain["gmail.com"] == "gmail.com"
    assert domain["mx5.mail.yahoo.co.jp"] == "yahoo.co.jp"
    assert domain["yahoo.co.jp"] == "yahoo.co.jp"
    assert domain["ssm.ap-northeast-1.amazonaws.com"] == "amazonaws.com"
    assert domain["0.amazon.pool.ntp.org"] == "ntp.org"
    # a bucket name under a private public suffix is its owner's, not amazonaws.com's
    bucket = "amazonlinux-2-repos-ap-northeast-1.s3.dualstack.ap-northeast-1.amazonaws.com"
    assert domain[bucket] == bucket
    assert domain["ip-10-0-0-150.ap-northeast-1.compute.internal"] == "compute.internal"
    assert domain["instance-data"] is None
    # sorted by registrable domain (none last), then by labels from the right
    order = [n["name"] for n in doc["names"]]
    assert order.index("gmail-smtp-in.l.google.com") < order.index(
        "alt1.gmail-smtp-in.l.google.com"
    )
    keys = [(d is None, d or "") for d in (n["domain"] for n in doc["names"])]
    assert keys == sorted(keys)
    assert order[-2:] == ["__cloud_init_expected_not_found__", "instance-data"]


def test_noise_is_flagged(capsys, logs: Path) -> None:
    doc = audit_json(capsys, str(logs))
    flags = {n["name"]: {f["kind"] for f in n["flags"]} for n in doc["names"] if n["flags"]}
    assert flags == FLAGGED
    reasons = {n["name"]: [f["reason"] for f in n["flags"]] for n in doc["names"]}
    assert (
        "2.amazon.pool.ntp.org (queried too) with the search domain "
        "ap-northeast-1.compute.internal appended"
    ) in reasons["2.amazon.pool.ntp.org.ap-northeast-1.compute.internal"]
    assert reasons["x.compute.internal.compute.internal"] == [
        "the search domain compute.internal appended twice",
        "every answer was NXDOMAIN: the name does not exist",
    ]


def test_table_output(capsys, logs: Path, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "250")
    code, out, _ = run_audit(capsys, str(logs))
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == [
        "NAME",
        "TYPES",
        "QUERIES",
        "FIRST",
        "LAST",
        "SOURCES",
        "RCODE",
        "LOGGED",
        "NOTE",
    ]
    assert "google.com: 5 names, 10 queries" in lines
    row = next(line for line in lines if line.strip().startswith("gmail.com "))
    assert row.split() == [
        "gmail.com", "A,MX", "4", "2026-11-20", "10:00:06", "2026-11-20", "10:00:36",
        INSTANCE, "NOERROR", "-",
    ]  # fmt: skip
    row = next(line for line in lines if line.strip().startswith("mx1.mail.yahoo.co.jp "))
    assert f"{INSTANCE}, {LAB}" in row and "ALERT trial/all" in row
    row = next(line for line in lines if line.strip().startswith("example.invalid "))
    assert row.split()[-2:] == ["reserved,", "nxdomain"]
    assert "29 names (47 name/type pairs) in 11 groups; 94 queries" in out
    assert "2 bad" in out and "part-2.log:2: no JSON object on the line" in out


@pytest.mark.parametrize("columns", [80, 110, 150])
def test_table_fits_the_terminal(capsys, logs: Path, monkeypatch, columns: int) -> None:
    monkeypatch.setenv("COLUMNS", str(columns))
    code, out, _ = run_audit(capsys, str(logs))
    assert code == 0
    lines = out.splitlines()
    assert all(len(line) <= columns for line in lines), max(lines, key=len)
    header = lines[0].split()
    assert header[:3] == ["NAME", "TYPES", "QUERIES"] and "LOGGED" in header
    # short names are never cut; the longest may be
    assert any(line.startswith("  gmail.com  ") for line in lines)
    assert any(line.startswith("  ec2messages.ap-northeast-1.amazonaws.") for line in lines)


def test_table_without_a_terminal_cuts_nothing(capsys, logs: Path, monkeypatch) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    code, out, _ = run_audit(capsys, str(logs))
    assert code == 0
    assert "…" not in out
    assert out.splitlines()[0].split()[3:5] == ["FIRST", "LAST"]
    bucket = "amazonlinux-2-repos-ap-northeast-1.s3.dualstack.ap-northeast-1.amazonaws.com"
    assert any(line.strip().startswith(bucket + " ") for line in out.splitlines())


def test_csv_output(capsys, logs: Path) -> None:
    code, out, _ = run_audit(capsys, "--format", "csv", str(logs))
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 29
    mx1 = next(r for r in rows if r["name"] == "mx1.mail.yahoo.co.jp")
    assert mx1["domain"] == "yahoo.co.jp" and mx1["queries"] == "3" and mx1["types"] == "A=3"
    assert mx1["sources"] == f"{INSTANCE};{LAB}" and mx1["logged"] == "ALERT trial/all=3"
    gmail = next(r for r in rows if r["name"] == "gmail.com")
    assert gmail["types"] == "A=2;MX=2" and gmail["logged"] == "allowed=4"


# --- time window, bad input, limits ----------------------------------------------------------


def test_time_window(capsys, logs: Path) -> None:
    doc = audit_json(
        capsys, "--since", "2026-11-20T10:00:30Z", "--until", "2026-11-20T10:00:36Z", str(logs)
    )
    # seconds 30..35: the first six scenario names of the second round
    assert [n["name"] for n in doc["names"]] == sorted(
        [k.rstrip(".") for k in list(SCENARIO)[:6]],
        key=lambda n: ("." not in n, Domains().registrable(n), tuple(reversed(n.split(".")))),
    )
    assert doc["summary"]["queries"] == 12
    assert doc["summary"]["outside_window"] == 2 * 46 + 2 - 12
    assert doc["summary"]["since"] == "2026-11-20T10:00:30Z"
    empty = audit_json(capsys, "--since", "2026-11-21", str(logs))
    assert empty["names"] == [] and empty["summary"]["outside_window"] == 94


def test_time_arguments() -> None:
    now = parse_stamp("2026-11-27T12:00:00Z")
    assert parse_time_arg("7d", now) == parse_stamp("2026-11-20T12:00:00Z")
    assert parse_time_arg("24h", now) == parse_stamp("2026-11-26T12:00:00Z")
    assert parse_time_arg("30m", now) == now - 1800
    assert parse_time_arg("2026-11-20") == parse_stamp("2026-11-20T00:00:00+00:00")
    assert parse_time_arg("2026-11-20T19:00:00+09:00") == parse_stamp("2026-11-20T10:00:00Z")
    assert parse_stamp("2021-12-11T22:46:25.177Z") == parse_stamp("2021-12-11T22:46:25Z") + 0.177
    with pytest.raises(ValueError, match="expected ISO 8601"):
        parse_time_arg("yesterday")


def test_bad_arguments(capsys, tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        audit.main(["--since", "soon", str(tmp_path)])
    assert "invalid time 'soon'" in capsys.readouterr().err
    code, _, err = run_audit(capsys, str(tmp_path / "missing"))
    assert code == 1 and "no such file or directory" in err
    code, _, err = run_audit(capsys, "--since", "1h", "--until", "2h", str(tmp_path))
    assert code == 1 and "--since must be before --until" in err
    code, _, err = run_audit(capsys, "--suggest", str(tmp_path / "no" / "list.txt"), str(tmp_path))
    assert code == 1 and "cannot write" in err and "No such file or directory" in err


def test_truncated_gzip_and_prefixed_lines(capsys, tmp_path: Path) -> None:
    lines = [json.dumps(record(f"h{i}.gmail.com.", "A", i % 60)) for i in range(2000)]
    data = gzip.compress(("\n".join(lines) + "\n").encode())
    (tmp_path / "cut.gz").write_bytes(data[: len(data) // 2])  # a log still being written
    # CloudWatch Logs exports put the event time before the JSON object
    (tmp_path / "cw.txt").write_text(f"2026-11-20T10:00:00.000Z {lines[0]}\n\n")
    doc = audit_json(capsys, str(tmp_path))
    summary = doc["summary"]
    assert summary["bad_lines"] == 1
    assert re.fullmatch(
        rf"{tmp_path}/cut\.gz:\d+: read error: Compressed file ended .*",
        summary["bad_examples"][0],
    )
    # what was readable of the cut file, and the line of cw.txt
    assert 2 < len(doc["names"]) < 2000 and doc["summary"]["queries"] == len(doc["names"]) + 1
    assert "h0.gmail.com" in {n["name"] for n in doc["names"]}


def test_high_cardinality_is_bounded_and_flagged(capsys, tmp_path: Path) -> None:
    records = [record(f"{i:08x}.tunnel.example.net.", "TXT", i % 60) for i in range(50)]
    records += [record(f"host{i}.other.org.", "A", 1) for i in range(5)]
    records += [record("gmail.com.", "A", 2)]
    (tmp_path / "log").write_text("\n".join(json.dumps(r) for r in records))
    out = tmp_path / "seen.txt"
    doc = audit_json(
        capsys, "--max-per-domain", "10", "--max-names", "14", "--suggest", str(out), str(tmp_path)
    )
    names = {n["name"]: n for n in doc["names"]}
    assert sum(n.endswith(".tunnel.example.net") for n in names) == 10
    assert all(
        "high-cardinality" in {f["kind"] for f in names[n]["flags"]} for n in names if "tunnel" in n
    )
    # 10 tunnel names + their overflow entry + 3 of other.org reach the 14 entries
    assert sum(n.endswith(".other.org") for n in names) == 3 and "gmail.com" not in names
    assert doc["overflow"] == [
        {"domain": None, "queries": 3},  # two of other.org and gmail.com: nothing left
        {"domain": "example.net", "queries": 40},
    ]
    listed = DomainList.from_lines(out.read_text().splitlines())[0]
    assert not listed.matches(text_to_wire("00000001.tunnel.example.net"))
    assert listed.matches(text_to_wire("host0.other.org"))
    assert "# *.example.net" in out.read_text()


# --- suggested list --------------------------------------------------------------------------


def entries_of(text: str) -> list[str]:
    return [line.split("#")[0].strip() for line in text.splitlines() if line.split("#")[0].strip()]


def test_suggested_list(capsys, logs: Path, tmp_path: Path) -> None:
    path = tmp_path / "seen.txt"
    code, _, err = run_audit(capsys, "--format", "json", "--suggest", str(path), str(logs))
    assert code == 0
    assert f"wrote {path}: 13 entries (3 wildcards, 0 CNAME/DNAME targets), 8 flagged" in err
    text = path.read_text()
    lines = text.splitlines()
    wildcard = next(line for line in lines if line.startswith("*.mail.yahoo.co.jp"))
    assert "4 names seen below (mx1, mx2, mx3, mx5)" in wildcard and "logged ALERT 9" in wildcard
    assert (
        "# not *.ap-northeast-1.amazonaws.com: *.ap-northeast-1.amazonaws.com would cover the "
        "public suffix"
    ) in text
    assert any(
        line.startswith("# example.invalid ") and "reserved TLD .invalid" in line for line in lines
    )
    # every name seen and not flagged is allowed by the list; no flagged name is
    listed = DomainList.from_lines(lines, file=str(path))[0]
    for name in SCENARIO:
        bare = name.rstrip(".")
        assert listed.matches(text_to_wire(bare)) == (bare not in FLAGGED), bare


def test_suggested_list_is_exactly_this(capsys, logs: Path, tmp_path: Path) -> None:
    path = tmp_path / "seen.txt"
    run_audit(capsys, "--format", "csv", "--suggest", str(path), str(logs))
    assert sorted(entries_of(path.read_text())) == sorted(
        [
            "*.gmail-smtp-in.l.google.com",
            "gmail-smtp-in.l.google.com",
            "gmail.com",
            "*.mail.yahoo.co.jp",
            "yahoo.co.jp",
            "*.amazon.pool.ntp.org",
            "mirrors.fedoraproject.org",
            "amazonlinux-2-repos-ap-northeast-1.s3.dualstack.ap-northeast-1.amazonaws.com",
            "ssm.ap-northeast-1.amazonaws.com",
            "ssmmessages.ap-northeast-1.amazonaws.com",
            "ec2messages.ap-northeast-1.amazonaws.com",
            "logs.ap-northeast-1.amazonaws.com",
            "ip-10-0-0-150.ap-northeast-1.compute.internal",
        ]
    )
    # without wildcards, every name is listed as it is
    run_audit(capsys, "--format", "csv", "--wildcard-min", "0", "--suggest", str(path), str(logs))
    assert len(entries_of(path.read_text())) == 28 - len(FLAGGED) + 1  # x.compute... is extra


def test_suggested_list_passes_dnsfw_check(capsys, logs: Path, tmp_path: Path) -> None:
    path = tmp_path / "seen.txt"
    run_audit(capsys, "--format", "json", "--suggest", str(path), str(logs))
    corefile = tmp_path / "Corefile"
    corefile.write_text(
        ".:53 {\n    firewall {\n"
        f"        list seen file {path}\n"
        "        group g 100 {\n            rule r 100 ALLOW seen\n        }\n"
        "    }\n    whoami\n}\n"
    )
    result = run_cli("check", "-conf", str(corefile))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith(": OK")


# the answers of a trial against a recursive resolver: CNAME and DNAME chains
CHAINS: list[tuple[str, str, str, tuple[tuple[str, str], ...]]] = [
    # (query name, type, rcode, answers as (Rdata, Type))
    ("mirrors.fedoraproject.org.", "A", "NOERROR",
     (("wildcard.fedoraproject.org.", "CNAME"), ("38.145.60.21", "A"))),
    ("mirrors.fedoraproject.org.", "AAAA", "NOERROR",
     (("wildcard.fedoraproject.org.", "CNAME"), ("2600:2701:4000:5211::fed3", "AAAA"))),
    ("amazonlinux-2-repos-ap-northeast-1.s3.dualstack.ap-northeast-1.amazonaws.com.", "A",
     "NOERROR", (("s3-r-w.dualstack.ap-northeast-1.amazonaws.com.", "CNAME"),
                 ("52.219.16.50", "A"))),
    # *.google.com is suggested (3 labels seen below it): it covers www3.l.google.com
    ("www.google.com.", "A", "NOERROR", (("www3.l.google.com.", "CNAME"), ("142.250.207.4", "A"))),
    ("mail.google.com.", "A", "NOERROR", (("142.250.196.5", "A"),)),
    ("docs.google.com.", "A", "NOERROR", (("142.250.196.6", "A"),)),
    # two names, one target, listed once; a chain of two hops lists both targets
    ("img.acme.io.", "A", "NOERROR",
     (("acme.edge-cdn.net.", "CNAME"), ("e1.edge-cdn.net.", "CNAME"), ("203.0.113.1", "A"))),
    ("js.acme.io.", "A", "NOERROR", (("acme.edge-cdn.net.", "CNAME"), ("203.0.113.1", "A"))),
    # a DNAME: its own target and the synthesised CNAME's
    ("x.old-brand.io.", "A", "NOERROR",
     (("new-brand.io.", "DNAME"), ("x.new-brand.io.", "CNAME"), ("203.0.113.2", "A"))),
    # a flagged name (every answer NXDOMAIN) brings no target
    ("dangling.acme.io.", "A", "NXDOMAIN", (("gone.elsewhere.io.", "CNAME"),)),
]  # fmt: skip
# more targets than a name keeps: a CDN rotating its edge names
ROTATING = [(f"e{i}.rotating-cdn.net.", "CNAME") for i in range(20)]


def chain_log(directory: Path) -> Path:
    lines = []
    for i, (name, qtype, rcode, answers) in enumerate(CHAINS):
        rows = [{"Rdata": r, "Type": t, "Class": "IN"} for r, t in answers]
        lines.append(record(name, qtype, i, rcode=rcode, answers=rows))
    for i, answer in enumerate(ROTATING):
        rows = [{"Rdata": answer[0], "Type": "CNAME", "Class": "IN"}]
        lines.append(record("video.stream-shop.io.", "A", i, answers=rows))
    path = directory / "chains.log"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def test_suggested_list_allows_the_chain_targets_after_the_names_that_led_to_them(
    capsys, tmp_path: Path
) -> None:
    path = tmp_path / "seen.txt"
    code, _, err = run_audit(capsys, "--suggest", str(path), str(chain_log(tmp_path)))
    assert code == 0
    assert "CNAME/DNAME targets), 1 flagged" in err
    lines = [re.sub(r"\s+", " ", line) for line in path.read_text().splitlines()]

    def after(entry: str) -> list[str]:
        """The lines that follow ``entry``'s line, up to the next entry of another kind."""
        at = next(i for i, line in enumerate(lines) if line.startswith(entry + " "))
        return lines[at + 1 : at + 4]

    assert after("mirrors.fedoraproject.org")[0] == (
        "wildcard.fedoraproject.org # CNAME/DNAME target in the answers for "
        "mirrors.fedoraproject.org"
    )
    assert after("amazonlinux-2-repos-ap-northeast-1.s3.dualstack.ap-northeast-1.amazonaws.com")[
        0
    ].startswith("s3-r-w.dualstack.ap-northeast-1.amazonaws.com # CNAME/DNAME target")
    assert after("img.acme.io")[:2] == [
        "acme.edge-cdn.net # CNAME/DNAME target in the answers for img.acme.io, js.acme.io",
        "e1.edge-cdn.net # CNAME/DNAME target in the answers for img.acme.io",
    ]
    assert after("x.old-brand.io")[:2] == [
        "new-brand.io # CNAME/DNAME target in the answers for x.old-brand.io",
        "x.new-brand.io # CNAME/DNAME target in the answers for x.old-brand.io",
    ]
    assert after("video.stream-shop.io")[0] == (
        "# video.stream-shop.io had more than 16 distinct CNAME/DNAME targets (a CDN?): only "
        "those seen are listed; consider `redirection trust` on a rule of its own for it"
    )
    entries = entries_of(path.read_text())
    assert "*.google.com" in entries and "www3.l.google.com" not in entries  # covered
    assert "gone.elsewhere.io" not in entries  # its name is flagged, not allowed
    assert entries.count("acme.edge-cdn.net") == 1
    # every name allowed and every target in its answers is allowed by the list
    listed = DomainList.from_lines(path.read_text().splitlines(), file=str(path))[0]
    for name, _, rcode, answers in CHAINS:
        if rcode == "NOERROR":
            for needed in (name, *(r for r, t in answers if t in ("CNAME", "DNAME"))):
                assert listed.matches(text_to_wire(needed)), needed
    assert sum(listed.matches(text_to_wire(r)) for r, _ in ROTATING) == 16


# --- policy ----------------------------------------------------------------------------------

POLICY = """\
.:53 {
    firewall {
        list google   domains gmail.com *.google.com
        list aws      domains *.amazonaws.com *.amazon.pool.ntp.org
        list internal domains *.compute.internal __cloud_init_expected_not_found__ does-not-exist.example.com example.invalid
        list external domains *.fedoraproject.org
        list yahoo    domains yahoo.co.jp *.yahoo.co.jp
        list all      domains *
        group lab 50 {
            clients 10.0.1.0/24
            rule block-yahoo 10 BLOCK yahoo
        }
        group trial 101 {
            rule allow-google   100 ALLOW google redirection trust
            rule allow-aws      110 ALLOW aws
            rule allow-internal 120 ALLOW internal
            rule allow-external 130 ALLOW external
            rule alert-rest     900 ALERT all
        }
    }
    whoami
}
"""


def test_policy_diff(capsys, logs: Path, tmp_path: Path) -> None:
    corefile = tmp_path / "Corefile"
    corefile.write_text(POLICY)
    doc = audit_json(capsys, "--policy", str(corefile), str(logs))
    policy = doc["policy"]
    assert policy["firewalls"] == [f"{corefile}:2"]
    breaking = {c["name"]: c for c in policy["alert_to_block"]}
    # the trial's ALERT rule still decides the Yahoo names and instance-data; for the
    # instance, not for the lab client whose group blocks Yahoo now
    assert set(breaking) == {
        "yahoo.co.jp",
        "mx1.mail.yahoo.co.jp",
        "mx2.mail.yahoo.co.jp",
        "mx3.mail.yahoo.co.jp",
        "mx5.mail.yahoo.co.jp",
        "instance-data",
    }
    mx1 = breaking["mx1.mail.yahoo.co.jp"]
    assert mx1["clients"] == [INSTANCE] and mx1["queries"] == 2 and mx1["types"] == ["A"]
    assert mx1["now"] == {
        "action": "ALERT",
        "group": "trial",
        "rule": "alert-rest",
        "list": "all",
        "via": None,
    }
    changed = {(c["name"], c["logged"], c["now_verdict"]): c for c in policy["changed"]}
    # External-Service was added after the trial: fedora is allowed now; the lab group is new
    assert set(changed) == {
        ("mirrors.fedoraproject.org", "ALERT", "allowed"),
        ("mx1.mail.yahoo.co.jp", "ALERT", "BLOCK"),
    }
    lab = changed[("mx1.mail.yahoo.co.jp", "ALERT", "BLOCK")]
    assert lab["clients"] == [LAB] and lab["now"]["rule"] == "block-yahoo"
    fedora = changed[("mirrors.fedoraproject.org", "ALERT", "allowed")]
    assert fedora["now"]["rule"] == "allow-external" and fedora["queries"] == 4


def test_policy_table(capsys, logs: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    corefile = tmp_path / "Corefile"
    corefile.write_text(POLICY)
    code, out, err = run_audit(capsys, "--policy", str(corefile), str(logs))
    assert code == 0, err
    assert "If ALERT rules became BLOCK, these queries would fail (6 names):" in out
    assert "Decided differently now than the log recorded" in out
    row = next(
        line for line in out.splitlines() if line.strip().startswith("mirrors.fedoraproject.org")
    )
    assert "ALLOW trial/allow-external" in row


def test_policy_follows_cname_targets(capsys, tmp_path: Path) -> None:
    corefile = tmp_path / "Corefile"
    corefile.write_text(
        ".:53 {\n    firewall {\n        list cdn domains *.cdn.example.net\n"
        "        group g 10 {\n            rule alert-cdn 10 ALERT cdn\n        }\n"
        "    }\n    whoami\n}\n"
    )
    answers = [
        {"Rdata": "edge.cdn.example.net.", "Type": "CNAME", "Class": "IN"},
        {"Rdata": "192.0.2.1", "Type": "A", "Class": "IN"},
    ]
    (tmp_path / "log").write_text(
        json.dumps(record("www.shop.example.org.", "A", 1, answers=answers))
    )
    doc = audit_json(capsys, "--policy", str(corefile), str(tmp_path / "log"))
    (change,) = doc["policy"]["alert_to_block"]
    assert change["name"] == "www.shop.example.org"
    assert change["now"]["via"] == "edge.cdn.example.net"


def test_policy_errors(capsys, logs: Path, tmp_path: Path) -> None:
    corefile = tmp_path / "Corefile"
    corefile.write_text(".:53 {\n    whoami\n}\n")
    code, _, err = run_audit(capsys, "--policy", str(corefile), str(logs))
    assert code == 1 and "has no firewall" in err
    corefile.write_text(".:53 {\n    firewall {\n        bogus\n    }\n}\n")
    code, _, err = run_audit(capsys, "--policy", str(corefile), str(logs))
    assert code == 1 and "Corefile:3" in err


# --- the command -----------------------------------------------------------------------------


def test_dnsfw_audit_command(logs: Path) -> None:
    result = run_cli("audit", "--format", "json", str(logs))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["summary"]["names"] == 29
    assert "2 bad lines" in result.stderr


def test_inventory_api_directly(tmp_path: Path) -> None:
    domains = Domains()
    inv = Inventory(
        domains.registrable, window=TimeWindow(since=parse_stamp("2026-11-20T10:00:30Z"))
    )
    inv.read([str(write_logs(tmp_path / "l"))])
    assert len(inv.names) == 29 and inv.outside == 46
    result = suggest(inv, domains, flag_names(inv), 3)
    assert {e.text for e in result.allowed if e.kind == "wildcard"} == {
        "*.gmail-smtp-in.l.google.com",
        "*.mail.yahoo.co.jp",
        "*.amazon.pool.ntp.org",
    }


def test_gzip_on_standard_input(capsys, monkeypatch) -> None:
    data = gzip.compress(
        "\n".join(json.dumps(record("gmail.com.", t, 1)) for t in ("A", "MX")).encode()
    )
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BufferedReader(io.BytesIO(data))))
    doc = audit_json(capsys, "-")
    assert doc["summary"]["files"] == ["<stdin>"]
    assert [(n["name"], n["types"]) for n in doc["names"]] == [("gmail.com", {"A": 1, "MX": 1})]


def test_policy_with_zones_and_two_firewalls(capsys, tmp_path: Path) -> None:
    corefile = tmp_path / "Corefile"
    corefile.write_text(
        "corp.example:53 {\n    firewall {\n        list all domains *\n"
        "        group g 10 {\n            rule block-all 10 BLOCK all\n        }\n    }\n"
        "    whoami\n}\n"
        ".:53 {\n    firewall example.org {\n        list all domains *\n"
        "        group g 10 {\n            rule alert-all 10 ALERT all\n        }\n    }\n"
        "    whoami\n}\n"
    )
    log = tmp_path / "log"
    log.write_text(
        "\n".join(json.dumps(record(n, "A", 1)) for n in ("db.corp.example.", "www.example.org."))
    )
    doc = audit_json(capsys, "--policy", str(corefile), str(log))
    policy = doc["policy"]
    assert policy["firewalls"] == [f"{corefile}:2", f"{corefile}:11"]
    # each firewall filters only its zones: the first blocks corp.example, the second alerts
    # on example.org; a name outside a firewall's zones is not filtered by it
    assert [(c["name"], c["firewall"]) for c in policy["alert_to_block"]] == [
        ("www.example.org", 2)
    ]
    assert [(c["name"], c["firewall"], c["now_verdict"]) for c in policy["changed"]] == [
        ("db.corp.example", 1, "BLOCK"),
        ("www.example.org", 2, "ALERT"),
    ]
