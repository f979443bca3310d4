"""Route 53 Resolver DNS Firewall facts shared by ``dnsfw aws import`` and ``export``.

The enums and field names are botocore's ``route53resolver`` model (API 2018-04-01), which
fixes the JSON the AWS CLI prints and the API takes (``tests/test_aws_model.py`` checks them
against the installed botocore); CloudFormation and Terraform use the same values. Managed
lists and quotas are from AWS's documentation (``../shared/docs/route53-dns-firewall.md``
sections 1.2 and 11).
"""

from __future__ import annotations

import re

ACTIONS = ("ALLOW", "BLOCK", "ALERT")
BLOCK_RESPONSES = ("NODATA", "NXDOMAIN", "OVERRIDE")
BLOCK_OVERRIDE_DNS_TYPES = ("CNAME",)
# FirewallDomainRedirectionAction -> the dnsfw rule's `redirection` option
REDIRECTION = {"INSPECT_REDIRECTION_DOMAIN": "inspect", "TRUST_REDIRECTION_DOMAIN": "trust"}
DNS_THREAT_PROTECTIONS = ("DGA", "DNS_TUNNELING", "DICTIONARY_DGA")  # Advanced rules
CONFIDENCE_THRESHOLDS = ("LOW", "MEDIUM", "HIGH")
MUTATION_PROTECTION = ("ENABLED", "DISABLED")

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
MAX_OVERRIDE_TTL = 604800  # BlockOverrideTtl
ASSOCIATION_PRIORITY = (100, 9900)  # an association's Priority (Firewall Manager: 1-99, 9901+)
LIST_DOMAINS_PAGE = 5000  # ListFirewallDomains MaxResults
UPDATE_DOMAINS_BATCH = 1000  # UpdateFirewallDomains: domains per call (not adjustable)
# default quotas per account and Region (adjustable): a warning when exceeded
RULES_PER_GROUP = 100
DOMAINS_PER_ACCOUNT = 100_000
GROUPS_PER_VPC = 5
