"""The round trip of issue 15: ``dnsfw aws import`` of ``dnsfw aws export`` decides every
query as the original Corefile does (each export format: AWS CLI input run into the list-*
output AWS would print, CloudFormation, Terraform), over a corpus of the seed's names, AWS's
threat-list test names and random names under each list entry, several query types and
clients, decided as ``dnsfw explain`` decides; and the AWS examples survive import -> explain
-> export field by field. What cannot be carried is asserted to be reported."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from commands.aws import export, model
from tests.kit import aws
from tests.kit.corpus import decide
from tests.kit.dnsfw import run_cli
from tests.kit.scenario import SCENARIO

VPC = "vpc-0abc1234"
# AWS's published test names for its managed threat lists (route53-dns-firewall.md §9)
THREAT_NAMES = [
    f"controldomain{n}.{kind}.firewall.route53resolver.us-east-1.amazonaws.com."
    for kind in ("malwarelist", "botnetlist", "aggregatelist")
    for n in (1, 2, 3)
]
LISTS = {
    "Google": ["gmail.com", "*.google.com"],
    "AWS": ["*.amazonaws.com", "*.amazon.pool.ntp.org"],
    "EC2-Internal": [
        "*.compute.internal",
        "__cloud_init_expected_not_found__",
        "does-not-exist.example.com",
        "example.invalid",
    ],
    "Threats": [
        "controldomain1.malwarelist.firewall.route53resolver.us-east-1.amazonaws.com",
        "*.botnetlist.firewall.route53resolver.us-east-1.amazonaws.com",
    ],
    "Ads": ["ads.example", "*.tracker.example"],
    "All-Domains": ["*"],
}
# the seed's allowlist (field report 1) behind a threat group: every option Route 53 has
FIREWALL = """\
. {
    firewall {
LISTS
        group Threat 100 {
            rule block-threats 10 BLOCK Threats response nxdomain
            rule https-ads 15 ALERT Ads qtype HTTPS
            rule walled-ads 20 BLOCK Ads response override walled.example.com ttl 300
        }
        group Scenario 200 {
            rule allow-google 1 ALLOW Google redirection trust
            rule allow-aws 2 ALLOW AWS
            rule allow-ec2 3 ALLOW EC2-Internal
            rule mx-all 50 ALERT All-Domains qtype MX
            rule block-all 100 BLOCK All-Domains response nodata
        }
    }
    forward . 127.0.0.1:9
}
"""
QTYPES = ("A", "AAAA", "MX", "TXT", "HTTPS")
CLIENTS = ("127.0.0.1", "10.0.0.150", "2001:db8::5")


def corefile(tmp_path: Path) -> Path:
    lists = "\n".join(f"        list {n} domains {' '.join(e)}" for n, e in LISTS.items())
    conf = tmp_path / "Corefile"
    conf.write_text(FIREWALL.replace("LISTS", lists))
    return conf


def corpus() -> list[tuple[str, str]]:
    """The seed's 46 queries, the threat-list names, and for each list entry the name itself,
    its parent, and random names one and two labels under it (a wildcard's subdomains), in
    several types."""
    rng = random.Random(15)

    def label() -> str:
        return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(8))

    names = set(THREAT_NAMES)
    for entries in LISTS.values():
        for entry in entries:
            base = entry.removeprefix("*").removeprefix(".")  # '*' alone: the root
            for _ in range(2):
                names |= {".".join(filter(None, (label(), base))) + "."}
                names |= {".".join(filter(None, (label(), label(), base))) + "."}
            if base:
                names |= {f"{base}.", f"{base.split('.', 1)[-1]}."}
    queries = {(name, t) for name, types in SCENARIO.items() for t in types}
    queries |= {(name, t) for name in names for t in QTYPES}
    return sorted(queries)


def run_import(out: Path, *sources: Path) -> str:
    done = run_cli("aws", "import", "--out", str(out), *map(str, sources))
    assert done.returncode == 0, done.stderr
    return done.stderr


def exported(conf: Path, fmt: str, out: Path) -> list[Path]:
    """The export in ``fmt``, as the sources ``dnsfw aws import`` reads back."""
    assert export.main(["-conf", str(conf), "--format", fmt, "--vpc", VPC, "--out", str(out)]) == 0
    if fmt == "cloudformation":
        return [out / "firewall.template.json"]
    if fmt == "terraform":
        return [out / "main.tf"]
    inputs = {p.name: json.loads(p.read_text()) for p in sorted(out.glob("0*.json"))}
    return [aws.write_setup(out / "aws", aws.applied(inputs, VPC))]


@pytest.mark.parametrize("fmt", export.FORMATS)
def test_import_of_the_export_decides_every_query_as_the_corefile(tmp_path, fmt, capsys):
    conf = corefile(tmp_path)
    sources = exported(conf, fmt, tmp_path / fmt)
    assert capsys.readouterr().err == ""  # nothing in this Corefile is lost on the way out
    stderr = run_import(tmp_path / "imported", *sources)
    assert "commented out" not in stderr
    queries = corpus()
    assert len(queries) > 400
    for client in CLIENTS:
        original = decide(conf, queries, client)
        back = decide(tmp_path / "imported" / "Corefile", queries, client)
        differ = {q: (original[q], back[q]) for q in queries if original[q] != back[q]}
        assert differ == {}, (fmt, client)
    actions = {o.action for o in original.values()}
    assert actions == {"ALLOW", "ALERT", "BLOCK"}  # the corpus reaches every kind of rule
    answers = {o.answer for o in original.values() if o.action == "BLOCK"}
    assert len(answers) == 3  # NXDOMAIN, NODATA and the CNAME override
    assert (
        original[("ftp.tracker.example." if False else "ads.example.", "HTTPS")].action == "ALERT"
    )


# the fields a rule on a domain list carries (its IDs and name are compared apart)
IDS = ("FirewallRuleGroupId", "FirewallDomainListId", "Name")
ADVANCED = ("FirewallThreatProtectionId", "DnsThreatProtection", "ConfidenceThreshold")
FIELDS = [f for f in model.RULE_FIELDS if f not in (*IDS, *ADVANCED, "FirewallRuleType")]


def dnsfw_name(aws_name: str) -> str:
    """The import's renaming (dnsfw names: letters, digits, '-', '_')."""
    return "-".join(
        filter(None, "".join(c if c.isalnum() or c in "-_" else " " for c in aws_name).split())
    )


def test_the_aws_examples_survive_import_explain_export_field_by_field(
    tmp_path, monkeypatch, capsys
):
    """tests/kit/aws.py's account (the AWS CLI's output: pagination, managed lists, OVERRIDE,
    Qtype, TRUST, an Advanced rule) -> import -> explain -> export -> the same rules, field
    by field; what does not come back is reported on the way."""
    docs = aws.setup()
    no_feed = tmp_path / "feeds.json"  # managed lists with no stand-in: commented out
    no_feed.write_text(json.dumps(dict.fromkeys(model.MANAGED_LISTS)))
    imported = tmp_path / "imported"
    report = run_import(imported, aws.write_setup(tmp_path / "aws", docs), "--feeds", no_feed)
    conf = imported / "Corefile"
    decided = decide(
        conf, [("ads.example.", "A"), ("yahoo.co.jp.", "MX"), ("www.google.com.", "A")]
    )
    assert decided[("ads.example.", "A")].rule == "override-ads"
    assert decided[("yahoo.co.jp.", "MX")].action == "ALERT"
    assert decided[("www.google.com.", "A")].action == "ALLOW"
    out = tmp_path / "out"
    code = export.main(["-conf", str(conf), "--format", "cli", "--vpc", VPC, "--out", str(out)])
    assert code == 0
    inputs = {p.name: json.loads(p.read_text()) for p in sorted(out.glob("0*.json"))}
    back = {
        (body["FirewallRuleGroupId"], body["Name"]): body
        for name, body in inputs.items()
        if "-create-firewall-rule." in name
    }
    group_names = {
        g["Id"]: g["Name"] for g in docs["list-firewall-rule-groups.json"]["FirewallRuleGroups"]
    }
    list_names = {
        d["Id"]: d["Name"] for d in docs["list-firewall-domain-lists.json"]["FirewallDomainLists"]
    }
    domains: dict[str, list[str]] = {}
    for name, doc in docs.items():
        if name.startswith("list-firewall-domains."):
            domains.setdefault(name.split(".")[1], []).extend(doc["Domains"])
    exported_domains: dict[str, list[str]] = {}
    for name, body in inputs.items():
        if "-update-firewall-domains." in name:
            exported_domains.setdefault(body["FirewallDomainListId"], []).extend(body["Domains"])
    compared = 0
    for name, doc in docs.items():
        if not name.startswith("list-firewall-rules."):
            continue
        for rule in doc["FirewallRules"]:
            group = dnsfw_name(group_names[rule["FirewallRuleGroupId"]])
            key = (f"@group:{group}@", dnsfw_name(rule["Name"]))
            if rule.get("DnsThreatProtection"):
                assert key not in back
                assert f"Advanced rule '{rule['Name']}'" in report  # reported, not dropped
                continue
            list_name = list_names[rule["FirewallDomainListId"]]
            if list_name in model.MANAGED_LISTS:
                assert key not in back
                assert f"rule '{rule['Name']}' commented out" in report
                continue
            compared += 1
            mine = back[key]
            assert {f: mine.get(f) for f in FIELDS} == {f: rule.get(f) for f in FIELDS}, key
            assert mine["FirewallDomainListId"] == f"@list:{dnsfw_name(list_name)}@"
            # the names the import had to change are kept as comments by the AWS name
            assert (
                f"# rule '{rule['Name']}' on list '{list_name}'"
                in conf.with_name("firewall.conf").read_text()
            )
            got = exported_domains[mine["FirewallDomainListId"]]
            assert sorted(got) == sorted(domains[rule["FirewallDomainListId"]])
    assert compared == 5
    associations = docs["list-firewall-rule-group-associations.json"][
        "FirewallRuleGroupAssociations"
    ]
    priorities = {
        dnsfw_name(group_names[a["FirewallRuleGroupId"]]): a["Priority"] for a in associations
    }
    back_priorities = {
        body["Name"]: body["Priority"]
        for name, body in inputs.items()
        if "-associate-firewall-rule-group." in name
    }
    assert back_priorities == priorities


def test_what_route53_cannot_carry_is_reported_and_the_rest_decides_alike(tmp_path, capsys):
    """A group for some clients and a sinkhole address have no Route 53 form: export says so,
    and the import of what was exported decides every other query as the Corefile."""
    conf = corefile(tmp_path)
    text = (
        conf.read_text()
        .replace(
            "        group Scenario 200 {",
            "        group Lab 150 {\n            clients 10.0.0.0/24\n"
            "            rule lab-block 1 BLOCK Google response nxdomain\n        }\n"
            "        group Scenario 200 {",
        )
        .replace("response override walled.example.com ttl 300", "response override 192.0.2.1")
    )
    conf.write_text(text)
    sources = exported(conf, "terraform", tmp_path / "tf")
    notes = capsys.readouterr().err
    assert "group 'Lab' applies only to clients 10.0.0.0/24" in notes
    assert "rule 'walled-ads': response override 192.0.2.1 (a sinkhole address)" in notes
    run_import(tmp_path / "imported", *sources)
    queries = corpus()
    back = decide(tmp_path / "imported" / "Corefile", queries, "127.0.0.1")
    original = decide(conf, queries, "127.0.0.1")
    differ = {q for q in queries if original[q] != back[q]}
    # only the sinkhole's answers differ (exported as NODATA, as reported)
    assert differ and all(original[q].rule == "walled-ads" for q in differ)
    assert all(back[q].answer.startswith("NOERROR, no answer (NODATA)") for q in differ)
    lab = decide(conf, queries, "10.0.0.150")
    assert any(lab[q].rule == "lab-block" for q in queries)  # the group not exported
