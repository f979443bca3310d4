"""Route 53 DNS Firewall fixtures for ``dnsfw aws`` tests, built from botocore's model.

Every API response here is checked against its output shape in the installed botocore's
``route53resolver`` model (types, required members, lengths and ranges) by :func:`checked`,
so the fixtures are what the AWS CLI prints and what boto3 returns. :func:`setup` is one
realistic account: two rule groups associated with two VPCs, custom lists (one over two
pages), AWS managed lists, OVERRIDE, Qtype, TRUST redirection and an Advanced rule.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import botocore.session
from botocore.validate import ParamValidator

MODEL = botocore.session.get_session().get_service_model("route53resolver")
ACCOUNT = "123456789012"
REGION = "eu-west-1"
MANAGED_OWNER = "Route 53 Resolver DNS Firewall"


def checked(doc: dict, shape: str) -> dict:
    """``doc`` after checking it against the model's shape ``shape``."""
    report = ParamValidator().validate(doc, MODEL.shape_for(shape))
    assert not report.has_errors(), report.generate_report()
    return doc


def arn(kind: str, id: str) -> str:
    return f"arn:aws:route53resolver:{REGION}:{ACCOUNT}:{kind}/{id}"


def domain_list(id: str, name: str, managed: bool = False) -> dict:
    meta = {"Id": id, "Arn": arn("firewall-domain-list", id), "Name": name}
    if managed:
        meta["ManagedOwnerName"] = MANAGED_OWNER
    else:
        meta["CreatorRequestId"] = f"create-{name}"
    return meta


def rule(group: str, name: str, priority: int, action: str, list_id: str | None, **extra) -> dict:
    fields: dict[str, Any] = {
        "FirewallRuleGroupId": group,
        "Name": name,
        "Priority": priority,
        "Action": action,
        "CreatorRequestId": f"create-{name}",
        "CreationTime": "2025-03-01T10:00:00.000000Z",
        "ModificationTime": "2025-03-01T10:00:00.000000Z",
        **extra,
    }
    if list_id is not None:
        fields["FirewallDomainListId"] = list_id
        fields.setdefault("FirewallDomainRedirectionAction", "INSPECT_REDIRECTION_DOMAIN")
    return fields


EGRESS = "rslvr-frg-0a1b2c3d4e5f6a7b"
CORP = "rslvr-frg-1f2e3d4c5b6a7988"
GOOGLE = "rslvr-fdl-5a6b7c8d9e0f1a2b"
YAHOO = "rslvr-fdl-6b7c8d9e0f1a2b3c"
ADS = "rslvr-fdl-7c8d9e0f1a2b3c4d"
ALL = "rslvr-fdl-8d9e0f1a2b3c4d5e"
BAD = "rslvr-fdl-9e0f1a2b3c4d5e6f"
MALWARE = "rslvr-fdl-2c7e9a1f3b5d4e60"  # AWS managed: IDs differ per Region
GUARDDUTY = "rslvr-fdl-3d8f0b2a4c6e5f71"
VPCS = ("vpc-0a1b2c3d4e5f60718", "vpc-0f1e2d3c4b5a69788")

GOOGLE_DOMAINS = ["gmail.com.", "*.google.com.", "google.com."]  # AWS stores a trailing dot


