"""dnsfw's plugin registry: the execution order (our ``plugin.cfg``) and where each plugin lives.

``ORDER`` is CoreDNS v1.14.7's ``plugin.cfg`` with dnsfw's own stages added: ``firewall``
right after ``acl`` and before ``cache`` (policy sees the final name, and a list change applies
at once even to cached names), and ``admin`` (the HTTP API on a process-wide listener; in the
chain it counts the queries of its block for the API's statistics).
It is also the set of directives the Corefile parser accepts; a directive in ``ORDER`` that
dnsfw does not implement is refused at setup with ``plugin/NAME: not supported by dnsfw``.

The order of lines in a Corefile never matters; repeated directives run in Corefile order.

``IMPLEMENTED`` maps a directive to the module that provides it. A plugin module has:

* a docstring with its Corefile syntax, options, defaults and examples;
* ``setup(directive, ctx) -> plugin | None`` that validates its tokens and raises
  ``proxy.corefile.CorefileError`` with file and line (None: it only configures the block);
* optionally ``ONCE = True`` when it may appear only once per server block.

A plugin object has ``name`` and ``async def serve(req, next)``, and optionally
``async start()``, ``async stop()``, ``ready() -> bool`` and ``replay(req, resp) -> Step | None``
(its part when a UDP query is answered again without the chain, see :mod:`proxy.replay`).
"""

ORDER: tuple[str, ...] = tuple(
    [
        "root",
        "metadata",
        "geoip",
        "cancel",
        "proxyproto",
        "quic",
        "grpc_server",
        "https",
        "https3",
        "timeouts",
        "multisocket",
        "reload",
        "nsid",
        "bufsize",
        "bind",
        "debug",
        "trace",
        "ready",
        "health",
        "admin",
        "pprof",
        "shed",
        "prometheus",
        "errors",
        "log",
        "dnstap",
        "local",
        "dns64",
        "any",
        "chaos",
        "loadbalance",
        "tsig",
        "rewrite",
        "autopath",
        "acl",
        "firewall",
        "cache",
        "header",
        "dnssec",
        "tls",
        "minimal",
        "template",
        "transfer",
        "hosts",
        "route53",
        "azure",
        "clouddns",
        "k8s_external",
        "kubernetes",
        "file",
        "auto",
        "secondary",
        "etcd",
        "loop",
        "forward",
        "grpc",
        "erratic",
        "whoami",
        "on",
        "sign",
        "view",
        "nomad",
    ]
)

IMPLEMENTED: dict[str, str] = {
    "admin": "plugins.admin",
    "bind": "plugins.bind",
    "cache": "plugins.cache",
    "errors": "plugins.errors",
    "firewall": "plugins.firewall",
    "forward": "plugins.forward",
    "health": "plugins.health",
    "log": "plugins.log",
    "prometheus": "plugins.prometheus",
    "ready": "plugins.ready",
    "reload": "plugins.reload",
    "timeouts": "plugins.timeouts",
    "whoami": "plugins.whoami",
}

# Subcommands of the `dnsfw` CLI (the `commands` package): name -> module with
# ``main(argv: list[str]) -> int`` (its own argparse, usage in its docstring).
COMMANDS: dict[str, str] = {
    "audit": "commands.audit",
    "explain": "commands.explain",
}
