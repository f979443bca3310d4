"""dnsfw core: Corefile language, pipeline, servers, CLI."""

__version__ = "0.1.0"
