"""``dnsfw aws export``: a Corefile's firewall as Route 53 DNS Firewall CloudFormation (linted
clean by cfn-lint), Terraform (parsed back as HCL) and AWS CLI input (every file checked
against botocore's route53resolver model, and ``apply.sh`` run against a stand-in ``aws`` that
checks each call the same way), with every feature Route 53 lacks reported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import hcl2
import pytest

import plugins.firewall
from commands.aws import export
from tests.kit.corefiles import SCENARIO_FIREWALL
from tests.kit.corpus import decide
from tests.kit.dnsfw import run_cli
from tests.kit.route53_model import input_errors, operation_name
from tests.kit.scenario import SCENARIO
from tests.kit.servers import FlakyList

CFN_LINT = Path(sys.executable).with_name("cfn-lint")


def server_block(firewall: str, zone: str = ".") -> str:
    body = "\n".join("    " + line for line in firewall.splitlines())
    return f"{zone} {{\n{body}\n    forward . 127.0.0.1:9\n}}\n"


def docstring_example() -> str:
    """The Gmail-only allowlist of plugins/firewall's docstring, as it stands there."""
    doc = plugins.firewall.__doc__ or ""
    block = doc.split("field report)::\n\n", 1)[1].split("\n\n", 1)[0]
    return "\n".join(line[4:] for line in block.splitlines())


def run_export(tmp_path: Path, corefile: str, *args: str) -> tuple[int, Path]:
    conf = tmp_path / "Corefile"
    conf.write_text(corefile)
    out = tmp_path / "out"
    code = export.main(["-conf", str(conf), "--out", str(out), *args])
    return code, out


def notes(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return capsys.readouterr().err.splitlines()


def unquote(value):
    """python-hcl2 keeps string literals' quotes (and labels'): take them off."""
    if isinstance(value, str) and value.startswith('"'):
        return json.loads(value)
    if isinstance(value, list):
        return [unquote(v) for v in value]
    if isinstance(value, dict):
        return {unquote(k): unquote(v) for k, v in value.items() if k != "__is_block__"}
    return value


def terraform_resources(main_tf: Path) -> dict[str, dict[str, dict]]:
    parsed = hcl2.loads(main_tf.read_text())
    resources: dict[str, dict[str, dict]] = {}
    for entry in unquote(parsed["resource"]):
        for kind, named in entry.items():
            resources.setdefault(kind, {}).update(named)
    return resources


def cfn_lint(template: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(CFN_LINT), "--regions", "us-east-1", "--", str(template)],
        capture_output=True,
        text=True,
        timeout=120,
    )


# --- CloudFormation -------------------------------------------------------------------------


def test_cloudformation_of_the_seed_setup_lints_clean_and_carries_every_rule(tmp_path, capsys):
    code, out = run_export(tmp_path, server_block(SCENARIO_FIREWALL), "--vpc", "vpc-0abc1234")
    assert code == 0
    assert notes(capsys) == []  # the seed's setup is exactly expressible
    template_path = out / "firewall.template.json"
    done = cfn_lint(template_path)
    assert done.returncode == 0, done.stdout + done.stderr
    template = json.loads(template_path.read_text())
    resources = template["Resources"]
    assert template["Parameters"]["VpcId"] == {
        "Type": "AWS::EC2::VPC::Id",
        "Description": "The VPC the rule groups are associated with",
        "Default": "vpc-0abc1234",
    }
    lists = {
        r["Properties"]["Name"]: r["Properties"]["Domains"]
        for r in resources.values()
        if r["Type"] == "AWS::Route53Resolver::FirewallDomainList"
    }
    assert lists == {
        "Google": ["*.google.com.", "gmail.com."],
        "AWS": ["*.amazon.pool.ntp.org.", "*.amazonaws.com."],
        "EC2-Internal": [
            "*.compute.internal.",
            "__cloud_init_expected_not_found__.",
            "does-not-exist.example.com.",
            "example.invalid.",
        ],
        "External-Service": ["*.fedoraproject.org."],
        "All-Domains": ["*."],
    }
    group = resources["GroupScenario"]
    assert group["Type"] == "AWS::Route53Resolver::FirewallRuleGroup"
    assert group["Properties"]["Name"] == "Scenario"
    rules = group["Properties"]["FirewallRules"]
    assert [
        (r["Priority"], r["Action"], r["FirewallDomainListId"]["Fn::GetAtt"][0]) for r in rules
    ] == [
        (1, "ALLOW", "ListGoogle"),
        (2, "ALLOW", "ListAWS"),
        (3, "ALLOW", "ListEC2Internal"),
        (4, "ALLOW", "ListExternalService"),
        (100, "BLOCK", "ListAllDomains"),
    ]
    assert rules[0]["FirewallDomainRedirectionAction"] == "TRUST_REDIRECTION_DOMAIN"
    assert rules[1]["FirewallDomainRedirectionAction"] == "INSPECT_REDIRECTION_DOMAIN"
    assert rules[4]["BlockResponse"] == "NODATA"
    assert "BlockResponse" not in rules[0]
    assert group["Metadata"]["dnsfw"]["rules"] == {
        "1": "allow-google",
        "2": "allow-aws",
        "3": "allow-ec2",
        "4": "allow-external",
        "100": "block-all",
    }
    assert resources["GroupScenarioAssociation"] == {
        "Type": "AWS::Route53Resolver::FirewallRuleGroupAssociation",
        "Properties": {
            "Name": "Scenario",
            "FirewallRuleGroupId": {"Fn::GetAtt": ["GroupScenario", "Id"]},
            "Priority": 100,
            "VpcId": {"Ref": "VpcId"},
        },
    }


