"""dnsfw aws - bring a Route 53 Resolver DNS Firewall setup into dnsfw, or take a Corefile's back.

    dnsfw aws import [--out DIR] [--domains ID=FILE]... [--feeds FILE] [--vpc VPC] SOURCE...
    dnsfw aws import --from-aws [--region R] [--vpc VPC] [--out DIR]
    dnsfw aws export -conf Corefile [--format cli|cloudformation|terraform] [--vpc VPC] [--out DIR]

``import`` (:mod:`commands.aws.importer`) reads AWS CLI JSON, CloudFormation templates,
Terraform files or state, or the live API (boto3, the ``dnsfw[aws]`` extra) and writes a
``firewall { ... }`` snippet, a Corefile that imports it and one file per custom domain list.
``export`` (:mod:`commands.aws.export`) writes what creates a Corefile's policy in Route 53.
``dnsfw aws import -h`` / ``dnsfw aws export -h`` give each one's options. The API's enums,
field names and quotas both use are in :mod:`commands.aws.model`.
"""

from __future__ import annotations

import importlib
import sys

SUBCOMMANDS = {
    "import": "commands.aws.importer",
    "export": "commands.aws.export",
}


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if argv else 1
    name, rest = argv[0], argv[1:]
    if name not in SUBCOMMANDS:
        print(
            f"dnsfw aws: unknown subcommand '{name}' (one of {', '.join(SUBCOMMANDS)})",
            file=sys.stderr,
        )
        return 1
    return importlib.import_module(SUBCOMMANDS[name]).main(rest)
