"""A Route 53 DNS Firewall setup read from its sources, in the API's own shapes.

Every reader turns its source into the objects the API returns (field names and values of
botocore's model, :mod:`.model`): domain lists, rule groups with their rules, associations,
each with where it was read (file and JSON path) for error messages. The AWS CLI prints the
API's responses, so the CLI reader takes them as they are, and the live reader (boto3) hands
each page to it; CloudFormation uses the API's field names; Terraform's are mapped
(:data:`.model.TERRAFORM`). Malformed input raises :class:`SourceError` naming the file and path.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from .model import CFN, DOMAIN_LIST_ID, LIST_DOMAINS_PAGE, TERRAFORM, TF


class SourceError(Exception):
    """Malformed input: the file, the JSON path in it, and what is wrong."""

    def __init__(self, file: str, path: str, message: str) -> None:
        super().__init__(f"{file}: {path}: {message}")


@dataclass(frozen=True)
class Where:
    file: str
    path: str  # JSON path ($.FirewallRules[2]) or the Terraform address

    def at(self, key: str | int) -> Where:
        return Where(
            self.file, f"{self.path}[{key}]" if isinstance(key, int) else f"{self.path}.{key}"
        )

    def error(self, message: str) -> SourceError:
        return SourceError(self.file, self.path, message)


@dataclass
class DomainList:
    id: str
    name: str
    where: Where
    managed_owner: str | None = None
    domains: list[tuple[str, Where]] | None = None  # None: not given by any source
    file_url: str | None = None  # CloudFormation's DomainFileUrl (an S3 object)


@dataclass
class Item:
    """A rule or an association: the API's fields and where they were read."""

    fields: dict[str, Any]
    where: Where


@dataclass
class RuleGroup:
    id: str
    name: str
    where: Where
    rules: list[Item] = field(default_factory=list)


@dataclass
class Inventory:
    lists: dict[str, DomainList] = field(default_factory=dict)
    groups: dict[str, RuleGroup] = field(default_factory=dict)
    associations: list[Item] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)

    def domain_list(self, id: str, where: Where, name: str | None = None) -> DomainList:
        return _known(self.lists, DomainList, id, where, name)

    def group(self, id: str, where: Where, name: str | None = None) -> RuleGroup:
        return _known(self.groups, RuleGroup, id, where, name)

    def add_rule(self, rule: dict, where: Where) -> None:
        group_id = _text(rule, "FirewallRuleGroupId", where)
        rules = self.group(group_id, where).rules
        if not any(r.fields == rule for r in rules):  # pages read twice, a group and its rules
            rules.append(Item(rule, where))

    def add_domains(self, list_id: str, domains: list, where: Where) -> None:
        if not isinstance(domains, list):
            raise where.error("not a list of domains")
        target = self.domain_list(list_id, where)
        entries = target.domains if target.domains is not None else []
        for i, domain in enumerate(domains):
            if not isinstance(domain, str):
                raise where.at(i).error(f"not a domain: {domain!r}")
            entries.append((domain, where.at(i)))
        target.domains = entries


def _known(table: dict, kind: type, id: str, where: Where, name: str | None) -> Any:
    """The list or group ``id`` (made on its first mention, named by its ID until a source
    names it): sources mention lists and groups by ID before or after describing them."""
    known = table.get(id)
    if known is None:
        known = table[id] = kind(id, name or id, where)
    elif name:
        known.name = name
    return known


def _text(obj: dict, key: str, where: Where) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise where.at(key).error(
            f"{key} is missing or not a string"
            if value is None
            else f"{key} is not a string: {value!r}"
        )
    return value


def _object(value: Any, where: Where) -> dict:
    if not isinstance(value, dict):
        raise where.error(f"expected an object, found {type(value).__name__}")
    return value


def _objects(doc: dict, key: str, where: Where) -> Iterator[tuple[dict, Where]]:
    items = doc.get(key)
    if not isinstance(items, list):
        raise where.at(key).error("expected a list")
    for i, item in enumerate(items):
        yield _object(item, where.at(key).at(i)), where.at(key).at(i)


# --- AWS CLI JSON (and the live API's pages) ---------------------------------------------------


