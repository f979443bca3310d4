"""dnsfw aws export - write what creates a Corefile's firewall policy in Route 53 DNS Firewall.

    dnsfw aws export -conf FILE [--format cli|cloudformation|terraform] [--vpc VPC]
                     [--out DIR] [--firewall LINE] [--strict]

Reads the Corefile as ``dnsfw check`` does (file lists read, url lists downloaded) and writes,
in DIR (default ``route53-firewall``):

* ``cloudformation`` (default): ``firewall.template.json``, one
  ``AWS::Route53Resolver::FirewallDomainList`` per list (inline ``Domains``), one
  ``FirewallRuleGroup`` per group with its rules embedded (CloudFormation's rules have no
  names: the group's ``Metadata.dnsfw.rules`` keeps them by priority) and one
  ``FirewallRuleGroupAssociation`` per group with the VPC parameter ``VpcId``.
* ``terraform``: ``main.tf`` with ``aws_route53_resolver_firewall_domain_list``,
  ``_rule_group``, ``_rule``, ``_rule_group_association`` (``var.vpc_id``) and, for
  ``fail open``, ``aws_route53_resolver_firewall_config``.
* ``cli``: AWS CLI input files, numbered in the order to run them
  (``create-firewall-domain-list``, ``update-firewall-domains`` in batches of 1,000,
  ``create-firewall-rule-group``, ``create-firewall-rule``, ``associate-firewall-rule-group``,
  ``update-firewall-config``), and ``apply.sh``, which runs them with ``aws route53resolver``
  and fills in the IDs each step returns (``@list:NAME@``, ``@group:NAME@``, ``@vpc@``).

``--vpc`` is the VPC the rule groups are associated with (without it: a parameter,
``VpcId``, ``var.vpc_id`` or ``VPC_ID=vpc-... ./apply.sh``). Lists of more than 1,000
domains are also written as ``lists/NAME.txt``: CloudFormation reads them from S3
(``DomainFileUrl``: upload them under the ``DomainFilesUrl`` parameter) and Terraform from
the file; any list's file can be imported with ``aws route53resolver import-firewall-domains
--operation REPLACE --domain-file-url s3://...``.

Mapping: group -> rule group, associated with the group's priority (Route 53 takes 100-9900
per VPC: other priorities are renumbered in order, and reported); rule -> FirewallRule
(Priority, Action, BlockResponse NODATA/NXDOMAIN/OVERRIDE with BlockOverrideDomain,
BlockOverrideDnsType CNAME and BlockOverrideTtl, Qtype, FirewallDomainRedirectionAction
INSPECT/TRUST); list -> FirewallDomainList, each entry as Route 53 stores it
(``example.com.``, ``*.example.com.``, ``*.``).

What Route 53 cannot do is reported on stderr (``FILE:LINE - ...``) with what was exported
instead, or why nothing was: a group with ``clients`` (Route 53 has no per-client rules:
not exported), a sinkhole ``response override IP`` (exported as NODATA), ``hosts`` and
``adblock`` lists (exported as their plain domains), ``url`` lists (a snapshot of the copy
just downloaded; a list that cannot be downloaded is not exported, nor are its rules),
firewall zones other than the root, ``block_ttl``, ``bypass_signals``, ``fail open`` in
CloudFormation (no resource for it). Quotas: more than 100 rules in a group, 5 groups for one
VPC, 100,000 domains across the lists or 250,000 in one import file are reported (the
adjustable ones can be raised in Service Quotas). Entries with ``_`` are exported as they
are: AWS's documentation allows only letters, digits and ``-``, but the field report's
working Route 53 list holds ``__cloud_init_expected_not_found__.``.

Exit status: 0 when written; 1 for a bad Corefile or arguments, no firewall to export (or
several without ``--firewall LINE``, the line of the one to export), or, with ``--strict``,
anything reported (then nothing is written).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from plugins.firewall import FIREWALLS, Firewall
from plugins.firewall.config import DEFAULT_BLOCK_TTL, FirewallSpec
from plugins.firewall.lists import ListError
from plugins.firewall.policy import BLOCK, Group, Rule
from plugins.firewall.sources import ListSlot
from proxy.config import load
from proxy.corefile import CorefileError

from . import model

FORMATS = ("cloudformation", "terraform", "cli")
DEFAULT_OUT = "route53-firewall"
VPC_ID = re.compile(r"vpc-(?:[0-9a-f]{8}|[0-9a-f]{17})")  # as CloudFormation checks it
INLINE_MAX = 1_000  # domains of a list written inline; a longer list also gets lists/NAME.txt


@dataclass(frozen=True)
class Note:
    """One thing exported differently from the Corefile, or not at all, or over a quota."""

    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line} - {self.message}"


@dataclass(frozen=True)
class DomainListOut:
    name: str
    domains: tuple[str, ...]  # as Route 53 stores them: trailing dot, '*.'


@dataclass(frozen=True)
class RuleOut:
    name: str
    priority: int
    action: str
    list: str
    block_response: str | None = None
    override_domain: str | None = None
    override_ttl: int | None = None
    qtype: str | None = None
    redirection: str = model.INSPECT


@dataclass(frozen=True)
class GroupOut:
    name: str
    priority: int  # the association's, 100-9900
    rules: tuple[RuleOut, ...]


@dataclass
class Export:
    """The Route 53 policy for one firewall, and what it could not carry (``notes``)."""

    source: str
    lists: list[DomainListOut] = field(default_factory=list)
    groups: list[GroupOut] = field(default_factory=list)
    fail_open: bool = False
    notes: list[Note] = field(default_factory=list)


class ExportError(Exception):
    """Nothing can be exported (no firewall, several, none of its groups)."""


# --- the Corefile's firewall as Route 53 objects --------------------------------------------


def translate(firewall: Firewall) -> Export:
    """The Route 53 policy that decides as ``firewall`` does, with a note for every difference."""
    spec = firewall.spec
    out = Export(source=spec.file, fail_open=spec.fail_open)
    note = out.notes.append
    if spec.zones != (".",):
        note(
            Note(
                spec.file,
                spec.line,
                f"the firewall filters only names under {', '.join(spec.zones)}; Route 53 DNS "
                "Firewall filters every query of the VPC: exported as filtering every name",
            )
        )
    if spec.block_ttl != DEFAULT_BLOCK_TTL:
        note(
            Note(
                spec.file,
                spec.line,
                f"block_ttl {spec.block_ttl}: Route 53 has no setting for the TTL of its "
                "NODATA/NXDOMAIN block answers: not exported",
            )
        )
    if spec.bypass_signals:
        note(
            Note(
                spec.file,
                spec.line,
                "bypass_signals on: Route 53 has no such answers: not exported (a BLOCK rule "
                "on use-application-dns.net with response nxdomain does the first)",
            )
        )
    used = {rule.list for group in spec.groups if not group.clients for rule in group.rules}
    exported = {}
    for slot in firewall.slots.values():
        if slot.spec.name in used:
            domains = _domains(slot, out.notes)
            if domains is not None:
                exported[slot.spec.name] = DomainListOut(slot.spec.name, domains)
    out.lists = list(exported.values())
    groups = [g for g in spec.groups if _exportable(g, spec, out.notes)]
    priorities = _association_priorities([g.priority for g in groups])
    if priorities != [g.priority for g in groups]:
        moved = ", ".join(
            f"{g.name} {g.priority}->{p}" for g, p in zip(groups, priorities, strict=True)
        )
        note(
            Note(
                spec.file,
                spec.line,
                "Route 53 takes association priorities 100-9900: group priorities renumbered "
                f"in the same order ({moved})",
            )
        )
    for group, priority in zip(groups, priorities, strict=True):
        rules = _rules(group.rules, exported, out.notes)
        out.groups.append(GroupOut(group.name, priority, rules))
    _quotas(firewall, out)
    if not out.groups:
        raise ExportError(
            f"{spec.file}:{spec.line} - nothing to export: "
            + "; ".join(n.message for n in out.notes)
        )
    return out


def _exportable(group: Group, spec: FirewallSpec, notes: list[Note]) -> bool:
    if not group.clients:
        return True
    where = (group.rules[0].file, group.rules[0].line) if group.rules else (spec.file, spec.line)
    clients = " ".join(str(c) for c in group.clients)
    notes.append(
        Note(
            *where,
            f"group '{group.name}' applies only to clients {clients}; Route 53 has no "
            "per-client rules (a policy applies to a whole VPC): the group is not exported "
            "(export it from a Corefile without 'clients' for the VPC those clients are in)",
        )
    )
    return False


def _domains(slot: ListSlot, notes: list[Note]) -> tuple[str, ...] | None:
    """The list's entries as Route 53 domains, or None when it has no content to export."""
    spec = slot.spec
    where = (spec.file, spec.line)
    if slot.current is None:
        notes.append(
            Note(
                *where,
                f"list '{spec.name}' could not be downloaded from {spec.url} and dnsfw has "
                "no copy of it: not exported, nor the rules that use it",
            )
        )
        return None
    entries = list(slot.current.entries())
    if spec.kind == "url":
        notes.append(
            Note(
                *where,
                f"list '{spec.name}' is downloaded from {spec.url} every {spec.refresh:g}s; "
                f"Route 53 cannot fetch it: exported as a snapshot of its {len(entries)} "
                "entries now (export again to update it)",
            )
        )
    if spec.fmt == "hosts":
        notes.append(
            Note(
                *where,
                f"list '{spec.name}' (format hosts): exported as its {len(entries)} names "
                "(exact names; the addresses are not used by a firewall rule)",
            )
        )
    elif spec.fmt == "adblock":
        skipped = (
            f"; {slot.skipped} other lines skipped, as dnsfw skips them" if slot.skipped else ""
        )
        notes.append(
            Note(
                *where,
                f"list '{spec.name}' (format adblock): exported as its plain domains, each "
                f"'||name^' as 'name.' and '*.name.' ({len(entries)} entries){skipped}",
            )
        )
    return tuple(model.domain_text(e) for e in entries)


