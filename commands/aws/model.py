"""Route 53 Resolver DNS Firewall facts shared by ``dnsfw aws import`` and ``export``.

The enums and field names are botocore's ``route53resolver`` model (API 2018-04-01), which
fixes the JSON the AWS CLI prints and the API takes (``tests/test_aws_import.py`` checks them
against the installed botocore); CloudFormation and Terraform use the same values. Managed
lists and quotas are from AWS's documentation (``../shared/docs/route53-dns-firewall.md``
sections 1.2 and 11). The conversions between the API's values and a dnsfw rule's options
(domains, Qtype, BlockResponse, redirection) are here too, so that import and export are
each other's inverse by construction.
"""

from __future__ import annotations

import re

import dns.rdatatype

from plugins.firewall.lists import normalize_entry

ACTIONS = ("ALLOW", "BLOCK", "ALERT")
NODATA, NXDOMAIN, OVERRIDE = "NODATA", "NXDOMAIN", "OVERRIDE"
BLOCK_RESPONSES = (NODATA, NXDOMAIN, OVERRIDE)  # a dnsfw `response` option, upper-cased
BLOCK_OVERRIDE_DNS_TYPE = "CNAME"  # the only BlockOverrideDnsType
# FirewallDomainRedirectionAction: INSPECT is the default, TRUST is `redirection trust`
INSPECT, TRUST = "INSPECT_REDIRECTION_DOMAIN", "TRUST_REDIRECTION_DOMAIN"
REDIRECTIONS = (INSPECT, TRUST)
DNS_THREAT_PROTECTIONS = ("DGA", "DNS_TUNNELING", "DICTIONARY_DGA")  # Advanced rules
CONFIDENCE_THRESHOLDS = ("LOW", "MEDIUM", "HIGH")
MUTATION_PROTECTION = ("ENABLED", "DISABLED")
# FirewallFailOpen of a VPC's firewall config (DISABLED, fail closed, is the default)
FAIL_OPEN = "ENABLED"
# the Qtype mnemonics the API takes; any other type is written TYPEn (n = 1-65534)
QTYPES = frozenset(
    {"A", "AAAA", "CAA", "CNAME", "DS", "MX", "NAPTR", "NS", "PTR", "SOA", "SPF", "SRV", "TXT"}
)

CFN = "AWS::Route53Resolver::"
TF = "aws_route53_resolver_firewall_"
# the resource types' prefixes, and each Terraform attribute's API field per resource type
# (the aws provider's names)
TERRAFORM = {
    "domain_list": {"name": "Name", "domains": "Domains"},
    "rule_group": {"name": "Name"},
    "rule": {
        "name": "Name",
        "action": "Action",
        "block_override_dns_type": "BlockOverrideDnsType",
        "block_override_domain": "BlockOverrideDomain",
        "block_override_ttl": "BlockOverrideTtl",
        "block_response": "BlockResponse",
        "firewall_domain_list_id": "FirewallDomainListId",
        "firewall_domain_redirection_action": "FirewallDomainRedirectionAction",
        "firewall_rule_group_id": "FirewallRuleGroupId",
        "priority": "Priority",
        "q_type": "Qtype",
        "dns_threat_protection": "DnsThreatProtection",
        "confidence_threshold": "ConfidenceThreshold",
    },
    "rule_group_association": {
        "name": "Name",
        "firewall_rule_group_id": "FirewallRuleGroupId",
        "priority": "Priority",
        "vpc_id": "VpcId",
        "mutation_protection": "MutationProtection",
    },
}

# the members of each shape that dnsfw reads or writes
RULE_FIELDS = (
    "FirewallRuleGroupId",
    "FirewallDomainListId",
    "FirewallThreatProtectionId",
    "Name",
    "Priority",
    "Action",
    "BlockResponse",
    "BlockOverrideDomain",
    "BlockOverrideDnsType",
    "BlockOverrideTtl",
    "FirewallDomainRedirectionAction",
    "Qtype",
    "DnsThreatProtection",
    "ConfidenceThreshold",
    "FirewallRuleType",
)
DOMAIN_LIST_FIELDS = ("Id", "Arn", "Name", "ManagedOwnerName", "ManagedListType", "Category")
RULE_GROUP_FIELDS = ("Id", "Arn", "Name", "OwnerId", "ShareStatus")
ASSOCIATION_FIELDS = (
    "Id",
    "FirewallRuleGroupId",
    "VpcId",
    "Name",
    "Priority",
    "MutationProtection",
    "ManagedOwnerName",
)