def read_cli(inv: Inventory, doc: Any, file: str, list_id: str | None) -> None:
    """One response of list-firewall-rule-groups, get-firewall-rule-group, list-firewall-rules,
    list-firewall-domain-lists, get-firewall-domain-list, list-firewall-domains (``list_id``
    from the file name or --domains) or list-firewall-rule-group-associations."""
    top = Where(file, "$")
    doc = _object(doc, top)
    if "FirewallRuleGroups" in doc:
        for group, where in _objects(doc, "FirewallRuleGroups", top):
            inv.group(_text(group, "Id", where), where, _text(group, "Name", where))
    elif "FirewallRuleGroup" in doc:
        where = top.at("FirewallRuleGroup")
        group = _object(doc["FirewallRuleGroup"], where)
        inv.group(_text(group, "Id", where), where, _text(group, "Name", where))
    elif "FirewallRules" in doc:
        for rule, where in _objects(doc, "FirewallRules", top):
            inv.add_rule(rule, where)
    elif "FirewallDomainLists" in doc or "FirewallDomainList" in doc:
        many = "FirewallDomainLists" in doc
        found = (
            _objects(doc, "FirewallDomainLists", top)
            if many
            else [
                (
                    _object(doc["FirewallDomainList"], top.at("FirewallDomainList")),
                    top.at("FirewallDomainList"),
                )
            ]
        )
        for meta, where in found:
            known = inv.domain_list(_text(meta, "Id", where), where, _text(meta, "Name", where))
            known.managed_owner = meta.get("ManagedOwnerName") or None
    elif "Domains" in doc:
        if list_id is None:
            raise top.at("Domains").error(
                "list-firewall-domains output names no list: put its rslvr-fdl-... ID in the "
                "file name or give --domains ID=FILE"
            )
        if len(doc["Domains"]) > LIST_DOMAINS_PAGE:
            raise top.at("Domains").error(f"more than {LIST_DOMAINS_PAGE} domains in one page")
        inv.add_domains(list_id, doc["Domains"], top.at("Domains"))
    elif "FirewallRuleGroupAssociations" in doc:
        for association, where in _objects(doc, "FirewallRuleGroupAssociations", top):
            inv.associations.append(Item(association, where))
    else:
        raise top.error(
            "not a Route 53 DNS Firewall document: expected the output of an AWS CLI "
            "route53resolver list-/get-firewall-* command, a CloudFormation template or "
            "`terraform show -json` state"
        )


def list_id_in(file: str) -> str | None:
    """The rslvr-fdl-... ID in a file name (list-firewall-domains.rslvr-fdl-0123.page2.json)."""
    found = DOMAIN_LIST_ID.search(os.path.basename(file))
    return found.group(0) if found else None


# --- CloudFormation ------------------------------------------------------------------------


def read_cloudformation(inv: Inventory, doc: dict, file: str) -> None:
    top = Where(file, "$")
    resources = _object(doc.get("Resources"), top.at("Resources"))
    for logical, resource in resources.items():
        where = top.at("Resources").at(logical)
        resource = _object(resource, where)
        kind = resource.get("Type", "")
        if not isinstance(kind, str) or not kind.startswith(CFN + "Firewall"):
            continue
        props = _object(resource.get("Properties", {}), where.at("Properties"))
        at = where.at("Properties")
        if kind == CFN + "FirewallDomainList":
            known = inv.domain_list(logical, at, str(props.get("Name") or logical))
            if "Domains" in props:
                inv.add_domains(logical, props["Domains"], at.at("Domains"))
            if props.get("DomainFileUrl"):
                known.file_url = str(_cfn_value(props["DomainFileUrl"]))
                known.domains = known.domains or []
        elif kind == CFN + "FirewallRuleGroup":
            inv.group(logical, at, str(props.get("Name") or logical))
            names = _rule_names(resource, where)
            for rule, rule_at in (
                _objects(props, "FirewallRules", at) if "FirewallRules" in props else ()
            ):
                fields = {**_cfn_fields(rule), "FirewallRuleGroupId": logical}
                if str(fields.get("Priority")) in names:
                    fields.setdefault("Name", names[str(fields["Priority"])])
                inv.add_rule(fields, rule_at)
        elif kind == CFN + "FirewallRuleGroupAssociation":
            inv.associations.append(Item(_cfn_fields(props), at))
        else:
            raise where.at("Type").error(f"{kind} is not a resource dnsfw imports")


def _rule_names(resource: dict, where: Where) -> dict[str, str]:
    """CloudFormation's rules have no Name: ``dnsfw aws export`` keeps them in the group's
    ``Metadata.dnsfw.rules`` (priority -> name), read back here."""
    metadata = _object(resource.get("Metadata", {}), where.at("Metadata"))
    dnsfw = _object(metadata.get("dnsfw", {}), where.at("Metadata").at("dnsfw"))
    rules = _object(dnsfw.get("rules", {}), where.at("Metadata").at("dnsfw").at("rules"))
    return {str(k): str(v) for k, v in rules.items()}


def _cfn_value(value: Any) -> Any:
    """A reference to another resource of the template as its logical ID; any other
    intrinsic function as its text (an unknown ID or VPC then says so)."""
    if isinstance(value, dict) and len(value) == 1:
        ((fn, arg),) = value.items()
        if fn == "Ref" and isinstance(arg, str):
            return arg
        if fn == "Fn::GetAtt":
            parts = arg.split(".") if isinstance(arg, str) else arg
            if isinstance(parts, list) and len(parts) == 2:
                return parts[0]
        return f"{fn}({json.dumps(arg)})"
    return value


def _cfn_fields(obj: dict) -> dict:
    return {key: _cfn_value(value) for key, value in obj.items()}