def test_cfn_lint_rejects_what_route53_would(tmp_path):
    """The lint check can fail: an enum CloudFormation does not know is an error."""
    template = {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Resources": {
            "Group": {
                "Type": "AWS::Route53Resolver::FirewallRuleGroup",
                "Properties": {
                    "FirewallRules": [
                        {"FirewallDomainListId": "rslvr-fdl-1", "Priority": 1, "Action": "DENY"}
                    ]
                },
            }
        },
    }
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(template))
    assert cfn_lint(path).returncode != 0


def test_the_docstring_example_in_every_format(tmp_path, capsys):
    corefile = server_block(docstring_example())
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "internal.txt").write_text("# corp names\ncorp.example\n*.corp.example\n")
    code, out = run_export(tmp_path, corefile, "--format", "cloudformation")
    assert code == 0 and notes(capsys) == []
    template = out / "firewall.template.json"
    assert cfn_lint(template).returncode == 0
    resources = json.loads(template.read_text())["Resources"]
    assert resources["ListInternal"]["Properties"]["Domains"] == [
        "*.corp.example.",
        "corp.example.",
    ]
    rules = resources["GroupEgress"]["Properties"]["FirewallRules"]
    assert [(r["Priority"], r["Action"]) for r in rules] == [
        (100, "ALLOW"),
        (110, "ALLOW"),
        (120, "ALLOW"),
        (900, "BLOCK"),
    ]
    assert resources["GroupEgressAssociation"]["Properties"]["Priority"] == 101

    code, out = run_export(tmp_path, corefile, "--format", "terraform")
    assert code == 0
    tf = terraform_resources(out / "main.tf")
    assert set(tf["aws_route53_resolver_firewall_rule"]) == {
        "egress_allow-google",
        "egress_allow-aws",
        "egress_allow-internal",
        "egress_block-rest",
    }

    code, out = run_export(tmp_path, corefile, "--format", "cli", "--vpc", "vpc-0a1b2c3d")
    assert code == 0
    assert_cli_inputs_valid(out)


# --- Terraform ------------------------------------------------------------------------------


OPTIONS_FIREWALL = """\
firewall {
    list ads domains ads.example *.ads.example
    list mail domains *.mail.example
    list all domains *
    group first 100 {
        rule ads-cname 10 BLOCK ads response override sink.example.net ttl 30
        rule mail-mx 20 ALERT mail qtype MX
        rule mail-https 30 BLOCK mail qtype HTTPS response nxdomain redirection trust
    }
    group last 9000 {
        rule rest 1 ALERT all
    }
    fail open
}"""