def _association_priorities(priorities: list[int]) -> list[int]:
    """The groups' priorities if Route 53 takes them all, else the same order spread over
    100-9900 (101, 201, ... as the console suggests)."""
    allowed = model.ASSOCIATION_PRIORITIES
    if all(p in allowed for p in priorities):
        return priorities
    step = min(100, (allowed.stop - 1 - allowed.start) // len(priorities))
    first = allowed.start + 1 if step == 100 else allowed.start
    ranks = {p: i for i, p in enumerate(sorted(priorities))}
    return [first + ranks[p] * step for p in priorities]


def _rules(
    rules: Iterable[Rule], lists: dict[str, DomainListOut], notes: list[Note]
) -> tuple[RuleOut, ...]:
    rules = list(rules)
    # Route 53 wants positive priorities: shift a group that uses 0 (the order is kept)
    shift = 1 if any(r.priority == 0 for r in rules) else 0
    if shift:
        notes.append(
            Note(
                rules[0].file,
                rules[0].line,
                f"group '{rules[0].group}' has a rule with priority 0; Route 53 takes positive "
                "priorities: its rule priorities are exported one higher (the same order)",
            )
        )
    out = []
    for rule in rules:
        if rule.list not in lists:
            notes.append(
                Note(
                    rule.file,
                    rule.line,
                    f"rule '{rule.name}' not exported: its list '{rule.list}' was not",
                )
            )
            continue
        out.append(_rule(rule, rule.priority + shift, notes))
    return tuple(out)


def _rule(rule: Rule, priority: int, notes: list[Note]) -> RuleOut:
    qtype = model.qtype_text(rule.qtype) if rule.qtype is not None else None
    base = RuleOut(
        rule.name,
        priority,
        rule.action,
        rule.list,
        qtype=qtype,
        redirection=model.redirection(rule.trust),
    )
    if rule.action != BLOCK:
        return base
    response = rule.response
    if response.kind == "override" and response.target_name is not None:
        return replace(
            base,
            block_response=model.OVERRIDE,
            override_domain=response.target_name,
            override_ttl=response.ttl,
        )
    if response.kind == "override":
        notes.append(
            Note(
                rule.file,
                rule.line,
                f"rule '{rule.name}': response override {response.target_ip} (a sinkhole "
                "address); Route 53 overrides only with a CNAME: exported as NODATA",
            )
        )
        return replace(base, block_response=model.NODATA)
    return replace(base, block_response=model.block_response(response.kind))


def _quotas(firewall: Firewall, out: Export) -> None:
    spec = firewall.spec
    where = (spec.file, spec.line)
    if len(out.groups) > model.GROUPS_PER_VPC:
        out.notes.append(
            Note(
                *where,
                f"{len(out.groups)} rule groups: Route 53 associates at most "
                f"{model.GROUPS_PER_VPC} with one VPC (a fixed quota): the associations beyond "
                "it will fail",
            )
        )
    lines = {g.name: g.rules[0] for g in spec.groups if g.rules}
    for group in out.groups:
        if len(group.rules) > model.RULES_PER_GROUP:
            first = lines[group.name]
            out.notes.append(
                Note(
                    first.file,
                    first.line,
                    f"group '{group.name}' has {len(group.rules)} rules: over Route 53's "
                    f"default quota of {model.RULES_PER_GROUP} rules per rule group (raise it in "
                    "Service Quotas first)",
                )
            )
    total = sum(len(dl.domains) for dl in out.lists)
    if total > model.DOMAINS_PER_ACCOUNT:
        out.notes.append(
            Note(
                *where,
                f"{total} domains across the lists: over Route 53's default quota of "
                f"{model.DOMAINS_PER_ACCOUNT:,} domains per account and Region (raise it in "
                "Service Quotas first)",
            )
        )
    specs = {s.name: s for s in spec.lists}
    for dl in out.lists:
        if len(dl.domains) > model.DOMAINS_PER_IMPORT_FILE:
            s = specs[dl.name]
            out.notes.append(
                Note(
                    s.file,
                    s.line,
                    f"list '{dl.name}' has {len(dl.domains)} domains: over the "
                    f"{model.DOMAINS_PER_IMPORT_FILE:,} of one import file (CloudFormation's "
                    "DomainFileUrl): use the cli format's batches or split the list",
                )
            )


# --- writers: {relative path: text} ---------------------------------------------------------


def _json(value: object) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False) + "\n"


