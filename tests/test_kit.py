"""The test kit itself: test modules share helpers through tests/kit/ only, and the Corefile
builder fills templates as its docstring says."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.kit.corefiles import corefile
from tests.kit.dnsfw import ROOT, with_port

TESTS = ROOT / "tests"


def imported_modules(source: str, module: str) -> list[str]:
    """Every module ``source`` (the text of ``module``, dotted) imports, relative ones resolved;
    for ``from P import N``, both P and P.N (N may be a module)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = module.split(".")[: -node.level] if node.level else []
            package = ".".join([*base, *([node.module] if node.module else [])])
            found += [package, *(f"{package}.{alias.name}" for alias in node.names)]
    return found


def foreign_test_imports(source: str, module: str) -> list[str]:
    """The modules under ``tests`` that ``module`` imports other than the kit: other test
    modules, conftest, or helpers outside tests/kit/."""
    bad = []
    for name in imported_modules(source, module):
        parts = name.split(".")
        if parts[0] == "tests" and len(parts) > 1 and parts[1] != "kit":
            bad.append(name)
    return bad


def test_the_check_sees_every_way_of_importing_a_test_module() -> None:
    for source in (
        "from tests.test_admin import Api",
        "import tests.test_admin",
        "from tests import test_admin",
        "from tests.conftest import free_port",
        "from .test_admin import Api",
        "def f():\n    from tests.upstream import Upstream\n",
    ):
        assert foreign_test_imports(source, "tests.test_x"), source
    assert "tests.conftest" in foreign_test_imports("from ..conftest import x", "tests.kit.api")
    for source in (
        "from tests.kit.api import Api",
        "from tests.kit import corefiles",
        "import tests.kit.dnsfw",
        "from . import api",
        "import plugins.test_thing",
    ):
        assert foreign_test_imports(source, "tests.kit.x") == [], source


@pytest.mark.parametrize(
    "path",
    sorted([*TESTS.glob("test_*.py"), TESTS / "conftest.py", *(TESTS / "kit").glob("*.py")]),
    ids=lambda p: str(p.relative_to(TESTS)),
)
def test_no_test_module_imports_another(path: Path) -> None:
    module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    assert foreign_test_imports(path.read_text(), module) == []


def test_only_the_kit_holds_helpers() -> None:
    others = {p.name for p in TESTS.glob("*.py") if not p.name.startswith("test_")}
    assert others == {"__init__.py", "conftest.py"}


def test_corefile_fills_placeholders_and_leaves_the_port() -> None:
    template = "a.example:$PORT {\n    forward . $UPSTREAM\n    log ${NAME}s $$x\n}\n"
    text = corefile(template, UPSTREAM="127.0.0.1:53", NAME="line")
    assert text == "a.example:$PORT {\n    forward . 127.0.0.1:53\n    log lines $x\n}\n"
    assert with_port(text, 1053).startswith("a.example:1053 {")
    assert corefile(".:$PORT {\n}\n", PORT=53) == ".:53 {\n}\n"


def test_corefile_indents_a_value_of_several_lines_as_its_placeholder() -> None:
    template = ".:$PORT {\n    $PLUGINS\n    forward . 1.2.3.4 $OPTIONS\n}\n"
    text = corefile(template, PLUGINS="errors\ncache {\n    success 10\n}", OPTIONS="{\n}")
    assert text == (
        ".:$PORT {\n    errors\n    cache {\n        success 10\n    }\n"
        "    forward . 1.2.3.4 {\n    }\n}\n"
    )


def test_corefile_refuses_missing_and_unused_values() -> None:
    with pytest.raises(KeyError, match=r"no value for \$UPSTREAM"):
        corefile(".:$PORT {\n    forward . $UPSTREAM\n}\n")
    with pytest.raises(KeyError, match=r"no placeholder for \['UPSTREM'\]"):
        corefile(".:$PORT {\n    whoami\n}\n", UPSTREM="x")
    with pytest.raises(ValueError, match="invalid placeholder"):
        corefile(".:$PORT {\n    log $ \n}\n")
