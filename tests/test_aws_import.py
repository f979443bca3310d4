"""``dnsfw aws import``: every source format (AWS CLI JSON, CloudFormation JSON/YAML, Terraform
.tf and state, the live API through botocore's Stubber) into a firewall that ``dnsfw check``
accepts unchanged and that decides as Route 53 would (``dnsfw explain``, a running dnsfw
answering dnspython); malformed inputs name the file and the JSON path."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import dns.rcode
import dns.rdatatype
import pytest
from botocore.stub import Stubber

import commands.aws as aws_command
from commands.aws import importer, model
from tests.kit import aws
from tests.kit.dnsfw import run_cli
from tests.kit.servers import StaticList

RUNNING = """\
.:$PORT {
    bind 127.0.0.1
    import firewall.conf
    forward . UPSTREAM
}
"""


@pytest.fixture
def feed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The malware feed on 127.0.0.1 (DNSFW_FEEDS), a private state directory."""
    with StaticList(aws.MALWARE_FEED) as server:
        catalogue = aws.feed_catalogue(tmp_path / "feeds.json", server.url)
        monkeypatch.setenv("DNSFW_FEEDS", str(catalogue))
        monkeypatch.setenv("DNSFW_STATE_DIR", str(tmp_path / "state"))
        monkeypatch.delenv("STATE_DIRECTORY", raising=False)
        yield server


def imported(out: Path, *args: str):
    done = run_cli("aws", "import", "--out", str(out), *args)
    return done


def rules_of(conf: Path) -> list[str]:
    """firewall.conf without its header (which names the sources)."""
    return [line for line in conf.read_text().splitlines() if not line.startswith("#")]


def explain(conf: Path, name: str, qtype: str = "A") -> str:
    done = run_cli("explain", "-conf", str(conf), name, qtype)
    assert done.returncode == 0, done.stderr
    return next(line.strip() for line in done.stdout.splitlines() if "decision:" in line)


def test_the_model_facts_are_botocore_s() -> None:
    shapes = aws.MODEL
    for enum, shape in [
        (model.ACTIONS, "Action"),
        (model.BLOCK_RESPONSES, "BlockResponse"),
        ((model.BLOCK_OVERRIDE_DNS_TYPE,), "BlockOverrideDnsType"),
        (model.REDIRECTIONS, "FirewallDomainRedirectionAction"),
        (model.DNS_THREAT_PROTECTIONS, "DnsThreatProtection"),
        (model.CONFIDENCE_THRESHOLDS, "ConfidenceThreshold"),
        (model.MUTATION_PROTECTION, "MutationProtectionStatus"),
    ]:
        assert set(enum) == set(shapes.shape_for(shape).enum), shape
    for fields, shape in [
        (model.RULE_FIELDS, "FirewallRule"),
        (model.DOMAIN_LIST_FIELDS, "FirewallDomainListMetadata"),
        (model.RULE_GROUP_FIELDS, "FirewallRuleGroupMetadata"),
        (model.ASSOCIATION_FIELDS, "FirewallRuleGroupAssociation"),
    ]:
        assert set(fields) <= set(shapes.shape_for(shape).members), shape
    ttl = shapes.shape_for("FirewallRule").members["BlockOverrideTtl"]
    assert ttl.name == "Unsigned"
    limits = shapes.shape_for("ListFirewallDomainsRequest").members["MaxResults"].metadata
    assert limits["max"] == model.LIST_DOMAINS_PAGE