# AWS managed domain lists (ManagedOwnerName set; their IDs differ per Region, so they are
# matched by name) and what each holds
MANAGED_LISTS = {
    "AWSManagedDomainsMalwareDomainList": "domains that send, host or distribute malware",
    "AWSManagedDomainsBotnetCommandandControl": "botnet command-and-control domains",
    "AWSManagedDomainsAggregateThreatList": "malware, ransomware, botnet, spyware, DNS "
    "tunneling: a superset of the other threat lists",
    "AWSManagedDomainsAmazonGuardDutyThreatList": "GuardDuty's own intelligence (6 finding "
    "types): no public list holds it",
}

DOMAIN_LIST_ID = re.compile(r"rslvr-fdl-[0-9a-z]+")  # as it appears in a file name
ASSOCIATION_PRIORITIES = range(100, 9901)  # unique per VPC (1-99, 9901-10000: Firewall Manager)
LIST_DOMAINS_PAGE = 5_000  # ListFirewallDomains MaxResults
DOMAINS_PER_UPDATE = 1_000  # UpdateFirewallDomains: domains per call (API limit, fixed)

# Default quotas per account and Region, from the Route 53 Developer Guide's "Quotas on Route
# 53 Resolver DNS Firewall" (DNSLimitations, #limits-api-entities-resolver-dns-firewall; as
# awsdocs/amazon-route53-docs doc_source/DNSLimitations.md states them): 5 rule groups
# associated to a VPC (fixed), 1,000 rule groups, 100 rules within a rule group, 100,000
# domain specifications across ALL domain lists (not per list). The issue's "1,000 rules per
# group" is the rule groups' quota. Exceeding an adjustable one is a warning (Service Quotas).
GROUPS_PER_VPC = 5
RULES_PER_GROUP = 100
DOMAINS_PER_ACCOUNT = 100_000
# one ImportFirewallDomains / DomainFileUrl file: 250,000 in the current guide (an older
# revision said 100,000; ../shared/docs/route53-dns-firewall.md §11)
DOMAINS_PER_IMPORT_FILE = 250_000


def domain_text(entry: str) -> str:
    """A dnsfw route53 entry (``example.com``, ``*.example.com``, ``*``) as Route 53 stores it:
    with a trailing dot, ``*`` as ``*.`` (written that way, Terraform and CloudFormation see
    no drift after AWS normalises it)."""
    return entry + "."


def domain_entry(text: str) -> str:
    """A Route 53 domain (``example.com.``, ``*.``) as a dnsfw list entry: ``domain_text``'s
    inverse. Raises ``ValueError(reason)`` for a domain dnsfw cannot take."""
    return normalize_entry(text)


def qtype_text(qtype: int) -> str:
    """The Qtype the API takes for a query type: its mnemonic if Route 53 lists it, else
    ``TYPEn`` (``HTTPS`` is ``TYPE65``). dnsfw's ``qtype`` option takes either."""
    mnemonic = dns.rdatatype.to_text(qtype)
    return mnemonic if mnemonic in QTYPES else f"TYPE{qtype}"


def qtype_value(text: str) -> int:
    """A Qtype (``MX``, ``TYPE65``) as its number; ``ValueError`` if unknown or out of range."""
    try:
        value = int(dns.rdatatype.from_text(text.upper()))
    except (dns.rdatatype.UnknownRdatatype, ValueError):
        raise ValueError(f"unknown Qtype {text!r}") from None
    if not 1 <= value <= 65534:
        raise ValueError(f"Qtype {text!r} is out of range (1-65534)")
    return value


def block_response(kind: str) -> str:
    """A dnsfw block response kind (``nodata``, ``nxdomain``, ``override``) as BlockResponse."""
    return kind.upper()


def response_option(block_response: str) -> str:
    """A BlockResponse as the dnsfw ``response`` option's kind: ``block_response``'s inverse."""
    return block_response.lower()


def redirection(trust: bool) -> str:
    """A dnsfw rule's ``redirection trust`` (or its default, inspect) as the API's value."""
    return TRUST if trust else INSPECT