def _list_file(dl: DomainListOut) -> tuple[str, str]:
    return f"lists/{dl.name}.txt", "".join(d + "\n" for d in dl.domains)


def _unique(base: str, taken: set[str]) -> str:
    """``base``, or ``base2``, ``base3``... when taken (names that differ only in
    characters the target's identifiers cannot hold)."""
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}{n}"
    taken.add(name)
    return name


def _logical_id(prefix: str, name: str, taken: set[str]) -> str:
    """A CloudFormation logical ID (letters and digits): ``ListEC2Internal``."""
    words = re.split(r"[^A-Za-z0-9]+", name)
    return _unique(prefix + "".join(w[:1].upper() + w[1:] for w in words), taken)


def cloudformation(export: Export, vpc: str | None) -> dict[str, str]:
    files: dict[str, str] = {}
    taken: set[str] = set()
    parameters: dict[str, dict] = {
        "VpcId": {
            "Type": "AWS::EC2::VPC::Id",
            "Description": "The VPC the rule groups are associated with",
            **({"Default": vpc} if vpc else {}),
        }
    }
    resources: dict[str, dict] = {}
    list_ids = {}
    for dl in export.lists:
        logical = list_ids[dl.name] = _logical_id("List", dl.name, taken)
        properties: dict[str, object] = {"Name": dl.name}
        if len(dl.domains) > INLINE_MAX:
            path, text = _list_file(dl)
            files[path] = text
            properties["DomainFileUrl"] = {"Fn::Sub": "${DomainFilesUrl}/" + path}
            parameters["DomainFilesUrl"] = {
                "Type": "String",
                "Description": "The S3 URL (s3://bucket/prefix) where lists/*.txt were uploaded",
            }
        else:
            properties["Domains"] = list(dl.domains)
        resources[logical] = {
            "Type": model.CFN + "FirewallDomainList",
            "Properties": properties,
        }
    for group in export.groups:
        logical = _logical_id("Group", group.name, taken)
        resources[logical] = {
            "Type": model.CFN + "FirewallRuleGroup",
            # CloudFormation's rules have no Name: keep dnsfw's by priority
            "Metadata": {"dnsfw": {"rules": {str(r.priority): r.name for r in group.rules}}},
            "Properties": {
                "Name": group.name,
                "FirewallRules": [_cfn_rule(r, list_ids[r.list]) for r in group.rules],
            },
        }
        resources[_logical_id(logical + "Association", "", taken)] = {
            "Type": model.CFN + "FirewallRuleGroupAssociation",
            "Properties": {
                "Name": group.name,
                "FirewallRuleGroupId": {"Fn::GetAtt": [logical, "Id"]},
                "Priority": group.priority,
                "VpcId": {"Ref": "VpcId"},
            },
        }
    template = {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": f"Route 53 Resolver DNS Firewall policy exported by dnsfw from {os.path.basename(export.source)}",
        "Parameters": parameters,
        "Resources": resources,
    }
    files["firewall.template.json"] = _json(template)
    return files