def test_aws_cli_json_imports_into_a_firewall_that_decides_as_route53(
    feed: StaticList, tmp_path: Path, dnsfw, upstream
) -> None:
    sources = aws.write_setup(tmp_path / "aws")
    done = imported(tmp_path, str(sources))
    assert done.returncode == 0, done.stderr
    conf = (tmp_path / "firewall.conf").read_text()
    # IDs and names kept as comments; priorities from the associations (both VPCs alike)
    assert f"# rule group 'egress allowlist' {aws.EGRESS}" in conf
    assert f"of {aws.VPCS[0]}, {aws.VPCS[1]} at priority 200" in conf
    assert "group corp-blocks 101 {" in conf and "group egress-allowlist 200 {" in conf
    assert "rule allow-google 100 ALLOW google redirection trust" in conf
    assert "rule alert-yahoo-MX 110 ALERT yahoo-jp qtype MX" in conf
    assert "list AWSManagedDomainsMalwareDomainList feed urlhaus" in conf
    assert "rule override-ads 140 BLOCK ads response override example.com ttl 300" in conf
    # not representable: commented out with the reason, and reported
    assert "        # rule block-guardduty 130 BLOCK" in conf
    assert "# Advanced rule 'block-dga' rslvr-ftp-0a9b8c7d6e5f4a3b" in conf
    assert "dnsfw has no threat rules" in conf
    assert "rule 'block-guardduty' commented out" in done.stderr
    assert "Advanced rule 'block-dga'" in done.stderr
    assert "AWSManagedDomainsMalwareDomainList" in done.stderr and "-> feed urlhaus" in done.stderr
    # both pages of the list, trailing dots gone
    google = (tmp_path / "lists" / "google.txt").read_text().splitlines()
    assert google[1:] == ["gmail.com", "*.google.com", "google.com"]
    assert (tmp_path / "lists" / "everything.txt").read_text().splitlines()[1:] == ["*"]
    # accepted unchanged (the feed downloaded from the local server)
    check = run_cli("check", "-conf", str(tmp_path / "Corefile"))
    assert check.returncode == 0 and "Warning" not in check.stderr, check.stderr
    assert feed.headers  # check downloaded the feed

    fw = dnsfw(RUNNING.replace("UPSTREAM", upstream.address))
    answer = fw.query("gmail.com")
    assert answer.rcode() == dns.rcode.NOERROR and answer.answer  # allow-google
    assert fw.query("yahoo.co.jp", "MX").answer  # ALERT: answered
    blocked = fw.query("yahoo.co.jp", "A")  # block-rest: NODATA
    assert blocked.rcode() == dns.rcode.NOERROR and not blocked.answer
    assert fw.query("beacon.yahoo.co.jp").rcode() == dns.rcode.NXDOMAIN  # corp-blocks first
    assert fw.query("malware.example.com").rcode() == dns.rcode.NXDOMAIN  # the feed
    override = fw.query("ads.example")
    assert override.answer[0].rdtype == dns.rdatatype.CNAME
    assert override.answer[0].ttl == 300
    assert str(override.answer[0][0].target) == "example.com."
    fw.stop()
    corefile = tmp_path / "Corefile"  # the running one: the same firewall.conf
    assert explain(corefile, "malware.example.com").startswith(
        "decision: BLOCK by rule block-malware"
    )
    assert explain(corefile, "www.google.com").startswith("decision: ALLOW by rule allow-google")
    assert explain(corefile, "yahoo.co.jp", "MX").startswith("decision: ALERT by rule alert-yahoo")


CLOUDFORMATION_YAML = """\
AWSTemplateFormatVersion: "2010-09-09"
Parameters:
  Vpc:
    Type: AWS::EC2::VPC::Id
Resources:
  GoogleList:
    Type: AWS::Route53Resolver::FirewallDomainList
    Properties:
      Name: google
      Domains: [gmail.com., "*.google.com."]
  EverythingList:
    Type: AWS::Route53Resolver::FirewallDomainList
    Properties:
      Name: everything
      Domains: ["*."]
  S3List:
    Type: AWS::Route53Resolver::FirewallDomainList
    Properties:
      Name: from-s3
      DomainFileUrl: s3://corp-dns/blocked.txt
  Egress:
    Type: AWS::Route53Resolver::FirewallRuleGroup
    Properties:
      Name: egress
      FirewallRules:
        - FirewallDomainListId: !Ref GoogleList
          Priority: 100
          Action: ALLOW
          FirewallDomainRedirectionAction: TRUST_REDIRECTION_DOMAIN
        - FirewallDomainListId: !GetAtt S3List.Id
          Priority: 110
          Action: BLOCK
          BlockResponse: OVERRIDE
          BlockOverrideDnsType: CNAME
          BlockOverrideDomain: walled.example.com.
          BlockOverrideTtl: 60
        - DnsThreatProtection: DNS_TUNNELING
          ConfidenceThreshold: MEDIUM
          Priority: 120
          Action: ALERT
        - FirewallDomainListId: !Ref EverythingList
          Priority: 900
          Action: BLOCK
          BlockResponse: NXDOMAIN
          Qtype: AAAA
  Association:
    Type: AWS::Route53Resolver::FirewallRuleGroupAssociation
    Properties:
      FirewallRuleGroupId: !Ref Egress
      VpcId: !Ref Vpc
      Priority: 101
      Name: egress-assoc
  Topic:
    Type: AWS::SNS::Topic
"""