def setup() -> dict[str, dict]:
    """The AWS CLI's output for one account, by file name (as a user saves it)."""
    rules_egress = [
        rule(
            EGRESS,
            "allow-google",
            100,
            "ALLOW",
            GOOGLE,
            FirewallDomainRedirectionAction="TRUST_REDIRECTION_DOMAIN",
        ),
        rule(EGRESS, "alert yahoo MX", 110, "ALERT", YAHOO, Qtype="MX"),
        rule(EGRESS, "block-malware", 120, "BLOCK", MALWARE, BlockResponse="NXDOMAIN"),
        rule(EGRESS, "block-guardduty", 130, "BLOCK", GUARDDUTY, BlockResponse="NODATA"),
        rule(
            EGRESS,
            "override-ads",
            140,
            "BLOCK",
            ADS,
            BlockResponse="OVERRIDE",
            BlockOverrideDomain="example.com.",
            BlockOverrideDnsType="CNAME",
            BlockOverrideTtl=300,
        ),
        rule(
            EGRESS,
            "block-dga",
            150,
            "BLOCK",
            None,
            BlockResponse="NODATA",
            FirewallThreatProtectionId="rslvr-ftp-0a9b8c7d6e5f4a3b",
            DnsThreatProtection="DGA",
            ConfidenceThreshold="HIGH",
        ),
        rule(EGRESS, "block-rest", 900, "BLOCK", ALL, BlockResponse="NODATA"),
    ]
    association = [
        {
            "Id": f"rslvr-frgassoc-{i}a2b3c4d5e6f7a8b9",
            "Arn": arn("firewall-rule-group-association", f"rslvr-frgassoc-{i}"),
            "FirewallRuleGroupId": group,
            "VpcId": vpc,
            "Name": f"{name}-{vpc}",
            "Priority": priority,
            "MutationProtection": "DISABLED",
            "Status": "COMPLETE",
        }
        for i, (vpc, (group, name, priority)) in enumerate(
            (vpc, g) for vpc in VPCS for g in ((EGRESS, "egress", 200), (CORP, "corp", 101))
        )
    ]
    group_meta = [
        {
            "Id": EGRESS,
            "Arn": arn("firewall-rule-group", EGRESS),
            "Name": "egress allowlist",
            "OwnerId": ACCOUNT,
            "ShareStatus": "NOT_SHARED",
        },
        {
            "Id": CORP,
            "Arn": arn("firewall-rule-group", CORP),
            "Name": "corp-blocks",
            "OwnerId": ACCOUNT,
            "ShareStatus": "NOT_SHARED",
        },
    ]
    docs = {
        "list-firewall-rule-groups.json": checked(
            {"FirewallRuleGroups": group_meta}, "ListFirewallRuleGroupsResponse"
        ),
        f"list-firewall-rules.{EGRESS}.json": checked(
            {"FirewallRules": rules_egress}, "ListFirewallRulesResponse"
        ),
        f"list-firewall-rules.{CORP}.json": checked(
            {
                "FirewallRules": [
                    rule(CORP, "block-bad", 10, "BLOCK", BAD, BlockResponse="NXDOMAIN")
                ]
            },
            "ListFirewallRulesResponse",
        ),
        "list-firewall-domain-lists.json": checked(
            {
                "FirewallDomainLists": [
                    domain_list(GOOGLE, "google"),
                    domain_list(YAHOO, "yahoo jp"),
                    domain_list(ADS, "ads"),
                    domain_list(ALL, "everything"),
                    domain_list(BAD, "corp bad"),
                    domain_list(MALWARE, "AWSManagedDomainsMalwareDomainList", managed=True),
                    domain_list(
                        GUARDDUTY, "AWSManagedDomainsAmazonGuardDutyThreatList", managed=True
                    ),
                ]
            },
            "ListFirewallDomainListsResponse",
        ),
        # two pages: the first with the NextToken the CLI prints with --max-items
        f"list-firewall-domains.{GOOGLE}.page1.json": checked(
            {"Domains": GOOGLE_DOMAINS[:2], "NextToken": "eyJ0b2tlbiI6IDJ9"},
            "ListFirewallDomainsResponse",
        ),
        f"list-firewall-domains.{GOOGLE}.page2.json": checked(
            {"Domains": GOOGLE_DOMAINS[2:]}, "ListFirewallDomainsResponse"
        ),
        f"list-firewall-domains.{YAHOO}.json": checked(
            {"Domains": ["yahoo.co.jp.", "*.yahoo.co.jp."]}, "ListFirewallDomainsResponse"
        ),
        f"list-firewall-domains.{ADS}.json": checked(
            {"Domains": ["ads.example."]}, "ListFirewallDomainsResponse"
        ),
        f"list-firewall-domains.{ALL}.json": checked(
            {"Domains": ["*."]}, "ListFirewallDomainsResponse"
        ),
        f"list-firewall-domains.{BAD}.json": checked(
            {"Domains": ["beacon.yahoo.co.jp."]}, "ListFirewallDomainsResponse"
        ),
        "list-firewall-rule-group-associations.json": checked(
            {"FirewallRuleGroupAssociations": association},
            "ListFirewallRuleGroupAssociationsResponse",
        ),
    }
    return docs