def _cfn_rule(rule: RuleOut, list_logical: str) -> dict[str, object]:
    """CloudFormation's embedded rule: the API's fields without Name and the group's ID."""
    out = _api_rule(rule, None, {"Fn::GetAtt": [list_logical, "Id"]})
    del out["Name"], out["FirewallRuleGroupId"]
    return out


def _api_rule(rule: RuleOut, group_id: object, list_id: object) -> dict[str, object]:
    """A rule under the API's names (CreateFirewallRule's input, CloudFormation's and, through
    :data:`model.TERRAFORM`, Terraform's), with the group's and list's IDs as given."""
    out: dict[str, object] = {
        "Name": rule.name,
        "FirewallRuleGroupId": group_id,
        "FirewallDomainListId": list_id,
        "Priority": rule.priority,
        "Action": rule.action,
    }
    if rule.block_response is not None:
        out["BlockResponse"] = rule.block_response
    if rule.override_domain is not None:
        out["BlockOverrideDomain"] = rule.override_domain
        out["BlockOverrideDnsType"] = model.BLOCK_OVERRIDE_DNS_TYPE
        out["BlockOverrideTtl"] = rule.override_ttl
    if rule.qtype is not None:
        out["Qtype"] = rule.qtype
    out["FirewallDomainRedirectionAction"] = rule.redirection
    return out