def test_terraform_parses_back_with_every_rule_field(tmp_path, capsys):
    code, out = run_export(tmp_path, server_block(OPTIONS_FIREWALL), "--format", "terraform")
    assert code == 0 and notes(capsys) == []
    parsed = unquote(hcl2.loads((out / "main.tf").read_text()))
    assert parsed["variable"] == [
        {
            "vpc_id": {
                "type": "string",
                "description": "The VPC the rule groups are associated with",
            }
        }
    ]
    tf = terraform_resources(out / "main.tf")
    assert tf["aws_route53_resolver_firewall_domain_list"]["ads"] == {
        "name": "ads",
        "domains": ["*.ads.example.", "ads.example."],
    }
    rules = tf["aws_route53_resolver_firewall_rule"]
    assert rules["first_ads-cname"] == {
        "name": "ads-cname",
        "firewall_rule_group_id": "${aws_route53_resolver_firewall_rule_group.first.id}",
        "firewall_domain_list_id": "${aws_route53_resolver_firewall_domain_list.ads.id}",
        "priority": 10,
        "action": "BLOCK",
        "block_response": "OVERRIDE",
        "block_override_domain": "sink.example.net.",
        "block_override_dns_type": "CNAME",
        "block_override_ttl": 30,
        "firewall_domain_redirection_action": "INSPECT_REDIRECTION_DOMAIN",
    }
    assert rules["first_mail-mx"]["q_type"] == "MX"
    assert "block_response" not in rules["first_mail-mx"]
    assert rules["first_mail-https"] == {
        "name": "mail-https",
        "firewall_rule_group_id": "${aws_route53_resolver_firewall_rule_group.first.id}",
        "firewall_domain_list_id": "${aws_route53_resolver_firewall_domain_list.mail.id}",
        "priority": 30,
        "action": "BLOCK",
        "block_response": "NXDOMAIN",
        "q_type": "TYPE65",
        "firewall_domain_redirection_action": "TRUST_REDIRECTION_DOMAIN",
    }
    associations = tf["aws_route53_resolver_firewall_rule_group_association"]
    assert {k: (v["priority"], v["vpc_id"]) for k, v in associations.items()} == {
        "first": (100, "${var.vpc_id}"),
        "last": (9000, "${var.vpc_id}"),
    }
    assert tf["aws_route53_resolver_firewall_config"]["vpc"] == {
        "resource_id": "${var.vpc_id}",
        "firewall_fail_open": "ENABLED",
    }


def test_terraform_vpc_default_and_long_lists_from_files(tmp_path, capsys):
    names = "".join(f"host{i}.big.example\n" for i in range(1500))
    (tmp_path / "big.txt").write_text(names)
    corefile = server_block(
        "firewall {\n    list big file big.txt\n    group g 200 {\n        rule r 1 BLOCK big\n    }\n}"
    )
    code, out = run_export(
        tmp_path, corefile, "--format", "terraform", "--vpc", "vpc-0123456789abcdef0"
    )
    assert code == 0
    parsed = unquote(hcl2.loads((out / "main.tf").read_text()))
    assert parsed["variable"][0]["vpc_id"]["default"] == "vpc-0123456789abcdef0"
    big = terraform_resources(out / "main.tf")["aws_route53_resolver_firewall_domain_list"]["big"]
    assert big["domains"] == '${compact(split("\\n", file("${path.module}/lists/big.txt")))}'
    written = (out / "lists" / "big.txt").read_text().split()
    assert len(written) == 1500 and "host7.big.example." in written

    code, out = run_export(tmp_path, corefile, "--format", "cloudformation")
    assert code == 0
    template = json.loads((out / "firewall.template.json").read_text())
    assert template["Resources"]["ListBig"]["Properties"] == {
        "Name": "big",
        "DomainFileUrl": {"Fn::Sub": "${DomainFilesUrl}/lists/big.txt"},
    }
    assert "Default" not in template["Parameters"]["VpcId"]  # no --vpc: given at deploy time
    assert template["Parameters"]["DomainFilesUrl"]["Type"] == "String"
    assert cfn_lint(out / "firewall.template.json").returncode == 0


# --- AWS CLI input ----------------------------------------------------------------------------


def assert_cli_inputs_valid(out: Path) -> list[tuple[str, dict]]:
    """Every numbered input file against its operation's shape; (operation, input) in order."""
    steps = []
    for path in sorted(out.glob("[0-9][0-9][0-9]-*.json")):
        cli_name = path.name.split("-", 1)[1].split(".", 1)[0]
        params = json.loads(path.read_text())
        operation = operation_name(cli_name)
        assert input_errors(operation, params) == [], path.name
        steps.append((operation, params))
    assert steps
    return steps


