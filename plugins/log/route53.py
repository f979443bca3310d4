"""The Route 53 Resolver query-log schema: written by ``log`` (``format route53``,
:class:`plugins.log.formats.Route53Format`) and read by ``dnsfw audit``
(:mod:`commands.audit.scan`), both from these names.

A line is one JSON object with :data:`FIELDS` in this order, followed by
:data:`FIREWALL_FIELDS` when the firewall's decision is logged (Route 53 logs ALERT and BLOCK,
:data:`FIREWALL_LOGGED`). Each element of ``answers`` has :data:`ANSWER_FIELDS`. The package
docstring describes every value.

dnsfw's extension: when the rule that decided matched a CNAME/DNAME target of the answer
rather than the query name, :data:`FIREWALL_REDIRECTION_DOMAIN` follows the firewall fields
(Route 53 logs the query name with the target's rule, group and list, and no target).
"""

from __future__ import annotations

VERSION = "1.100000"  # the value of the "version" field

VERSION_KEY = "version"
ACCOUNT_ID = "account_id"
REGION = "region"
VPC_ID = "vpc_id"
QUERY_TIMESTAMP = "query_timestamp"
QUERY_NAME = "query_name"
QUERY_TYPE = "query_type"
QUERY_CLASS = "query_class"
RCODE = "rcode"
ANSWERS = "answers"
SRCADDR = "srcaddr"
SRCPORT = "srcport"
TRANSPORT = "transport"
SRCIDS = "srcids"
FIELDS = (
    VERSION_KEY,
    ACCOUNT_ID,
    REGION,
    VPC_ID,
    QUERY_TIMESTAMP,
    QUERY_NAME,
    QUERY_TYPE,
    QUERY_CLASS,
    RCODE,
    ANSWERS,
    SRCADDR,
    SRCPORT,
    TRANSPORT,
    SRCIDS,
)

FIREWALL_RULE_ACTION = "firewall_rule_action"
FIREWALL_RULE_GROUP_ID = "firewall_rule_group_id"  # dnsfw writes the rule group's name
FIREWALL_DOMAIN_LIST_ID = "firewall_domain_list_id"  # and the domain list's name
FIREWALL_FIELDS = (FIREWALL_RULE_ACTION, FIREWALL_RULE_GROUP_ID, FIREWALL_DOMAIN_LIST_ID)
# dnsfw's own: the CNAME/DNAME target (presentation form, trailing dot) the rule matched
FIREWALL_REDIRECTION_DOMAIN = "firewall_redirection_domain"
FIREWALL_LOGGED = frozenset({"ALERT", "BLOCK"})  # actions Route 53 logs the firewall fields of

RDATA = "Rdata"
TYPE = "Type"
CLASS = "Class"
ANSWER_FIELDS = (RDATA, TYPE, CLASS)

# the transport field's values: Route 53 writes UDP and TCP, and DoH for its DoH endpoints
# (the log contract, ../shared/docs/route53-dns-firewall.md, marks that value UNCONFIRMED);
# DoT and DoQ are named the same way
TRANSPORTS = {"udp": "UDP", "tcp": "TCP", "tls": "DoT", "https": "DoH", "quic": "DoQ"}