def _cloudformation_json() -> dict:
    """The YAML template's long form, as `aws cloudformation get-template` prints JSON."""
    return importer.inv_.cloudformation_yaml(CLOUDFORMATION_YAML)


def test_cloudformation_yaml_and_json_import_alike(tmp_path: Path) -> None:
    (tmp_path / "y").mkdir()
    (tmp_path / "y" / "template.yaml").write_text(CLOUDFORMATION_YAML)
    (tmp_path / "j").mkdir()
    (tmp_path / "j" / "template.json").write_text(json.dumps(_cloudformation_json()))
    for d in ("y", "j"):
        done = imported(tmp_path / d, str(next((tmp_path / d).iterdir())))
        assert done.returncode == 0, done.stderr
        assert "s3://corp-dns/blocked.txt" in done.stderr  # DomainFileUrl: a warning
        assert "Advanced rule" in done.stderr
    assert rules_of(tmp_path / "y" / "firewall.conf") == rules_of(tmp_path / "j" / "firewall.conf")
    conf = (tmp_path / "y" / "firewall.conf").read_text()
    assert "group egress 101 {" in conf
    assert "rule rule-110 110 BLOCK from-s3 response override walled.example.com ttl 60" in conf
    assert "rule rule-900 900 BLOCK everything qtype AAAA response nxdomain" in conf
    assert (
        "# Advanced rule 'rule-120': priority 120, ALERT on DnsThreatProtection DNS_TUNNELING"
        in conf
    )
    assert (
        "DomainFileUrl s3://corp-dns/blocked.txt" in (tmp_path / "y/lists/from-s3.txt").read_text()
    )
    corefile = tmp_path / "y" / "Corefile"
    assert run_cli("check", "-conf", str(corefile)).returncode == 0
    assert explain(corefile, "mail.google.com").startswith("decision: ALLOW by rule rule-100")
    assert explain(corefile, "example.org", "AAAA").startswith("decision: BLOCK by rule rule-900")
    assert explain(corefile, "example.org", "A").startswith("decision: no rule matches")


TERRAFORM = """\
resource "aws_route53_resolver_firewall_domain_list" "google" {
  name    = "google"
  domains = ["gmail.com.", "*.google.com."]
}

resource "aws_route53_resolver_firewall_domain_list" "all" {
  name    = "all"
  domains = ["*."]
}

resource "aws_route53_resolver_firewall_rule_group" "egress" {
  name = "egress"
}

resource "aws_route53_resolver_firewall_rule" "allow_google" {
  name                              = "allow-google"
  action                            = "ALLOW"
  firewall_domain_list_id           = aws_route53_resolver_firewall_domain_list.google.id
  firewall_rule_group_id            = aws_route53_resolver_firewall_rule_group.egress.id
  firewall_domain_redirection_action = "TRUST_REDIRECTION_DOMAIN"
  priority                          = 100
}

resource "aws_route53_resolver_firewall_rule" "block_rest" {
  name                    = "block-rest"
  action                  = "BLOCK"
  block_response          = "NODATA"
  firewall_domain_list_id = aws_route53_resolver_firewall_domain_list.all.id
  firewall_rule_group_id  = aws_route53_resolver_firewall_rule_group.egress.id
  priority                = 900
}

resource "aws_route53_resolver_firewall_rule_group_association" "egress" {
  name                   = "egress"
  firewall_rule_group_id = aws_route53_resolver_firewall_rule_group.egress.id
  priority               = 300
  vpc_id                 = "vpc-0a1b2c3d4e5f60718"
}
"""