def write_setup(directory: Path, docs: dict[str, dict] | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, doc in (docs or setup()).items():
        (directory / name).write_text(json.dumps(doc, indent=2))
    return directory


# the malware feed standing in for AWSManagedDomainsMalwareDomainList, in hosts format
MALWARE_FEED = "# test feed\n127.0.0.1\tlocalhost\n127.0.0.1\tmalware.example.com\n"


def feed_catalogue(path: Path, url: str) -> Path:
    """A DNSFW_FEEDS catalogue whose 'urlhaus' (for the malware list) is served at ``url``."""
    path.write_text(
        json.dumps(
            {
                "urlhaus": {
                    "url": url,
                    "format": "hosts",
                    "refresh": "1h",
                    "replaces": ["AWSManagedDomainsMalwareDomainList"],
                }
            }
        )
    )
    return path


def applied(inputs: dict[str, dict], vpc: str) -> dict[str, dict]:
    """What the AWS CLI's list-* commands print once ``dnsfw aws export --format cli``'s
    create-* inputs (``{file name: input}``, in order) have run: each object with an ID
    assigned as Route 53 would (``rslvr-fdl-``, ``rslvr-frg-``, ...), the ``@list:NAME@`` and
    ``@group:NAME@`` placeholders replaced by them, domains in pages of 5,000; every document
    checked against the model's output shape. ``{file name: document}``, as a user saves it."""
    ids: dict[str, str] = {}
    lists, groups, associations = [], [], []
    domains: dict[str, list[str]] = {}
    rules: dict[str, list[dict]] = {}

    def new_id(kind: str, placeholder: str) -> str:
        ids[placeholder] = f"rslvr-{kind}-{len(ids):016x}"
        return ids[placeholder]

    def filled(body: dict) -> dict:
        return {k: ids.get(v, v) if isinstance(v, str) else v for k, v in body.items()}

    for name, body in inputs.items():
        op = name.split(".")[0].split("-", 1)[1]
        if op == "create-firewall-domain-list":
            id = new_id("fdl", f"@list:{body['Name']}@")
            lists.append(domain_list(id, body["Name"]))
            domains[id] = []
        elif op == "update-firewall-domains":
            domains[filled(body)["FirewallDomainListId"]] += body["Domains"]
        elif op == "create-firewall-rule-group":
            id = new_id("frg", f"@group:{body['Name']}@")
            meta = {"Id": id, "Arn": arn("firewall-rule-group", id), "Name": body["Name"]}
            groups.append({**meta, "OwnerId": ACCOUNT, "ShareStatus": "NOT_SHARED"})
            rules[id] = []
        elif op == "create-firewall-rule":
            rule = filled(body)
            rules[rule["FirewallRuleGroupId"]].append(rule)
        elif op == "associate-firewall-rule-group":
            association = {**filled(body), "VpcId": vpc, "Status": "COMPLETE"}
            association["Id"] = new_id("frgassoc", f"association {len(associations)}")
            associations.append(association)
        else:
            raise AssertionError(f"{name}: not an operation the round trip knows")
    docs = {
        "list-firewall-domain-lists.json": checked(
            {"FirewallDomainLists": lists}, "ListFirewallDomainListsResponse"
        ),
        "list-firewall-rule-groups.json": checked(
            {"FirewallRuleGroups": groups}, "ListFirewallRuleGroupsResponse"
        ),
        "list-firewall-rule-group-associations.json": checked(
            {"FirewallRuleGroupAssociations": associations},
            "ListFirewallRuleGroupAssociationsResponse",
        ),
    }
    for id, names in domains.items():
        for page, start in enumerate(range(0, max(len(names), 1), 5000), 1):
            docs[f"list-firewall-domains.{id}.page{page}.json"] = checked(
                {"Domains": names[start : start + 5000]}, "ListFirewallDomainsResponse"
            )
    for id, group_rules in rules.items():
        docs[f"list-firewall-rules.{id}.json"] = checked(
            {"FirewallRules": group_rules}, "ListFirewallRulesResponse"
        )
    return docs
