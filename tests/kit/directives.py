"""One directive parsed in process, as the setup tests read a plugin's options."""

from __future__ import annotations

from pathlib import Path

import plugins
from plugins import log as logplugin
from proxy.corefile import Directive, parse
from tests.kit.corefiles import BLOCK, corefile


def directive(body: str, tmp_path: Path | None = None) -> Directive:
    """The first directive of ``body`` in a `.:53` block (``body`` starts on line 2), read as
    the Corefile in ``tmp_path`` (relative paths resolve there) or as `Corefile`."""
    filename = str(tmp_path / "Corefile") if tmp_path else "Corefile"
    text = corefile(BLOCK, KEYS=".:53", BODY=body)
    return parse(text, filename=filename, directives=plugins.ORDER)[0].directives[0]


def log_settings(body: str, tmp_path: Path | None = None) -> logplugin.Settings:
    """The settings of the `log` directive ``body``."""
    return logplugin.parse(directive(body, tmp_path))
