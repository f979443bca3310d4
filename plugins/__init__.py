"""dnsfw's plugin registry: the execution order (our ``plugin.cfg``) and where each plugin lives.

``ORDER`` is CoreDNS v1.14.7's ``plugin.cfg`` with dnsfw's own stages added: ``firewall``
right after ``acl`` and before ``cache`` (policy sees the final name, and a list change applies
at once even to cached names), ``admin`` (the HTTP API on a process-wide listener; in the
chain it counts the queries of its block for the API's statistics), and ``ratelimit`` right
after ``prometheus`` (CoreDNS's is an external plugin: a limited query is still counted in
the request metrics but costs no log line and no work behind it; see plugins/ratelimit.py).
It is also the set of directives the Corefile parser accepts; a directive in ``ORDER`` that
dnsfw does not implement is refused at setup with ``plugin/NAME: not supported by dnsfw``.

The order of lines in a Corefile never matters; repeated directives run in Corefile order.

``IMPLEMENTED`` maps a directive to the module that provides it.

Writing a plugin (the contract; :mod:`proxy.pipeline` and :mod:`proxy.replay` hold the types).
A plugin module has:

* a docstring with its Corefile syntax, options, defaults and examples;
* ``setup(directive, ctx) -> plugin | None`` that validates its tokens and raises
  ``proxy.corefile.CorefileError`` with file and line (None: it only configures the block);
* optionally ``ONCE = True`` when it may appear only once per server block.

A plugin object subclasses :class:`proxy.pipeline.Plugin` (setup refuses one that does not
meet it) and has:

* ``name``, and ``replays``: ``proxy.replay.TAKES_PART``, or
  ``proxy.replay.not_replayed("why")`` when the stage cannot take part in replays (every query
  through it then runs the whole chain; the server logs ``replays_off`` with the reason);
* ``async def serve(req, next) -> Response`` that does one job. Its per-query behaviour
  (count something, write a line) is an :class:`proxy.replay.Effect` object run with
  ``req.run(effect)``; a decision that can go stale records a :class:`proxy.replay.Guard`
  with ``req.record(guard)``; a stage that answers from state it keeps (the cache) puts an
  :class:`proxy.replay.Answer` on its Response. That is all it takes for a replayed query
  to get the same behaviour: the replay runs the recorded objects again, in the same order.
  A stage that lets a query go on or not by its client and the time (a rate limit) asks a
  :class:`proxy.replay.Gate` with ``req.admit(gate)``, which replays ask again per client.
  A stage that changes every reply passing it (``loadbalance``, ``rewrite``, ``header``)
  returns ``proxy.message.reshaped(resp, edit, names=...)``, which also puts the edit on the
  Response's Answer (:class:`proxy.replay.Reshaped`); one that answers
  from its own data replies with ``req.fixed_reply(rcode, guard, ...)``, which puts a
  :class:`proxy.replay.FixedAnswer` on it (with the data's Guard when a reload can change it).
  ``req.no_replay()`` keeps one query from being replayed; ``req.drop()`` is a Response for
  which nothing is sent;
* optionally ``qclasses``: the query classes besides IN it answers (``chaos``: CH); the server
  refuses other classes before the chain;
* optionally ``async start()``, ``async stop()``, ``ready() -> bool`` and ``waiting() -> str``
  (why it is not ready, when it knows more than "not yet": shown in ``/ready``) (defaults:
  nothing, nothing, True, '').

``serve`` runs without a current asyncio Task (the chain is driven by hand): never use
``asyncio.timeout()`` or ``asyncio.wait_for()`` there (they raise from Python 3.12 on); use
``proxy.pipeline.deadline(awaitable, seconds)``.
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
        "ratelimit",
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
    "acl": "plugins.acl",
    "admin": "plugins.admin",
    "any": "plugins.any",
    "auto": "plugins.auto",
    "bind": "plugins.bind",
    "bufsize": "plugins.bufsize",
    "cache": "plugins.cache",
    "cancel": "plugins.cancel",
    "chaos": "plugins.chaos",
    "debug": "plugins.debug",
    "erratic": "plugins.erratic",
    "dns64": "plugins.dns64",
    "errors": "plugins.errors",
    "file": "plugins.file",
    "firewall": "plugins.firewall",
    "forward": "plugins.forward",
    "header": "plugins.header",
    "health": "plugins.health",
    "loadbalance": "plugins.loadbalance",
    "local": "plugins.local",
    "hosts": "plugins.hosts",
    "https": "plugins.https",
    "log": "plugins.log",
    "loop": "plugins.loop",
    "metadata": "plugins.metadata",
    "minimal": "plugins.minimal",
    "nsid": "plugins.nsid",
    "prometheus": "plugins.prometheus",
    "ratelimit": "plugins.ratelimit",
    "ready": "plugins.ready",
    "reload": "plugins.reload",
    "rewrite": "plugins.rewrite",
    "template": "plugins.template",
    "timeouts": "plugins.timeouts",
    "tls": "plugins.tls",
    "whoami": "plugins.whoami",
}

# Subcommands of the `dnsfw` CLI (the `commands` package): name -> module with
# ``main(argv: list[str]) -> int`` (its own argparse, usage in its docstring).
COMMANDS: dict[str, str] = {
    "audit": "commands.audit",
    "aws": "commands.aws",
    "explain": "commands.explain",
}
