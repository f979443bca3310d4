"""dnsfw aws import - a Route 53 Resolver DNS Firewall setup as a dnsfw firewall.

    dnsfw aws import [--out DIR] [--domains ID=FILE]... [--feeds FILE] [--vpc VPC] SOURCE...
    dnsfw aws import --from-aws [--region R] [--vpc VPC] [--out DIR] [--feeds FILE]

SOURCE: a file or a directory of them (read in name order):

* JSON as the AWS CLI prints it: ``list-firewall-rule-groups``, ``get-firewall-rule-group``,
  ``list-firewall-rules`` (one file per group), ``list-firewall-domain-lists``,
  ``get-firewall-domain-list``, ``list-firewall-domains`` (its pages; the list's
  ``rslvr-fdl-...`` ID from the file name, e.g. ``list-firewall-domains.rslvr-fdl-0123.page2.json``,
  or ``--domains ID=FILE``), ``list-firewall-rule-group-associations``;
* a CloudFormation template (``.json``, ``.yaml``/``.yml``) with
  ``AWS::Route53Resolver::FirewallDomainList`` / ``FirewallRuleGroup`` /
  ``FirewallRuleGroupAssociation``;
* Terraform ``.tf`` files (python-hcl2) and ``terraform show -json`` state (``.json``).

``--from-aws`` reads the same through boto3 (standard credentials; the ``dnsfw[aws]``
extra). Writes ``DIR/firewall.conf`` (the ``firewall { ... }`` block), ``DIR/lists/NAME.txt``
per custom domain list, and ``DIR/Corefile`` (importing firewall.conf) if there is none yet.

Mapping: a rule group is a ``group`` whose priority is its association's (several VPCs
with the same associations: one group each; different ones: pick a VPC with ``--vpc``; no
association: the order of the sources, from 100); a rule is a ``rule`` (Action, Priority,
BlockResponse NODATA/NXDOMAIN/OVERRIDE with BlockOverrideDomain and BlockOverrideTtl, Qtype,
FirewallDomainRedirectionAction); a custom list a ``list NAME file``; an AWS managed list
(matched by name) a ``feed`` list from the catalogue (``plugins/firewall/data/feeds.json``)
or from ``--feeds FILE`` (JSON: managed list name -> feed name, URL, or null), and without
one its rules are commented out with the reason. Advanced rules (DnsThreatProtection,
FirewallRuleType) are commented out: dnsfw has no threat rules yet. AWS names and IDs stay
as comments. Everything not imported is reported on stderr; exit status 1 on malformed input
(naming the file and the JSON path), 0 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from plugins.firewall import feeds
from plugins.firewall.config import MAX_TTL, NAME_RE

from . import inventory as inv_
from . import model
from .inventory import DomainList, Inventory, Item, RuleGroup, SourceError, Where

ADVANCED_REASON = "dnsfw has no threat rules (DGA, DNS tunneling detection) yet"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="dnsfw aws import", description=__doc__.split("\n")[0])
    parser.add_argument("sources", nargs="*", metavar="SOURCE")
    parser.add_argument("--out", default=".", help="where to write (default: .)")
    parser.add_argument("--domains", action="append", default=[], metavar="ID=FILE")
    parser.add_argument("--feeds", metavar="FILE", help="managed list name -> feed, URL or null")
    parser.add_argument("--vpc", help="import the rule groups associated with this VPC")
    parser.add_argument("--from-aws", action="store_true", help="read the live API (boto3)")
    parser.add_argument("--region", help="with --from-aws (default: the SDK's)")
    args = parser.parse_args(argv)
    if not args.sources and not args.from_aws:
        parser.error("give SOURCE files or --from-aws")
    try:
        inv = Inventory()
        if args.from_aws:
            read_live(inv, live_client(args.region), args.vpc)
        read_sources(inv, args.sources, args.domains)
        overrides = _feed_overrides(args.feeds)
        result = convert(inv, args.vpc, overrides)
        write(result, Path(args.out))
    except SourceError as err:
        print(f"dnsfw aws import: {err}", file=sys.stderr)
        return 1
    except (OSError, feeds.CatalogueError, MissingExtra) as err:
        print(f"dnsfw aws import: {err}", file=sys.stderr)
        return 1
    for line in result.report:
        print(line, file=sys.stderr)
    print(
        f"dnsfw aws import: wrote {Path(args.out) / 'firewall.conf'}: {result.counts}",
        file=sys.stderr,
    )
    return 0


class MissingExtra(Exception):
    """A source format needs a package of the ``dnsfw[aws]`` extra."""


def _need(module: str, package: str, what: str) -> Any:
    try:
        return __import__(module)
    except ImportError:
        raise MissingExtra(f"{what} needs {package}: pip install 'dnsfw[aws]'") from None


# --- reading --------------------------------------------------------------------------------


def read_sources(inv: Inventory, sources: list[str], domains: list[str]) -> None:
    given: dict[str, str] = {}
    for spec in domains:
        list_id, eq, file = spec.partition("=")
        if not eq or not list_id or not file:
            raise SourceError(spec, "--domains", "expected ID=FILE")
        given[os.path.abspath(file)] = list_id
    files = [
        *_files(sources),
        *(f for f in given if f not in map(os.path.abspath, _files(sources))),
    ]
    for file in files:
        read_file(inv, file, given.get(os.path.abspath(file)) or inv_.list_id_in(file))


def _files(sources: list[str]) -> list[str]:
    found = []
    for source in sources:
        if os.path.isdir(source):
            found += sorted(
                os.path.join(source, name)
                for name in os.listdir(source)
                if name.endswith((".json", ".yaml", ".yml", ".tf"))
            )
        else:
            found.append(source)
    return found


def read_file(inv: Inventory, file: str, list_id: str | None) -> None:
    inv.sources.append(file)
    with open(file, encoding="utf-8-sig") as f:
        text = f.read()
    if file.endswith(".tf"):
        hcl2 = _need("hcl2", "python-hcl2", "reading Terraform .tf files")
        try:
            doc = hcl2.loads(text)
        except Exception as err:  # lark's errors have no common base worth naming
            raise SourceError(file, "$", f"not valid HCL: {str(err).splitlines()[0]}") from None
        inv_.read_terraform(inv, doc, file)
        return
    if file.endswith((".yaml", ".yml")):
        yaml = _need("yaml", "PyYAML", "reading YAML CloudFormation templates")
        try:
            doc = inv_.cloudformation_yaml(text)
        except yaml.YAMLError as err:
            raise SourceError(file, "$", f"not valid YAML: {err}") from None
    else:
        try:
            doc = json.loads(text)
        except ValueError as err:
            raise SourceError(file, "$", f"not valid JSON: {err}") from None
    if isinstance(doc, dict) and "Resources" in doc:
        inv_.read_cloudformation(inv, doc, file)
    elif isinstance(doc, dict) and "format_version" in doc and "values" in doc:
        inv_.read_terraform_state(inv, doc, file)
    else:
        inv_.read_cli(inv, doc, file, list_id)


def live_client(region: str | None) -> Any:
    boto3 = _need("boto3", "boto3", "--from-aws")
    return boto3.client("route53resolver", region_name=region)


def read_live(inv: Inventory, client: Any, vpc: str | None) -> None:
    """The live API, page by page, through the same reader as the CLI's JSON (the CLI prints
    these responses): associations (of ``vpc``), their groups and rules, every domain list,
    and the domains of each custom list a rule uses."""
    region = client.meta.region_name
    source = f"aws:route53resolver:{region}"

    def pages(operation: str, list_id: str | None = None, **kw: str) -> None:
        label = f"{source}:{operation}" + "".join(f"({v})" for v in kw.values())
        for page in client.get_paginator(operation).paginate(**kw):
            page = {k: v for k, v in page.items() if k != "ResponseMetadata"}
            inv_.read_cli(inv, page, label, list_id)

    pages("list_firewall_rule_group_associations", **({"VpcId": vpc} if vpc else {}))
    pages("list_firewall_rule_groups")
    pages("list_firewall_domain_lists")
    wanted = {a.fields.get("FirewallRuleGroupId") for a in inv.associations}
    for group_id in sorted(wanted & set(inv.groups)):
        pages("list_firewall_rules", FirewallRuleGroupId=group_id)
    used = {r.fields.get("FirewallDomainListId") for g in inv.groups.values() for r in g.rules}
    for list_id, known in sorted(inv.lists.items()):
        if list_id in used and known.managed_owner is None:
            pages("list_firewall_domains", list_id, FirewallDomainListId=list_id)
    # groups with no association of this VPC are not imported: drop them
    for group_id in set(inv.groups) - wanted:
        del inv.groups[group_id]
    inv.sources.append(source)


def _feed_overrides(path: str | None) -> dict[str, str | None]:
    if path is None:
        return {}
    with open(path, encoding="utf-8") as f:
        try:
            data = json.load(f)
        except ValueError as err:
            raise SourceError(path, "$", f"not valid JSON: {err}") from None
    if not isinstance(data, dict) or not all(
        v is None or isinstance(v, str) for v in data.values()
    ):
        raise SourceError(path, "$", "expected an object: managed list name -> feed, URL or null")
    return data


# --- converting --------------------------------------------------------------------------------


@dataclass
class Result:
    lines: list[str] = field(default_factory=list)  # firewall.conf
    files: dict[str, str] = field(default_factory=dict)  # lists/NAME.txt -> text
    report: list[str] = field(default_factory=list)
    overrides: dict[str, str | None] = field(default_factory=dict)  # --feeds
    rules: int = 0
    skipped: int = 0

    @property
    def counts(self) -> str:
        groups = sum(1 for line in self.lines if line.startswith("    group "))
        return f"{len(self.files)} list file(s), {groups} group(s), {self.rules} rule(s)" + (
            f", {self.skipped} rule(s) commented out" if self.skipped else ""
        )

    def note(self, text: str) -> None:
        self.report.append(f"warning: {text}")


class Names:
    """dnsfw names (letters, digits, '-', '_'; 1-64; not only digits) from AWS names, unique."""

    def __init__(self) -> None:
        self.taken: set[str] = set()

    def __call__(self, aws_name: str) -> str:
        base = re.sub(r"[^A-Za-z0-9_-]+", "-", aws_name).strip("-")[:60] or "unnamed"
        if base.isdigit():
            base = f"n{base}"
        name, n = base, 1
        while name in self.taken:
            n += 1
            name = f"{base}-{n}"
        assert NAME_RE.match(name), name
        self.taken.add(name)
        return name


def convert(inv: Inventory, vpc: str | None, overrides: dict[str, str | None]) -> Result:
    result = Result(overrides=overrides)
    groups = _ordered_groups(inv, vpc, result)
    group_names = Names()
    if not groups:
        where = vpc and f"associated with {vpc}" or "in the sources"
        raise SourceError(", ".join(inv.sources) or "-", "$", f"no rule group {where}")
    list_names = Names()
    list_lines: dict[str, str | None] = {}  # list ID -> dnsfw name (None: not representable)
    body: list[str] = []
    for priority, group, comment in groups:
        body += ["", f"    # {comment}", f"    group {group_names(group.name)} {priority} {{"]
        rule_names = Names()
        seen: dict[tuple[str, str | None], str] = {}
        for rule in sorted(group.rules, key=lambda r: _priority(r.fields, r.where)):
            body += _rule(inv, rule, rule_names, list_names, list_lines, seen, overrides, result)
        body.append("    }")
    head = ["# Imported from Route 53 Resolver DNS Firewall by `dnsfw aws import`; sources:"]
    head += [f"#   {s}" for s in inv.sources]
    lists_part = _list_lines(inv, list_lines, result)
    result.lines = [*head, "firewall {", *lists_part, *body, "}"]
    return result


def _ordered_groups(
    inv: Inventory, vpc: str | None, result: Result
) -> list[tuple[int, RuleGroup, str]]:
    """(priority, group, comment) for each group to import, by priority."""
    associations = [a for a in inv.associations if vpc is None or a.fields.get("VpcId") == vpc]
    if not associations:
        if inv.associations:
            raise SourceError(inv.associations[0].where.file, "$", f"no association with {vpc}")
        result.note("no association in the sources: group priorities follow the sources' order")
        return [
            (100 * (i + 1), g, f"rule group '{g.name}' {g.id} (no association given)")
            for i, g in enumerate(inv.groups.values())
        ]
    by_vpc: dict[str, list[tuple[int, str]]] = {}
    for a in associations:
        group_id = a.fields.get("FirewallRuleGroupId")
        if group_id not in inv.groups:
            raise a.where.at("FirewallRuleGroupId").error(
                f"rule group {group_id} is not in the sources (add list-firewall-rule-groups "
                "and list-firewall-rules output)"
            )
        priority = _priority(a.fields, a.where)
        by_vpc.setdefault(str(a.fields.get("VpcId")), []).append((priority, group_id))
    policies = {vpc_id: sorted(p) for vpc_id, p in by_vpc.items()}
    if len({tuple(p) for p in policies.values()}) > 1:
        raise SourceError(
            associations[0].where.file,
            "$",
            "the VPCs associate different rule groups ("
            + "; ".join(
                f"{v}: {', '.join(f'{g}@{p}' for p, g in ps)}" for v, ps in policies.items()
            )
            + "): a dnsfw firewall is one policy, pick a VPC with --vpc",
        )
    vpcs = ", ".join(sorted(policies))
    out = []
    for priority, group_id in next(iter(policies.values())):
        group = inv.groups[group_id]
        detail = [a for a in associations if a.fields.get("FirewallRuleGroupId") == group_id][0]
        name = detail.fields.get("Name")
        mutation = detail.fields.get("MutationProtection")
        comment = (
            f"rule group '{group.name}' {group.id}, association "
            + (f"'{name}' " if name else "")
            + (f"{detail.fields['Id']} " if detail.fields.get("Id") else "")
            + f"of {vpcs} at priority {priority}"
            + (f", mutation protection {mutation}" if mutation else "")
        )
        out.append((priority, group, comment))
    unassociated = set(inv.groups) - {g for _, g in next(iter(policies.values()))}
    for group_id in sorted(unassociated):
        result.note(
            f"rule group '{inv.groups[group_id].name}' {group_id} is not associated with {vpcs}: not imported"
        )
    return out


def _priority(fields: dict, where: Where) -> int:
    value = fields.get("Priority")
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**31:
        raise where.at("Priority").error(f"Priority is not a non-negative integer: {value!r}")
    return value


def _enum(fields: dict, key: str, allowed: tuple[str, ...], where: Where) -> str | None:
    value = fields.get(key)
    if value is None:
        return None
    if value not in allowed:
        raise where.at(key).error(f"unknown {key} {value!r} (one of {', '.join(allowed)})")
    return value


def _rule(
    inv: Inventory,
    rule: Item,
    rule_names: Names,
    list_names: Names,
    list_lines: dict[str, str | None],
    seen: dict,
    overrides: dict[str, str | None],
    result: Result,
) -> list[str]:
    f, where = rule.fields, rule.where
    priority = _priority(f, where)
    action = _enum(f, "Action", model.ACTIONS, where)
    if action is None:
        raise where.at("Action").error("Action is missing")
    aws_name = str(f.get("Name") or f"rule-{priority}")
    advanced = f.get("DnsThreatProtection") or f.get("FirewallRuleType")
    if advanced or (f.get("FirewallThreatProtectionId") and not f.get("FirewallDomainListId")):
        _enum(f, "DnsThreatProtection", model.DNS_THREAT_PROTECTIONS, where)
        _enum(f, "ConfidenceThreshold", model.CONFIDENCE_THRESHOLDS, where)
        what = (
            f"DnsThreatProtection {f.get('DnsThreatProtection')} at ConfidenceThreshold "
            f"{f.get('ConfidenceThreshold')}"
            if f.get("DnsThreatProtection")
            else f"FirewallRuleType {json.dumps(f.get('FirewallRuleType'), sort_keys=True)}"
        )
        ident = f.get("FirewallThreatProtectionId")
        result.skipped += 1
        result.note(
            f"Advanced rule '{aws_name}' ({what}, {action}) commented out: {ADVANCED_REASON}"
        )
        return [
            f"        # Advanced rule '{aws_name}'"
            + (f" {ident}" if ident else "")
            + f": priority {priority}, {action} on {what}",
            f"        # not imported: {ADVANCED_REASON}",
        ]
    list_id = f.get("FirewallDomainListId")
    if not isinstance(list_id, str) or not list_id:
        raise where.at("FirewallDomainListId").error(
            "a rule needs FirewallDomainListId (or DnsThreatProtection for an Advanced rule)"
        )
    domain_list = inv.lists.get(list_id)
    if domain_list is None:
        raise where.at("FirewallDomainListId").error(
            f"domain list {list_id} is not in the sources (add list-firewall-domain-lists "
            "output, or the template or Terraform file that defines it)"
        )
    if list_id not in list_lines:
        list_lines[list_id] = _list_name(domain_list, list_names, overrides, result)
    options = _options(f, action, where, result, aws_name)
    qtype = f.get("Qtype")
    key = (list_id, qtype)
    if key in seen:
        raise where.error(
            f"rule '{aws_name}' uses list {list_id} with the same Qtype as rule '{seen[key]}'"
        )
    seen[key] = aws_name
    name = rule_names(aws_name)
    comment = f"        # rule '{aws_name}' on list '{domain_list.name}' {list_id}"
    list_name = list_lines[list_id]
    shown = list_name or re.sub(r"[^A-Za-z0-9_-]+", "-", domain_list.name)
    line = f"rule {name} {priority} {action} {shown} {' '.join(options)}".rstrip()
    if list_name is None:
        result.skipped += 1
        reason = f"AWS managed list {domain_list.name} has no stand-in feed (map it with --feeds)"
        result.note(f"rule '{aws_name}' commented out: {reason}")
        return [comment, f"        # not imported: {reason}", f"        # {line}"]
    result.rules += 1
    return [comment, f"        {line}"]


def _options(f: dict, action: str, where: Where, result: Result, aws_name: str) -> list[str]:
    options = []
    qtype = f.get("Qtype")
    if qtype is not None:
        try:
            model.qtype_value(str(qtype))
        except ValueError as err:
            raise where.at("Qtype").error(str(err)) from None
        options += ["qtype", str(qtype).upper()]
    redirection = _enum(f, "FirewallDomainRedirectionAction", model.REDIRECTIONS, where)
    if redirection == model.TRUST:
        options += ["redirection", "trust"]
    response = _enum(f, "BlockResponse", model.BLOCK_RESPONSES, where)
    if action != "BLOCK":
        if response:
            result.note(f"rule '{aws_name}': BlockResponse {response} ignored on an {action} rule")
        return options
    if response is None:
        result.note(f"rule '{aws_name}': BLOCK without BlockResponse: imported as NODATA")
    elif response in (model.NODATA, model.NXDOMAIN):
        options += ["response", model.response_option(response)]
    elif response == model.OVERRIDE:
        _enum(f, "BlockOverrideDnsType", (model.BLOCK_OVERRIDE_DNS_TYPE,), where)
        target = f.get("BlockOverrideDomain")
        if not isinstance(target, str) or not target:
            raise where.at("BlockOverrideDomain").error("OVERRIDE needs BlockOverrideDomain")
        try:
            target = model.domain_entry(target)
        except ValueError as err:
            raise where.at("BlockOverrideDomain").error(f"{target!r}: {err}") from None
        ttl = f.get("BlockOverrideTtl", 0)
        if not isinstance(ttl, int) or not 0 <= ttl <= MAX_TTL:
            raise where.at("BlockOverrideTtl").error(f"not 0 to {MAX_TTL}: {ttl!r}")
        options += ["response", model.response_option(response), target, "ttl", str(ttl)]
    return options


def _list_name(
    known: DomainList, names: Names, overrides: dict[str, str | None], result: Result
) -> str | None:
    """The dnsfw list name for a domain list a rule uses; None for a managed list with no
    feed. Custom lists must have their domains in the sources."""
    if known.managed_owner is None and known.domains is None:
        raise known.where.error(
            f"the domains of list '{known.name}' {known.id} are not in the sources: add "
            f"`aws route53resolver list-firewall-domains --firewall-domain-list-id {known.id}` "
            f"output as list-firewall-domains.{known.id}.json (or --domains {known.id}=FILE)"
        )
    if known.managed_owner is not None:
        feed = _feed_for(known.name, overrides)
        if feed is None:
            return None
    return names(known.name)


def _feed_for(managed: str, overrides: dict[str, str | None]) -> str | None:
    """``feed NAME`` or ``url URL`` standing in for a managed list, or None."""
    if managed in overrides:
        value = overrides[managed]
        if value is None:
            return None
        if re.match(r"^https?://", value):
            return f"url {value} lenient"
        if value not in feeds.catalogue():
            raise SourceError("--feeds", managed, f"unknown feed '{value}'")
        return f"feed {value}"
    found = feeds.replacing(managed)
    return f"feed {found.name}" if found else None


def _list_lines(inv: Inventory, used: dict[str, str | None], result: Result) -> list[str]:
    lines: list[str] = []
    for list_id, name in used.items():
        known = inv.lists[list_id]
        if name is None:
            continue
        if known.managed_owner is not None:
            source = _feed_for(known.name, result.overrides) or ""
            lines += [f"    # AWS managed list {known.name} {list_id} ({known.managed_owner})"]
            lines += [f"    list {name} {source}"]
            feed = feeds.catalogue().get(source.removeprefix("feed "))
            about = f": {feed.about}, {feed.url} ({feed.licence}; {feed.updated})" if feed else ""
            result.report.append(f"managed list {known.name} {list_id} -> {source}{about}")
            continue
        path = f"lists/{name}.txt"
        entries = []
        for domain, where in known.domains or []:
            try:
                entries.append(model.domain_entry(domain))
            except ValueError as err:
                raise where.error(f"invalid domain {domain!r}: {err}") from None
        header = f"# domain list '{known.name}' {list_id}, imported from Route 53 DNS Firewall\n"
        if known.file_url:
            header += f"# its domains are in DomainFileUrl {known.file_url}: put them here\n"
            result.note(
                f"list '{known.name}': its domains are in {known.file_url}, which dnsfw does not "
                f"fetch: put them in {path}"
            )
        result.files[path] = header + "".join(e + "\n" for e in dict.fromkeys(entries))
        lines += [f"    # domain list '{known.name}' {list_id}", f"    list {name} file {path}"]
    return lines


# --- writing -----------------------------------------------------------------------------------

COREFILE = """\
# Written by `dnsfw aws import`: the firewall is in firewall.conf, which each import rewrites.
# Set the upstream (in a VPC, Route 53 Resolver is 169.254.169.253).
.:53 {
    import firewall.conf
    forward . /etc/resolv.conf
}
"""


def write(result: Result, out: Path) -> None:
    (out / "lists").mkdir(parents=True, exist_ok=True)
    for path, text in result.files.items():
        (out / path).write_text(text)
    (out / "firewall.conf").write_text("\n".join(result.lines) + "\n")
    corefile = out / "Corefile"
    if not corefile.exists():
        corefile.write_text(COREFILE)