def terraform(export: Export, vpc: str | None) -> dict[str, str]:
    files: dict[str, str] = {}
    taken: set[str] = set()
    blocks = [
        f"# Route 53 Resolver DNS Firewall policy exported by dnsfw from {os.path.basename(export.source)}"
    ]
    variable = {
        "type": _Raw("string"),
        "description": "The VPC the rule groups are associated with",
    }
    blocks.append(_hcl_block('variable "vpc_id"', variable, ({"default": vpc} if vpc else {})))
    list_refs = {}
    for dl in export.lists:
        label = _tf_label(dl.name, taken)
        list_refs[dl.name] = _Raw(f"{model.TF}domain_list.{label}.id")
        if len(dl.domains) > INLINE_MAX:
            path, text = _list_file(dl)
            files[path] = text
            domains = _Raw(f'compact(split("\\n", file("${{path.module}}/{path}")))')
        else:
            domains = list(dl.domains)
        blocks.append(_tf_resource("domain_list", label, {"Name": dl.name, "Domains": domains}))
    for group in export.groups:
        label = _tf_label(group.name, taken)
        group_id = _Raw(f"{model.TF}rule_group.{label}.id")
        blocks.append(_tf_resource("rule_group", label, {"Name": group.name}))
        for rule in group.rules:
            rule_label = _tf_label(f"{group.name}_{rule.name}", taken)
            body = _api_rule(rule, group_id, list_refs[rule.list])
            blocks.append(_tf_resource("rule", rule_label, body))
        association = {
            "Name": group.name,
            "FirewallRuleGroupId": group_id,
            "Priority": group.priority,
            "VpcId": _Raw("var.vpc_id"),
        }
        blocks.append(_tf_resource("rule_group_association", label, association))
    if export.fail_open:
        blocks.append(
            _hcl_block(
                f'resource "{model.TF}config" "vpc"',
                {"resource_id": _Raw("var.vpc_id"), "firewall_fail_open": model.FAIL_OPEN},
            )
        )
    files["main.tf"] = "\n\n".join(blocks) + "\n"
    return files


def _tf_resource(part: str, label: str, fields: dict[str, object]) -> str:
    """A Terraform resource block from the API's fields, under the aws provider's names (the
    import reads them back through the same :data:`model.TERRAFORM`)."""
    names = {api: attribute for attribute, api in model.TERRAFORM[part].items()}
    body = {names[key]: value for key, value in fields.items()}
    return _hcl_block(f'resource "{model.TF}{part}" "{label}"', body)


class _Raw(str):
    """An HCL expression, written as it is (a reference, a function call)."""


def _tf_label(name: str, taken: set[str]) -> str:
    """A Terraform resource name: letters, digits, '_' and '-', not starting with a digit."""
    return _unique(name if not name[:1].isdigit() else "_" + name, taken)


