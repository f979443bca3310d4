"""What the tests share: dnsfw as a subprocess and the CLI (``dnsfw``), the upstream resolver
(``upstream``), Corefile templates (``corefiles``), the admin API client (``api``), metrics and
HTTP probes (``metrics``), request and reply records (``messages``), in-process directive
parsing (``directives``), helper servers (``servers``: a gated list download, a DNS relay),
certificates (``tls``), Unbound as a recursive upstream (``unbound``), the queries of field
report 1 (``scenario``), the system tools some tests need and ``dig`` (``tools``), large lists and
process figures for reload tests (``reloads``), botocore's Route 53 Resolver model for checking
AWS CLI input (``route53_model``), and a corpus of queries decided as ``dnsfw explain`` decides
them (``corpus``), and plugin setup in process: setup errors and the Corefile examples of a
plugin's docstring (``checks``). Test modules import from here, never from one
another (tests/test_kit.py checks)."""
