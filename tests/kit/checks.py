"""A Corefile set up in process as ``dnsfw check`` does, for the setup-error tests."""

from __future__ import annotations

import plugins
from proxy.config import AppContext, build
from proxy.corefile import CorefileError, parse


def setup_error(text: str, conf_path: str = "Corefile") -> str | None:
    """The parse or setup error of the Corefile ``text`` (read as ``conf_path``), or None."""
    try:
        blocks = parse(text, filename=conf_path, directives=plugins.ORDER)
        build(blocks, AppContext(conf_path=conf_path, checking=True))
    except CorefileError as err:
        return str(err)
    return None
