"""Route 53 query logs from dnsfw, read the way the scenario read Route 53's (docs/scenario.md
§1): a table with the Athena columns over the JSON lines, and the report's three queries.
DuckDB stands in for Athena with the OpenX JSON SerDe: typed columns, ``srcport`` read as INT
from Route 53's string."""

from __future__ import annotations

import signal

import duckdb

from tests.kit.corefiles import ROUTE53_LOG, SCENARIO_FIREWALL, corefile

# docs/scenario.md §1, step 1: the 46 (name, type) pairs over 28 names
SCENARIO_QUERIES: list[tuple[str, str]] = [
    (name, rdtype)
    for names, types in [
        (
            [
                "__cloud_init_expected_not_found__.",
                "__cloud_init_expected_not_found__.ap-northeast-1.compute.internal.",
                "0.amazon.pool.ntp.org.",
                "1.amazon.pool.ntp.org.",
                "2.amazon.pool.ntp.org.",
                "2.amazon.pool.ntp.org.ap-northeast-1.compute.internal.",
                "amazonlinux-2-repos-ap-northeast-1.s3.dualstack.ap-northeast-1.amazonaws.com.",
                "mirrors.fedoraproject.org.",
                "ssm.ap-northeast-1.amazonaws.com.",
                "ssmmessages.ap-northeast-1.amazonaws.com.",
                "ec2messages.ap-northeast-1.amazonaws.com.",
                "logs.ap-northeast-1.amazonaws.com.",
                "instance-data.",
                "ip-10-0-0-150.ap-northeast-1.compute.internal.",
                "ip-10-0-0-150.ap-northeast-1.compute.internal.ap-northeast-1.compute.internal.",
                "does-not-exist.example.com.",
                "example.invalid.",
            ],
            ["A", "AAAA"],
        ),
        (["gmail.com."], ["A", "MX"]),
        (["yahoo.co.jp."], ["MX"]),
        (
            [
                "gmail-smtp-in.l.google.com.",
                "alt1.gmail-smtp-in.l.google.com.",
                "alt2.gmail-smtp-in.l.google.com.",
                "alt3.gmail-smtp-in.l.google.com.",
                "alt4.gmail-smtp-in.l.google.com.",
                "mx1.mail.yahoo.co.jp.",
                "mx2.mail.yahoo.co.jp.",
                "mx3.mail.yahoo.co.jp.",
                "mx5.mail.yahoo.co.jp.",
            ],
            ["A"],
        ),
    ]
    for name in names
    for rdtype in types
]

ATHENA_COLUMNS = {
    "version": "VARCHAR",
    "account_id": "VARCHAR",
    "region": "VARCHAR",
    "vpc_id": "VARCHAR",
    "query_timestamp": "VARCHAR",
    "query_name": "VARCHAR",
    "query_type": "VARCHAR",
    "query_class": "VARCHAR",
    "rcode": "VARCHAR",
    "answers": "STRUCT(Rdata VARCHAR, Type VARCHAR, Class VARCHAR)[]",
    "srcaddr": "VARCHAR",
    "srcport": "INTEGER",
    "transport": "VARCHAR",
    "srcids": "STRUCT(instance VARCHAR, resolver_endpoint VARCHAR)",
    "firewall_rule_action": "VARCHAR",
    "firewall_rule_group_id": "VARCHAR",
    "firewall_domain_list_id": "VARCHAR",
}

PROBE = "ready.probe.invalid."  # the fixture's readiness query, logged like any other


def load(path: str) -> duckdb.DuckDBPyConnection:
    db = duckdb.connect()
    db.execute(
        "CREATE TABLE dns_query_logs AS SELECT * FROM read_json(?, format = 'newline_delimited', "
        f"columns = {ATHENA_COLUMNS!r})",
        [path],
    )
    db.execute(f"DELETE FROM dns_query_logs WHERE query_name = '{PROBE}'")
    return db


