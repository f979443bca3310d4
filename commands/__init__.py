"""Subcommands of ``dnsfw`` that work on a Corefile or on logs without serving.

Each is a module with ``main(argv: list[str]) -> int`` (its own argparse, usage in its
docstring), named in ``plugins.COMMANDS``. Commands may import the core and plugins; neither
imports a command.

* ``dnsfw explain`` (:mod:`commands.explain`): the firewall's rule walk for one query.
* ``dnsfw audit`` (:mod:`commands.audit`): a trial period's query logs as an inventory and
  a suggested allowlist.
* ``dnsfw aws export`` (:mod:`commands.aws.export`): a Corefile's firewall as Route 53 DNS
  Firewall CloudFormation, Terraform or AWS CLI input.
"""
