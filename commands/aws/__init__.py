"""dnsfw aws - move a firewall policy between dnsfw and Route 53 Resolver DNS Firewall.

    dnsfw aws export -conf FILE [--format cli|cloudformation|terraform] [--vpc VPC] [--out DIR]

``dnsfw aws SUBCOMMAND -h`` for its options: ``export`` (:mod:`commands.aws.export`).
"""

from __future__ import annotations

import importlib
import sys

SUBCOMMANDS = {"export": "commands.aws.export"}


def main(argv: list[str]) -> int:
    if argv and argv[0] in SUBCOMMANDS:
        return importlib.import_module(SUBCOMMANDS[argv[0]]).main(argv[1:])
    help_asked = argv[:1] in (["-h"], ["--help"])
    print(__doc__.strip(), file=sys.stdout if help_asked else sys.stderr)
    return 0 if help_asked else 1