def test_cli_inputs_are_valid_for_botocores_model_and_batch_1000_domains(tmp_path, capsys):
    (tmp_path / "big.txt").write_text("".join(f"h{i}.example\n" for i in range(2500)))
    firewall = OPTIONS_FIREWALL.replace(
        "    fail open",
        "    list big file big.txt\n    group third 200 {\n        rule big 1 BLOCK big\n    }\n    fail open",
    )
    code, out = run_export(tmp_path, server_block(firewall), "--format", "cli")
    assert code == 0 and notes(capsys) == []
    steps = assert_cli_inputs_valid(out)
    ops = [op for op, _ in steps]
    assert ops.index("CreateFirewallRuleGroup") > max(
        i for i, op in enumerate(ops) if op == "UpdateFirewallDomains"
    )
    batches = [
        p["Domains"]
        for op, p in steps
        if op == "UpdateFirewallDomains" and p["FirewallDomainListId"] == "@list:big@"
    ]
    assert [len(b) for b in batches] == [1000, 1000, 500]
    assert len({d for b in batches for d in b}) == 2500
    rule = next(p for op, p in steps if op == "CreateFirewallRule" and p["Name"] == "ads-cname")
    assert rule == {
        "CreatorRequestId": "dnsfw-rule-first-ads-cname",
        "FirewallRuleGroupId": "@group:first@",
        "FirewallDomainListId": "@list:ads@",
        "Priority": 10,
        "Action": "BLOCK",
        "Name": "ads-cname",
        "BlockResponse": "OVERRIDE",
        "BlockOverrideDomain": "sink.example.net.",
        "BlockOverrideDnsType": "CNAME",
        "BlockOverrideTtl": 30,
        "FirewallDomainRedirectionAction": "INSPECT_REDIRECTION_DOMAIN",
    }
    assert ("UpdateFirewallConfig", {"ResourceId": "@vpc@", "FirewallFailOpen": "ENABLED"}) in steps
    assert (out / "lists" / "big.txt").exists()  # for import-firewall-domains from S3


FAKE_AWS = """\
#!{python}
# a stand-in for `aws route53resolver OP --cli-input-json JSON [--query Q --output text]`:
# checks the input against botocore's model, records it and prints the new resource's ID
import json, sys
sys.path.insert(0, {root!r})
from tests.kit.route53_model import input_errors, operation_name
args = sys.argv[1:]
assert args[0] == "route53resolver", args
op = operation_name(args[1])
params = json.loads(args[args.index("--cli-input-json") + 1])
errors = input_errors(op, params)
with open({log!r}, "a") as log:
    log.write(json.dumps([op, params, errors]) + "\\n")
if errors:
    sys.exit(254)
with open({log!r}) as log:
    n = len(log.readlines())
if "--query" in args:
    print({{"CreateFirewallDomainList": "rslvr-fdl-", "CreateFirewallRuleGroup": "rslvr-frg-"}}[op] + str(n))
"""


