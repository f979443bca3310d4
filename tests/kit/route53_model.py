"""Route 53 Resolver's API model as botocore ships it (``route53resolver`` 2018-04-01): check
an operation's input field by field, as the AWS CLI would send it (``dnsfw aws export``'s
``--format cli`` files)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import botocore.session
from botocore.model import Shape
from botocore.validate import ParamValidator

_MODEL = botocore.session.get_session().get_service_model("route53resolver")


def operation_name(cli_name: str) -> str:
    """``create-firewall-rule`` -> ``CreateFirewallRule``."""
    return "".join(part.capitalize() for part in cli_name.split("-"))


def input_errors(operation: str, params: dict[str, Any]) -> list[str]:
    """What is wrong with ``params`` as the input of ``operation`` (empty: valid): botocore's
    own ParamValidator (required members, types, unknown fields, minimums) and the
    constraints it leaves to the service (enums, maximums, patterns)."""
    shape = _MODEL.operation_model(operation).input_shape
    report = ParamValidator().validate(params, shape)
    errors = [report.generate_report()] if report.has_errors() else []
    return errors + list(_constraints(params, shape, operation))


def _constraints(value: Any, shape: Shape, path: str) -> Iterator[str]:
    meta = shape.metadata
    if shape.type_name == "structure":
        for key, member in shape.members.items():
            if isinstance(value, dict) and key in value:
                yield from _constraints(value[key], member, f"{path}.{key}")
    elif shape.type_name == "list":
        if "max" in meta and len(value) > meta["max"]:
            yield f"{path}: {len(value)} items, at most {meta['max']}"
        for i, item in enumerate(value):
            yield from _constraints(item, shape.member, f"{path}[{i}]")
    elif shape.type_name == "string":
        if shape.enum and value not in shape.enum:
            yield f"{path}: {value!r} is not one of {shape.enum}"
        if "max" in meta and len(value) > meta["max"]:
            yield f"{path}: longer than {meta['max']}"
        if "pattern" in meta and not re.fullmatch(meta["pattern"], value):
            yield f"{path}: {value!r} does not match {meta['pattern']}"
    elif shape.type_name == "integer" and "max" in meta and value > meta["max"]:
        yield f"{path}: {value} is over {meta['max']}"