def cloudformation_yaml(text: str) -> Any:
    """A YAML template with the short forms of intrinsic functions (``!Ref X``,
    ``!GetAtt X.Id``) read as their long forms."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    def intrinsic(loader: yaml.SafeLoader, tag: str, node: yaml.Node) -> dict:
        name = "Ref" if tag == "Ref" else f"Fn::{tag}"
        if isinstance(node, yaml.ScalarNode):
            value: Any = loader.construct_scalar(node)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        return {name: value}

    Loader.add_multi_constructor("!", intrinsic)
    return yaml.load(text, Loader=Loader)  # noqa: S506 - SafeLoader with only the tags above


# --- Terraform -------------------------------------------------------------------------------


def read_terraform(inv: Inventory, doc: dict, file: str) -> None:
    """.tf files as python-hcl2 reads them: literals, references to other resources and to
    the file's variables (a variable with no default stays ``var.NAME``: as a VPC ID it
    still says which associations share a VPC)."""
    variables = {
        _unquote(name): _unquote(str(attrs.get("default", f"var.{_unquote(name)}")))
        for block in doc.get("variable", [])
        for name, attrs in block.items()
    }
    for block in doc.get("resource", []):
        for kind, named in block.items():
            kind = _unquote(kind)
            if not kind.startswith(TF):
                continue
            for name, attrs in named.items():
                address = f"{kind}.{_unquote(name)}"
                where = Where(file, address)
                values = {
                    key: _tf_value(value, where.at(key), variables)
                    for key, value in attrs.items()
                    if not key.startswith("__")
                }
                _terraform_resource(inv, kind, address, values, where)


def _unquote(text: str) -> str:
    return text[1:-1] if len(text) >= 2 and text[0] == text[-1] == '"' else text


REFERENCE = re.compile(r"^\$\{(" + TF + r"[a-z_]+\.[A-Za-z0-9_-]+)\.id\}$")
VARIABLE = re.compile(r"^\$\{var\.([A-Za-z0-9_-]+)\}$")


def _tf_value(value: Any, where: Where, variables: dict[str, str]) -> Any:
    if isinstance(value, list):
        return [_tf_value(v, where.at(i), variables) for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value
    if value.startswith('"') and value.endswith('"') and "${" not in value:
        return json.loads(value)
    reference = REFERENCE.match(value)
    if reference:
        return reference.group(1)  # the resource's address stands for its ID
    variable = VARIABLE.match(value)
    if variable and variable.group(1) in variables:
        return variables[variable.group(1)]
    raise where.error(
        f"{value} cannot be evaluated without Terraform: import `terraform show -json` "
        "state instead"
    )


def _terraform_resource(inv: Inventory, kind: str, id: str, values: dict, where: Where) -> None:
    part = kind.removeprefix(TF)
    if part not in TERRAFORM:
        return
    fields = {TERRAFORM[part][k]: v for k, v in values.items() if k in TERRAFORM[part]}
    if part == "domain_list":
        inv.domain_list(id, where, fields.get("Name") or id)
        inv.add_domains(id, fields.get("Domains", []), where.at("domains"))
    elif part == "rule_group":
        inv.group(id, where, fields.get("Name") or id)
    elif part == "rule":
        inv.add_rule(fields, where)
    else:
        inv.associations.append(Item(fields, where))


def read_terraform_state(inv: Inventory, doc: dict, file: str) -> None:
    """``terraform show -json``: every module's resources with their real IDs; the
    ``aws_route53_resolver_firewall_domain_list`` data source names managed lists."""
    values = _object(doc.get("values"), Where(file, "$.values"))
    _state_module(inv, values.get("root_module", {}), Where(file, "$.values.root_module"))


def _state_module(inv: Inventory, module: dict, where: Where) -> None:
    for i, resource in enumerate(module.get("resources", [])):
        at = where.at("resources").at(i)
        kind = resource.get("type", "")
        if not kind.startswith(TF):
            continue
        values = _object(resource.get("values"), at.at("values"))
        if resource.get("mode") == "data":
            if kind == TF + "domain_list":
                list_id = _text(values, "id", at.at("values"))
                known = inv.domain_list(list_id, at, values.get("name") or list_id)
                known.managed_owner = values.get("managed_owner_name") or None
            continue
        part = kind.removeprefix(TF)
        if part not in TERRAFORM:
            continue
        vat = at.at("values")
        fields = {
            TERRAFORM[part][k]: v
            for k, v in values.items()
            if k in TERRAFORM[part] and v not in (None, "")
        }
        if part == "domain_list":
            list_id = _text(values, "id", vat)
            inv.domain_list(list_id, vat, fields.get("Name"))
            inv.add_domains(list_id, list(fields.get("Domains") or []), vat.at("domains"))
        elif part == "rule_group":
            inv.group(_text(values, "id", vat), vat, fields.get("Name"))
        elif part == "rule":
            inv.add_rule(fields, vat)
        else:
            inv.associations.append(Item({"Id": values.get("id"), **fields}, vat))
    for j, child in enumerate(module.get("child_modules", [])):
        _state_module(inv, child, where.at("child_modules").at(j))