def test_scenario_queries_over_the_route53_log(dnsfw, upstream, tmp_path):
    path = tmp_path / "r53.log"
    d = dnsfw(
        corefile(
            ROUTE53_LOG,
            OUTPUT=path,
            OPTIONS="account_id 123456789012\nregion ap-northeast-1\nvpc_id vpc-0scenario",
            PLUGINS=SCENARIO_FIREWALL + "\ncache",
            UPSTREAM=upstream.address,
        )
    )
    for name, rdtype in SCENARIO_QUERIES:
        d.query(name, rdtype)
    for name, rdtype in SCENARIO_QUERIES[:10]:  # again: cache hits are logged too
        d.query(name, rdtype)
    d.signal(signal.SIGTERM)
    assert d.proc.wait(15) == 0
    db = load(str(path))

    assert db.execute("SELECT count(*) FROM dns_query_logs").fetchone() == (56,)
    described = dict(
        db.execute("SELECT column_name, column_type FROM (DESCRIBE dns_query_logs)").fetchall()
    )
    assert described["srcport"] == "INTEGER"
    assert described["answers"] == 'STRUCT(Rdata VARCHAR, "Type" VARCHAR, "Class" VARCHAR)[]'

    # 1. distinct names and types
    distinct = db.execute(
        "SELECT DISTINCT query_name, query_type FROM dns_query_logs ORDER BY 1, 2"
    ).fetchall()
    assert distinct == sorted(SCENARIO_QUERIES)
    assert len(distinct) == 46
    assert db.execute("SELECT count(DISTINCT query_name) FROM dns_query_logs").fetchone() == (28,)

    # 2. BLOCK rows by time: the Yahoo names (and instance-data., which no allow list covers)
    blocked = db.execute(
        "SELECT query_timestamp, query_name, query_type, rcode, len(answers), "
        "firewall_rule_group_id, firewall_domain_list_id FROM dns_query_logs "
        "WHERE firewall_rule_action = 'BLOCK' ORDER BY query_timestamp"
    ).fetchall()
    assert sorted((row[1], row[2]) for row in blocked) == sorted(
        [
            ("yahoo.co.jp.", "MX"),
            ("mx1.mail.yahoo.co.jp.", "A"),
            ("mx2.mail.yahoo.co.jp.", "A"),
            ("mx3.mail.yahoo.co.jp.", "A"),
            ("mx5.mail.yahoo.co.jp.", "A"),
            ("instance-data.", "A"),
            ("instance-data.", "AAAA"),
        ]
    )
    assert {row[3:] for row in blocked} == {("NOERROR", 0, "Scenario", "All-Domains")}
    assert [row[0] for row in blocked] == sorted(row[0] for row in blocked)
    assert db.execute(
        "SELECT count(*) FROM dns_query_logs WHERE firewall_rule_action IS NOT NULL "
        "AND firewall_rule_action <> 'BLOCK'"
    ).fetchone() == (0,)  # allowed queries carry no firewall fields

    # 3. the Google/Gmail names with their answers
    google = db.execute(
        "SELECT query_name, query_type, a.Rdata, a.Type FROM dns_query_logs, "
        "unnest(answers) AS t(a) WHERE query_name LIKE '%gmail%' OR query_name LIKE '%google%' "
        "GROUP BY ALL ORDER BY 1, 2, 3"
    ).fetchall()
    assert google == [
        ("alt1.gmail-smtp-in.l.google.com.", "A", "142.250.141.26", "A"),
        ("alt2.gmail-smtp-in.l.google.com.", "A", "64.233.171.26", "A"),
        ("alt3.gmail-smtp-in.l.google.com.", "A", "142.250.152.26", "A"),
        ("alt4.gmail-smtp-in.l.google.com.", "A", "74.125.126.26", "A"),
        ("gmail-smtp-in.l.google.com.", "A", "142.250.157.26", "A"),
        ("gmail.com.", "A", "142.250.196.101", "A"),
        ("gmail.com.", "MX", "10 alt1.gmail-smtp-in.l.google.com.", "MX"),
        ("gmail.com.", "MX", "20 alt2.gmail-smtp-in.l.google.com.", "MX"),
        ("gmail.com.", "MX", "30 alt3.gmail-smtp-in.l.google.com.", "MX"),
        ("gmail.com.", "MX", "40 alt4.gmail-smtp-in.l.google.com.", "MX"),
        ("gmail.com.", "MX", "5 gmail-smtp-in.l.google.com.", "MX"),
    ]

    # the other columns, as Athena would type them
    row = db.execute(
        "SELECT DISTINCT version, account_id, region, vpc_id, query_class, srcaddr, transport, "
        "srcids.instance, srcids.resolver_endpoint FROM dns_query_logs"
    ).fetchall()
    assert row == [
        (
            "1.100000",
            "123456789012",
            "ap-northeast-1",
            "vpc-0scenario",
            "IN",
            "127.0.0.1",
            "UDP",
            None,
            None,
        )
    ]
    assert db.execute(
        "SELECT min(srcport) > 0, count(*) FILTER (WHERE CAST(query_timestamp AS TIMESTAMP) IS NULL) "
        "FROM dns_query_logs"
    ).fetchone() == (True, 0)
    nxdomain = db.execute(
        "SELECT DISTINCT query_name FROM dns_query_logs WHERE rcode = 'NXDOMAIN' ORDER BY 1"
    ).fetchall()
    assert ("does-not-exist.example.com.",) in nxdomain
