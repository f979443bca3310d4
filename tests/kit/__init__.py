"""What the tests share: dnsfw as a subprocess and the CLI (``dnsfw``), the upstream resolver
(``upstream``), Corefile templates (``corefiles``), the admin API client (``api``), metrics and
HTTP probes (``metrics``), request and reply records (``messages``), in-process directive
parsing (``directives``), helper servers (``servers``), certificates (``tls``), and large
lists and process figures for reload tests (``reloads``). Test modules import from here,
never from one another (tests/test_kit.py checks)."""