def test_apply_script_runs_every_step_with_the_ids_aws_returns(tmp_path, capsys):
    code, out = run_export(tmp_path, server_block(OPTIONS_FIREWALL), "--format", "cli")
    assert code == 0
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    fake = bin_dir / "aws"
    root = str(Path(__file__).resolve().parents[1])
    fake.write_text(FAKE_AWS.format(python=sys.executable, root=root, log=str(log)))
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    done = subprocess.run(
        ["sh", str(out / "apply.sh")], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode != 0 and "VPC_ID" in done.stderr  # no --vpc: the script asks for it
    done = subprocess.run(
        ["sh", str(out / "apply.sh")],
        env={**env, "VPC_ID": "vpc-42"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert all(errors == [] for _, _, errors in calls)
    created = {}
    for n, (op, params, _) in enumerate(calls, 1):
        if op in ("CreateFirewallDomainList", "CreateFirewallRuleGroup"):
            created[params["Name"]] = f"{'rslvr-fdl-' if 'Domain' in op else 'rslvr-frg-'}{n}"
    text = json.dumps(calls)
    assert "@" not in text  # every placeholder was filled
    rules = [p for op, p, _ in calls if op == "CreateFirewallRule"]
    assert [(r["Name"], r["FirewallRuleGroupId"], r["FirewallDomainListId"]) for r in rules] == [
        ("ads-cname", created["first"], created["ads"]),
        ("mail-mx", created["first"], created["mail"]),
        ("mail-https", created["first"], created["mail"]),
        ("rest", created["last"], created["all"]),
    ]
    associations = [p for op, p, _ in calls if op == "AssociateFirewallRuleGroup"]
    assert [(a["FirewallRuleGroupId"], a["VpcId"], a["Priority"]) for a in associations] == [
        (created["first"], "vpc-42", 100),
        (created["last"], "vpc-42", 9000),
    ]
    assert calls[-1][:2] == [
        "UpdateFirewallConfig",
        {"ResourceId": "vpc-42", "FirewallFailOpen": "ENABLED"},
    ]


# --- what Route 53 lacks --------------------------------------------------------------------


def test_features_route53_lacks_are_reported_with_what_was_exported(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DNSFW_STATE_DIR", str(tmp_path / "state"))  # the url list's copy
    (tmp_path / "hosts.txt").write_text("0.0.0.0 tracker.example\n127.0.0.1 localhost\n")
    (tmp_path / "ads.txt").write_text(
        "[Adblock Plus 2.0]\n||ads.example^\n@@||ok.example^\n##.banner\n"
    )
    (tmp_path / "svc.txt").write_text("_sip._tcp.corp.example\n")
    with FlakyList("feed.example\n*.feed.example\n", failures=0) as feed:
        firewall = f"""\
firewall corp.example example {{
    list hosts file hosts.txt format hosts
    list ads file ads.txt format adblock
    list svc file svc.txt
    list feed url {feed.url} refresh 1h
    list all domains *
    group guests 10 {{
        clients 10.8.0.0/16
        rule guests-block 1 BLOCK all response nxdomain
    }}
    group main 20 {{
        rule trackers 1 BLOCK hosts response override 0.0.0.0
        rule ads 2 BLOCK ads
        rule svc 3 ALERT svc
        rule feed 4 BLOCK feed
    }}
    block_ttl 300
    bypass_signals on
}}"""
        corefile = server_block(firewall, zone="corp.example example")
        code, out = run_export(
            tmp_path, corefile, "--format", "cloudformation", "--vpc", "vpc-0a1b2c3d"
        )
    assert code == 0
    conf = tmp_path / "Corefile"
    lines = notes(capsys)
    expected = [
        f"{conf}:2 - the firewall filters only names under corp.example., example.; Route 53 "
        "DNS Firewall filters every query of the VPC: exported as filtering every name",
        f"{conf}:2 - block_ttl 300: Route 53 has no setting for the TTL of its NODATA/NXDOMAIN "
        "block answers: not exported",
        f"{conf}:2 - bypass_signals on: Route 53 has no such answers: not exported (a BLOCK rule "
        "on use-application-dns.net with response nxdomain does the first)",
        f"{conf}:2 - Route 53 takes association priorities 100-9900: group priorities "
        "renumbered in the same order (main 20->101)",
        f"{conf}:3 - list 'hosts' (format hosts): exported as its 1 names (exact names; the "
        "addresses are not used by a firewall rule)",
        f"{conf}:4 - list 'ads' (format adblock): exported as its plain domains, each '||name^' "
        "as 'name.' and '*.name.' (2 entries); 2 other lines skipped, as dnsfw skips them",
        f"{conf}:6 - list 'feed' is downloaded from {feed.url} every 3600s; Route 53 cannot "
        "fetch it: exported as a snapshot of its 2 entries now (export again to update it)",
        f"{conf}:10 - group 'guests' applies only to clients 10.8.0.0/16; Route 53 has no "
        "per-client rules (a policy applies to a whole VPC): the group is not exported (export "
        "it from a Corefile without 'clients' for the VPC those clients are in)",
        f"{conf}:13 - rule 'trackers': response override 0.0.0.0 (a sinkhole address); Route 53 "
        "overrides only with a CNAME: exported as NODATA",
    ]
    assert lines == expected
    template = json.loads((out / "firewall.template.json").read_text())
    resources = template["Resources"]
    assert resources["ListHosts"]["Properties"]["Domains"] == ["tracker.example."]
    assert resources["ListAds"]["Properties"]["Domains"] == ["*.ads.example.", "ads.example."]
    assert resources["ListSvc"]["Properties"]["Domains"] == ["_sip._tcp.corp.example."]
    assert resources["ListFeed"]["Properties"]["Domains"] == ["*.feed.example.", "feed.example."]
    assert "ListAll" not in resources  # only the client group used it
    assert [k for k in resources if resources[k]["Type"].endswith("FirewallRuleGroup")] == [
        "GroupMain"
    ]
    rules = resources["GroupMain"]["Properties"]["FirewallRules"]
    assert [(r["Priority"], r["Action"], r.get("BlockResponse")) for r in rules] == [
        (1, "BLOCK", "NODATA"),
        (2, "BLOCK", "NODATA"),
        (3, "ALERT", None),
        (4, "BLOCK", "NODATA"),
    ]
    assert resources["GroupMainAssociation"]["Properties"]["Priority"] == 101  # 20 renumbered
    assert cfn_lint(out / "firewall.template.json").returncode == 0


def test_strict_writes_nothing_when_anything_is_reported(tmp_path, capsys):
    firewall = "firewall {\n    list all domains *\n    group g 100 {\n        rule r 1 BLOCK all response override ::\n    }\n}"
    code, out = run_export(tmp_path, server_block(firewall), "--strict")
    assert code == 1
    err = capsys.readouterr().err
    assert "exported as NODATA" in err
    assert "1 difference(s) reported with --strict: nothing written" in err
    assert not out.exists()


def test_url_list_that_cannot_be_downloaded_is_not_exported_nor_its_rules(
    tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("DNSFW_STATE_DIR", str(tmp_path / "state"))
    with FlakyList("", failures=100, status=503) as feed:
        firewall = f"""\
firewall {{
    list feed url {feed.url}
    list all domains *
    group g 100 {{
        rule feed 1 BLOCK feed
        rule rest 2 ALERT all
    }}
}}"""
        code, out = run_export(
            tmp_path, server_block(firewall), "--format", "cli", "--vpc", "vpc-0a1b2c3d"
        )
    assert code == 0
    err = capsys.readouterr().err
    conf = tmp_path / "Corefile"
    assert err.splitlines() == [
        f"{conf}:3 - Warning: cannot download list 'feed' from {feed.url}: HTTP 503 Service "
        "Unavailable (dnsfw retries it with backoff)",
        f"{conf}:3 - list 'feed' could not be downloaded from {feed.url} and dnsfw has no copy "
        "of it: not exported, nor the rules that use it",
        f"{conf}:6 - rule 'feed' not exported: its list 'feed' was not",
    ]
    steps = assert_cli_inputs_valid(out)
    assert [p["Name"] for op, p in steps if op == "CreateFirewallDomainList"] == ["all"]
    assert [p["Name"] for op, p in steps if op == "CreateFirewallRule"] == ["rest"]


# --- quotas and priorities ------------------------------------------------------------------


def test_quotas_are_reported(tmp_path, capsys):
    (tmp_path / "huge.txt").write_text("".join(f"n{i}.example\n" for i in range(100_001)))
    rules = "\n".join(f"        rule r{i} {i + 1} ALERT l{i}" for i in range(101))
    lists = "\n".join(f"    list l{i} domains d{i}.example" for i in range(101))
    extra = "\n".join(
        f"    group g{i} {200 + i} {{\n        rule x 1 BLOCK huge\n    }}" for i in range(5)
    )
    firewall = f"firewall {{\n{lists}\n    list huge file huge.txt\n    group big 100 {{\n{rules}\n    }}\n{extra}\n}}"
    code, out = run_export(
        tmp_path, server_block(firewall), "--format", "cli", "--vpc", "vpc-0a1b2c3d"
    )
    assert code == 0
    err = capsys.readouterr().err
    assert "6 rule groups: Route 53 associates at most 5 with one VPC (a fixed quota)" in err
    assert (
        "group 'big' has 101 rules: over Route 53's default quota of 100 rules per rule group"
        in err
    )
    assert (
        "100102 domains across the lists: over Route 53's default quota of 100,000 domains" in err
    )
    batches = [p for op, p in assert_cli_inputs_valid(out) if op == "UpdateFirewallDomains"]
    assert max(len(p["Domains"]) for p in batches) == 1000  # the API's limit per call holds


def test_group_priorities_outside_100_9900_are_renumbered_in_order(tmp_path, capsys):
    firewall = """\
firewall {
    list all domains *
    list a domains a.example
    group late 20000 {
        rule r 1 BLOCK all
    }
    group early 0 {
        rule r 0 ALLOW a
        rule s 5 ALERT all
    }
}"""
    code, out = run_export(tmp_path, server_block(firewall), "--vpc", "vpc-0a1b2c3d")
    assert code == 0
    err = capsys.readouterr().err
    assert "group priorities renumbered in the same order (late 20000->201, early 0->101)" in err
    assert "group 'early' has a rule with priority 0" in err
    resources = json.loads((out / "firewall.template.json").read_text())["Resources"]
    assert resources["GroupEarlyAssociation"]["Properties"]["Priority"] == 101
    assert resources["GroupLateAssociation"]["Properties"]["Priority"] == 201
    early = resources["GroupEarly"]["Properties"]["FirewallRules"]
    assert [r["Priority"] for r in early] == [1, 6]


# --- the command ----------------------------------------------------------------------------


def test_one_firewall_of_several_is_chosen_by_its_line(tmp_path, capsys):
    corefile = server_block(SCENARIO_FIREWALL) + server_block(
        "firewall {\n    list x domains x.example\n    group g 100 {\n        rule r 1 BLOCK x\n    }\n}",
        zone="other.example",
    )
    code, _ = run_export(tmp_path, corefile)
    assert code == 1
    conf = tmp_path / "Corefile"
    assert capsys.readouterr().err == (
        f"dnsfw aws export: the Corefile has 2 firewalls ({conf}:2, {conf}:19); Route 53 "
        "applies one policy to a VPC: give --firewall LINE\n"
    )
    code, out = run_export(tmp_path, corefile, "--firewall", "19")
    assert code == 0
    resources = json.loads((out / "firewall.template.json").read_text())["Resources"]
    assert list(resources) == ["ListX", "GroupG", "GroupGAssociation"]


def test_bad_corefile_and_help(tmp_path, capsys):
    code, _ = run_export(tmp_path, ". {\n    firewall {\n        group g x\n    }\n}\n")
    assert code == 1
    assert capsys.readouterr().err == (
        f"plugin/firewall: {tmp_path / 'Corefile'}:3 - Error during parsing: 'x' is not an integer\n"
    )
    code, out = run_export(tmp_path, server_block(SCENARIO_FIREWALL), "--vpc", "vpc-1")
    assert code == 1 and not out.exists()
    assert capsys.readouterr().err == "dnsfw aws export: --vpc: not a VPC ID (vpc-...): 'vpc-1'\n"

    assert run_cli("aws", "-h").returncode == 0
    done = run_cli("aws", "export", "-h")
    assert done.returncode == 0 and "--format {cloudformation,terraform,cli}" in done.stdout
    assert run_cli("aws", "nothing").returncode == 1


def test_exported_policy_decides_the_seed_queries_as_the_corefile(tmp_path, capsys):
    """The corpus helper for the round trip: the seed's 46 queries decided by the Corefile,
    the decisions the exported rules encode (checked against the template's rules)."""
    conf = tmp_path / "Corefile"
    conf.write_text(server_block(SCENARIO_FIREWALL))
    queries = [(name, t) for name, types in SCENARIO.items() for t in types]
    decided = decide(conf, queries)
    assert len(decided) == 46
    blocked = {query for query, outcome in decided.items() if outcome.action == "BLOCK"}
    assert blocked == {
        ("yahoo.co.jp.", "MX"),
        ("mx1.mail.yahoo.co.jp.", "A"),
        ("mx2.mail.yahoo.co.jp.", "A"),
        ("mx3.mail.yahoo.co.jp.", "A"),
        ("mx5.mail.yahoo.co.jp.", "A"),
        ("instance-data.", "A"),
        ("instance-data.", "AAAA"),
    }
    assert {o.rule for o in decided.values() if o.action == "BLOCK"} == {"block-all"}
    assert all(o.action == "ALLOW" for q, o in decided.items() if q not in blocked)
    assert (
        decided[("yahoo.co.jp.", "MX")].answer
        == "NOERROR, no answer (NODATA); SOA dnsfw.invalid. in authority, TTL 60"
    )
    assert decided[("gmail.com.", "MX")].action == "ALLOW"