def _hcl_value(value: object) -> str:
    if isinstance(value, _Raw):
        return str(value)
    if isinstance(value, list):
        if not value:
            return "[]"
        return "[\n" + "".join(f"    {_hcl_value(v)},\n" for v in value) + "  ]"
    return json.dumps(value)  # strings (no '${' in names or domains) and integers


def _hcl_block(header: str, *bodies: dict[str, object]) -> str:
    body = {k: v for b in bodies for k, v in b.items()}
    width = max(len(k) for k in body)
    lines = [f"  {k:<{width}} = {_hcl_value(v)}" for k, v in body.items()]
    return header + " {\n" + "\n".join(lines) + "\n}"


def cli(export: Export, vpc: str | None) -> dict[str, str]:
    """AWS CLI input files, numbered in the order ``apply.sh`` runs them."""
    steps: list[tuple[str, str, dict[str, object], str | None]] = []  # file, op, input, id var

    def step(op: str, label: str, body: dict[str, object], capture: str | None = None) -> None:
        name = f"{len(steps) + 1:03d}-{op}.{label}.json"
        steps.append((name, op, body, capture))

    files: dict[str, str] = {}
    variables: dict[str, str] = {}  # placeholder -> shell variable
    for i, dl in enumerate(export.lists, 1):
        variables[f"@list:{dl.name}@"] = f"LIST_{i}"
        step(
            "create-firewall-domain-list",
            dl.name,
            {"CreatorRequestId": f"dnsfw-list-{dl.name}", "Name": dl.name},
            f"LIST_{i}:FirewallDomainList.Id",
        )
        for n, start in enumerate(range(0, len(dl.domains), model.DOMAINS_PER_UPDATE), 1):
            batch = list(dl.domains[start : start + model.DOMAINS_PER_UPDATE])
            step(
                "update-firewall-domains",
                f"{dl.name}.{n}",
                {"FirewallDomainListId": f"@list:{dl.name}@", "Operation": "ADD", "Domains": batch},
            )
        if len(dl.domains) > INLINE_MAX:
            path, text = _list_file(dl)
            files[path] = text
    vpc_id = vpc or "@vpc@"
    for i, group in enumerate(export.groups, 1):
        variables[f"@group:{group.name}@"] = f"GROUP_{i}"
        placeholder = f"@group:{group.name}@"
        step(
            "create-firewall-rule-group",
            group.name,
            {"CreatorRequestId": f"dnsfw-group-{group.name}", "Name": group.name},
            f"GROUP_{i}:FirewallRuleGroup.Id",
        )
        for rule in group.rules:
            body = {
                "CreatorRequestId": f"dnsfw-rule-{group.name}-{rule.name}"[:255],
                **_api_rule(rule, placeholder, f"@list:{rule.list}@"),
            }
            step("create-firewall-rule", f"{group.name}.{rule.name}", body)
        step(
            "associate-firewall-rule-group",
            group.name,
            {
                "CreatorRequestId": f"dnsfw-association-{group.name}",
                "FirewallRuleGroupId": placeholder,
                "VpcId": vpc_id,
                "Priority": group.priority,
                "Name": group.name,
            },
        )
    if export.fail_open:
        step(
            "update-firewall-config",
            "vpc",
            {"ResourceId": vpc_id, "FirewallFailOpen": model.FAIL_OPEN},
        )
    for name, _, body, _ in steps:
        files[name] = _json(body)
    files["apply.sh"] = _apply_script(export, steps, variables, vpc is None)
    return files


def _apply_script(
    export: Export,
    steps: list[tuple[str, str, dict[str, object], str | None]],
    variables: dict[str, str],
    needs_vpc: bool,
) -> str:
    """A POSIX shell script that runs each step with ``aws route53resolver`` in order and
    puts the IDs that the create steps return into the later inputs."""
    lines = [
        "#!/bin/sh",
        f"# Route 53 Resolver DNS Firewall policy exported by dnsfw from {os.path.basename(export.source)}.",
        "# Runs each input file with `aws route53resolver` (credentials and Region as the AWS CLI",
        "# finds them), in order, filling in the IDs the create steps return.",
        "set -eu",
        'cd "$(dirname "$0")"',
    ]
    if needs_vpc:
        lines.append(
            ': "${VPC_ID:?give the VPC to associate the rule groups with: VPC_ID=vpc-... ./apply.sh}"'
        )
    lines += [
        "fill() {",
        '  sed -e "s/@vpc@/${VPC_ID:-}/g" \\',
        *(f'      -e "s/{p}/${{{v}:-}}/g" \\' for p, v in variables.items()),
        '      "$1"',
        "}",
        'run() { op=$1; file=$2; shift 2; aws route53resolver "$op" --cli-input-json "$(fill "$file")" "$@"; }',
    ]
    for name, op, _, capture in steps:
        if capture is None:
            lines.append(f"run {op} {name} >/dev/null")
        else:
            var, query = capture.split(":")
            lines.append(f"{var}=$(run {op} {name} --query {query} --output text)")
    return "\n".join(lines) + "\n"