def _state() -> dict:
    """`terraform show -json` for the same setup applied, in a child module, plus a managed
    list read through the data source."""

    def resource(kind: str, name: str, values: dict, mode: str = "managed") -> dict:
        return {
            "address": f"module.dns.{kind}.{name}",
            "mode": mode,
            "type": kind,
            "name": name,
            "provider_name": "registry.terraform.io/hashicorp/aws",
            "values": values,
        }

    tf = "aws_route53_resolver_firewall_"
    rule = {"block_override_dns_type": "", "block_override_domain": "", "q_type": ""}
    return {
        "format_version": "1.0",
        "terraform_version": "1.9.5",
        "values": {
            "root_module": {
                "child_modules": [
                    {
                        "address": "module.dns",
                        "resources": [
                            resource(
                                tf + "domain_list",
                                "google",
                                {
                                    "id": aws.GOOGLE,
                                    "name": "google",
                                    "domains": ["gmail.com.", "*.google.com."],
                                },
                            ),
                            resource(
                                tf + "domain_list",
                                "malware",
                                {
                                    "id": aws.MALWARE,
                                    "name": "AWSManagedDomainsMalwareDomainList",
                                    "managed_owner_name": aws.MANAGED_OWNER,
                                    "firewall_domain_list_id": aws.MALWARE,
                                },
                                mode="data",
                            ),
                            resource(
                                tf + "rule_group",
                                "egress",
                                {"id": aws.EGRESS, "name": "egress", "owner_id": aws.ACCOUNT},
                            ),
                            resource(
                                tf + "rule",
                                "allow_google",
                                {
                                    **rule,
                                    "id": f"{aws.EGRESS}:{aws.GOOGLE}",
                                    "name": "allow-google",
                                    "action": "ALLOW",
                                    "block_response": "",
                                    "block_override_ttl": 0,
                                    "firewall_domain_list_id": aws.GOOGLE,
                                    "firewall_rule_group_id": aws.EGRESS,
                                    "firewall_domain_redirection_action": "INSPECT_REDIRECTION_DOMAIN",
                                    "priority": 100,
                                },
                            ),
                            resource(
                                tf + "rule",
                                "block_malware",
                                {
                                    **rule,
                                    "id": f"{aws.EGRESS}:{aws.MALWARE}",
                                    "name": "block-malware",
                                    "action": "BLOCK",
                                    "block_response": "NXDOMAIN",
                                    "block_override_ttl": 0,
                                    "firewall_domain_list_id": aws.MALWARE,
                                    "firewall_rule_group_id": aws.EGRESS,
                                    "firewall_domain_redirection_action": "INSPECT_REDIRECTION_DOMAIN",
                                    "priority": 200,
                                },
                            ),
                            resource(
                                tf + "rule_group_association",
                                "egress",
                                {
                                    "id": "rslvr-frgassoc-0a2b3c4d5e6f7a8b9",
                                    "name": "egress",
                                    "firewall_rule_group_id": aws.EGRESS,
                                    "priority": 300,
                                    "vpc_id": aws.VPCS[0],
                                    "mutation_protection": "DISABLED",
                                },
                            ),
                        ],
                    }
                ]
            }
        },
    }


def test_terraform_files_and_state_import(feed: StaticList, tmp_path: Path) -> None:
    (tmp_path / "tf").mkdir()
    (tmp_path / "tf" / "main.tf").write_text(TERRAFORM)
    done = imported(tmp_path / "fromtf", str(tmp_path / "tf"))
    assert done.returncode == 0, done.stderr
    conf = (tmp_path / "fromtf" / "firewall.conf").read_text()
    assert "group egress 300 {" in conf
    assert "rule allow-google 100 ALLOW google redirection trust" in conf
    assert "rule block-rest 900 BLOCK all response nodata" in conf
    corefile = tmp_path / "fromtf" / "Corefile"
    assert run_cli("check", "-conf", str(corefile)).returncode == 0
    assert explain(corefile, "www.google.com").startswith("decision: ALLOW by rule allow-google")
    assert explain(corefile, "example.org").startswith("decision: BLOCK by rule block-rest")

    (tmp_path / "state.json").write_text(json.dumps(_state()))
    done = imported(tmp_path / "fromstate", str(tmp_path / "state.json"))
    assert done.returncode == 0, done.stderr
    conf = (tmp_path / "fromstate" / "firewall.conf").read_text()
    assert (
        f"# rule 'block-malware' on list 'AWSManagedDomainsMalwareDomainList' {aws.MALWARE}" in conf
    )
    assert (
        "rule block-malware 200 BLOCK AWSManagedDomainsMalwareDomainList response nxdomain" in conf
    )
    assert "list AWSManagedDomainsMalwareDomainList feed urlhaus" in conf
    check = run_cli("check", "-conf", str(tmp_path / "fromstate" / "Corefile"))
    assert check.returncode == 0 and "Warning" not in check.stderr, check.stderr


