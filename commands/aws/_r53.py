"""Route 53 Resolver DNS Firewall's names, enums and quotas that ``dnsfw aws`` writes.

The field names and enums are the botocore ``route53resolver`` model's (2018-04-01; the tests
check every generated field against it); the quotas are the documented defaults
(``../shared/docs/route53-dns-firewall.md`` §1, §11: Route 53 Developer Guide, DNSLimitations).
"""

from __future__ import annotations

# BlockResponse and the override's record type (CNAME is the only one)
NODATA, NXDOMAIN, OVERRIDE = "NODATA", "NXDOMAIN", "OVERRIDE"
OVERRIDE_DNS_TYPE = "CNAME"
# FirewallDomainRedirectionAction
INSPECT = "INSPECT_REDIRECTION_DOMAIN"
TRUST = "TRUST_REDIRECTION_DOMAIN"
# FirewallFailOpen of a VPC's firewall config (DISABLED, fail closed, is the default)
FAIL_OPEN, FAIL_CLOSED = "ENABLED", "DISABLED"
# the Qtype mnemonics the API takes; any other type is written TYPEn (n = 1-65534)
QTYPES = frozenset(
    {"A", "AAAA", "CAA", "CNAME", "DS", "MX", "NAPTR", "NS", "PTR", "SOA", "SPF", "SRV", "TXT"}
)

ASSOCIATION_PRIORITIES = range(100, 9901)  # unique per VPC (1-99, 9901-10000: Firewall Manager)
MAX_DOMAIN_TEXT = 255  # one domain list entry, in characters

# quotas per account and Region
DOMAINS_PER_UPDATE = 1_000  # UpdateFirewallDomains: domains per call (API limit, fixed)
DOMAINS_PER_IMPORT_FILE = 250_000  # ImportFirewallDomains / DomainFileUrl: one file
DOMAINS_PER_ACCOUNT = 100_000  # domain specifications across all domain lists (adjustable)
RULES_PER_GROUP = 100  # (adjustable)
GROUPS_PER_VPC = 5  # rule groups associated with one VPC (fixed)


def qtype_text(qtype: int, mnemonic: str) -> str:
    """The Qtype the API takes for a query type: its mnemonic if Route 53 lists it, else
    ``TYPEn`` (``HTTPS`` is ``TYPE65``)."""
    return mnemonic if mnemonic in QTYPES else f"TYPE{qtype}"


def domain_text(entry: str) -> str:
    """A dnsfw route53 entry as Route 53 stores it: with a trailing dot, ``*`` as ``*.``
    (written that way, Terraform and CloudFormation see no drift after AWS normalises it)."""
    return entry + "."