WRITERS = {"cloudformation": cloudformation, "terraform": terraform, "cli": cli}


# --- the command ----------------------------------------------------------------------------


def firewall_to_export(firewalls: list[Firewall], line: int | None) -> Firewall:
    """The one firewall to export: the only one, or the one at Corefile line ``line``."""
    if line is not None:
        chosen = [fw for fw in firewalls if fw.spec.line == line]
        if not chosen:
            raise ExportError(f"--firewall {line}: no firewall starts on that line")
        return chosen[0]
    if not firewalls:
        raise ExportError("the Corefile has no firewall to export")
    if len(firewalls) > 1:
        where = ", ".join(f"{fw.spec.file}:{fw.spec.line}" for fw in firewalls)
        raise ExportError(
            f"the Corefile has {len(firewalls)} firewalls ({where}); Route 53 applies one "
            "policy to a VPC: give --firewall LINE"
        )
    return firewalls[0]


def write(files: dict[str, str], out: str) -> None:
    for path, text in files.items():
        target = os.path.join(out, path)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "w", encoding="utf-8") as f:
            f.write(text)
        if path.endswith(".sh"):
            os.chmod(target, 0o755)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="dnsfw aws export", description=__doc__.split("\n")[0])
    parser.add_argument("-conf", "--conf", dest="conf", default="Corefile")
    parser.add_argument("--format", choices=FORMATS, default="cloudformation")
    parser.add_argument("--vpc", help="the VPC to associate the rule groups with (vpc-...)")
    parser.add_argument(
        "--out", default=DEFAULT_OUT, help=f"directory to write (default {DEFAULT_OUT})"
    )
    parser.add_argument(
        "--firewall", type=int, metavar="LINE", help="the Corefile line of the firewall to export"
    )
    parser.add_argument(
        "--strict", action="store_true", help="anything reported is an error: write nothing"
    )
    args = parser.parse_args(argv)
    if args.vpc is not None and not VPC_ID.fullmatch(args.vpc):
        print(f"dnsfw aws export: --vpc: not a VPC ID (vpc-...): {args.vpc!r}", file=sys.stderr)
        return 1
    try:
        config = load(args.conf, checking=True, probe=True)
        firewall = firewall_to_export(list(config.app.services.get(FIREWALLS)), args.firewall)
        export = translate(firewall)
    except (CorefileError, ListError) as err:
        print(err, file=sys.stderr)
        return 1
    except ExportError as err:
        print(f"dnsfw aws export: {err}", file=sys.stderr)
        return 1
    for warning in config.app.warnings:  # as `dnsfw check` prints them (a failed download...)
        print(warning, file=sys.stderr)
    if args.format == "cloudformation" and export.fail_open:
        export.notes.append(
            Note(
                firewall.spec.file,
                firewall.spec.line,
                "fail open: CloudFormation has no resource for a VPC's firewall config: not "
                "exported (`aws route53resolver update-firewall-config --resource-id VPC "
                "--firewall-fail-open ENABLED` sets it)",
            )
        )
    for note in sorted(export.notes, key=lambda n: (n.file, n.line)):
        print(note, file=sys.stderr)
    if args.strict and export.notes:
        print(
            f"dnsfw aws export: {len(export.notes)} difference(s) reported with --strict: "
            "nothing written",
            file=sys.stderr,
        )
        return 1
    write(WRITERS[args.format](export, args.vpc), args.out)
    rules = sum(len(g.rules) for g in export.groups)
    domains = sum(len(dl.domains) for dl in export.lists)
    print(
        f"{args.out}: {len(export.lists)} domain lists ({domains} domains), "
        f"{len(export.groups)} rule groups, {rules} rules ({args.format})"
    )
    return 0