def _stubbed_client() -> tuple[object, Stubber]:
    """A route53resolver client answering, in call order, what the account of
    tests/kit/aws.py holds (Stubber checks each response against the model's shape)."""
    client = boto3.client(
        "route53resolver",
        region_name=aws.REGION,
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="not-a-secret",
    )
    stub = Stubber(client)
    docs = aws.setup()
    vpc = aws.VPCS[0]
    associations = [
        a
        for a in docs["list-firewall-rule-group-associations.json"]["FirewallRuleGroupAssociations"]
        if a["VpcId"] == vpc
    ]
    stub.add_response(
        "list_firewall_rule_group_associations",
        {"FirewallRuleGroupAssociations": associations},
        {"VpcId": vpc},
    )
    stub.add_response("list_firewall_rule_groups", docs["list-firewall-rule-groups.json"], {})
    stub.add_response("list_firewall_domain_lists", docs["list-firewall-domain-lists.json"], {})
    for group in sorted((aws.EGRESS, aws.CORP)):
        stub.add_response(
            "list_firewall_rules",
            docs[f"list-firewall-rules.{group}.json"],
            {"FirewallRuleGroupId": group},
        )
    for list_id in sorted((aws.GOOGLE, aws.YAHOO, aws.ADS, aws.ALL, aws.BAD)):
        if list_id == aws.GOOGLE:  # two pages
            first = docs[f"list-firewall-domains.{list_id}.page1.json"]
            stub.add_response("list_firewall_domains", first, {"FirewallDomainListId": list_id})
            stub.add_response(
                "list_firewall_domains",
                docs[f"list-firewall-domains.{list_id}.page2.json"],
                {"FirewallDomainListId": list_id, "NextToken": first["NextToken"]},
            )
        else:
            stub.add_response(
                "list_firewall_domains",
                docs[f"list-firewall-domains.{list_id}.json"],
                {"FirewallDomainListId": list_id},
            )
    return client, stub


def test_from_aws_reads_the_live_api_as_the_cli_json(
    feed: StaticList, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, stub = _stubbed_client()
    monkeypatch.setattr(importer, "live_client", lambda region: client)
    with stub:
        assert (
            importer.main(["--from-aws", "--vpc", aws.VPCS[0], "--out", str(tmp_path / "live")])
            == 0
        )
        stub.assert_no_pending_responses()
    sources = aws.write_setup(tmp_path / "aws")
    assert imported(tmp_path / "cli", str(sources), "--vpc", aws.VPCS[0]).returncode == 0
    assert rules_of(tmp_path / "live" / "firewall.conf") == rules_of(
        tmp_path / "cli" / "firewall.conf"
    )
    assert "#   aws:route53resolver:eu-west-1" in (tmp_path / "live" / "firewall.conf").read_text()


def _broken(docs: dict, name: str, path: tuple, value: object) -> dict:
    target = docs[name]
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return docs


RULES = f"list-firewall-rules.{aws.EGRESS}.json"


@pytest.mark.parametrize(
    ("change", "file", "message"),
    [
        (
            lambda docs, d: (d / RULES).write_text('{"FirewallRules": [\n'),
            RULES,
            "$: not valid JSON: Expecting value: line 2",
        ),
        (
            lambda docs, d: aws.write_setup(
                d, _broken(docs, RULES, ("FirewallRules", 1, "Action"), "DENY")
            ),
            RULES,
            "$.FirewallRules[1].Action: unknown Action 'DENY' (one of ALLOW, BLOCK, ALERT)",
        ),
        (
            lambda docs, d: aws.write_setup(
                d, _broken(docs, RULES, ("FirewallRules", 2, "BlockResponse"), "REFUSED")
            ),
            RULES,
            "$.FirewallRules[2].BlockResponse: unknown BlockResponse 'REFUSED'",
        ),
        (
            lambda docs, d: aws.write_setup(
                d, _broken(docs, RULES, ("FirewallRules", 1, "Qtype"), "NOPE")
            ),
            RULES,
            "$.FirewallRules[1].Qtype: unknown Qtype 'NOPE'",
        ),
        (
            lambda docs, d: aws.write_setup(
                d, _broken(docs, RULES, ("FirewallRules", 5, "ConfidenceThreshold"), "EXTREME")
            ),
            RULES,
            "$.FirewallRules[5].ConfidenceThreshold: unknown ConfidenceThreshold 'EXTREME'",
        ),
        (
            lambda docs, d: [p.unlink() for p in d.glob("list-firewall-domain*.json")],
            f"list-firewall-rules.{aws.CORP}.json",
            f"$.FirewallRules[0].FirewallDomainListId: domain list {aws.BAD} is not in the sources",
        ),
        (
            lambda docs, d: (d / f"list-firewall-domains.{aws.ADS}.json").unlink(),
            "list-firewall-domain-lists.json",
            f"$.FirewallDomainLists[2]: the domains of list 'ads' {aws.ADS} are not in the sources",
        ),
        (
            lambda docs, d: (d / f"list-firewall-domains.{aws.ADS}.json").rename(
                d / "domains-ads.json"
            ),
            "domains-ads.json",
            "$.Domains: list-firewall-domains output names no list",
        ),
        (
            lambda docs, d: aws.write_setup(
                d,
                _broken(
                    docs,
                    "list-firewall-rule-group-associations.json",
                    ("FirewallRuleGroupAssociations", 3, "Priority"),
                    9000,
                ),
            ),
            "list-firewall-rule-group-associations.json",
            "the VPCs associate different rule groups",
        ),
        (
            lambda docs, d: (d / "main.tf").write_text(
                TERRAFORM.replace("priority                = 900", "priority = var.rest_priority")
            ),
            "main.tf",
            "aws_route53_resolver_firewall_rule.block_rest.priority: ${var.rest_priority} cannot "
            "be evaluated without Terraform",
        ),
    ],
)
def test_malformed_input_names_the_file_and_path(
    tmp_path: Path, change, file: str, message: str
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    docs = aws.setup()
    if file != "main.tf":
        aws.write_setup(src, docs)
    change(docs, src)
    done = imported(tmp_path / "out", str(src))
    assert done.returncode == 1, done.stderr
    assert f"{src / file}: " in done.stderr and message in done.stderr, done.stderr
    assert not (tmp_path / "out" / "firewall.conf").exists()


def test_one_vpc_of_several_with_vpc(tmp_path: Path) -> None:
    docs = aws.setup()
    _broken(
        docs,
        "list-firewall-rule-group-associations.json",
        ("FirewallRuleGroupAssociations", 3, "Priority"),
        9000,
    )
    src = aws.write_setup(tmp_path / "src", docs)
    done = imported(
        tmp_path / "out", str(src), "--vpc", aws.VPCS[1], "--feeds", str(_no_feeds(tmp_path))
    )
    assert done.returncode == 0, done.stderr
    conf = (tmp_path / "out" / "firewall.conf").read_text()
    assert "group corp-blocks 9000 {" in conf and f"of {aws.VPCS[1]} at priority 9000" in conf
    # --feeds null: the malware rule too is commented out, with the reason
    assert "# rule block-malware 120 BLOCK AWSManagedDomainsMalwareDomainList" in conf


def _no_feeds(tmp_path: Path) -> Path:
    path = tmp_path / "no-feeds.json"
    path.write_text(json.dumps({"AWSManagedDomainsMalwareDomainList": None}))
    return path


def test_the_aws_command_dispatches(capsys: pytest.CaptureFixture[str]) -> None:
    assert aws_command.main(["nope"]) == 1
    assert "unknown subcommand 'nope' (one of import, export)" in capsys.readouterr().err
    assert run_cli("aws", "import", "-h").returncode == 0
