"""Tests for proxy/corefile.py: the Corefile language (docs/corefile.md §1).

Most tests are tables: Corefile text -> the parsed structure rendered compactly, or Corefile
text -> the exact error string. Cases from corefile.md §1.10 carry ids ``s1_10_N``.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from proxy.corefile import (
    CorefileError,
    Directive,
    ServerBlock,
    Token,
    fingerprint,
    parse,
    parse_file,
)

DIRECTIVES = frozenset(
    {"log", "errors", "whoami", "forward", "health", "cache", "hosts", "template", "bind"}
)


def _quote(text: str) -> str:
    """Show a token unambiguously: bare when plain, JSON-quoted when empty or unusual."""
    if text == "" or any(char.isspace() or char in '{};"' for char in text):
        return json.dumps(text)
    return text


def _render_line(line: Directive) -> str:
    words = " ".join(_quote(token.text) for token in (line.name, *line.args))
    if line.block is None:
        return words
    inner = "; ".join(_render_line(sub) for sub in line.block)
    return f"{words} {{ {inner} }}" if inner else f"{words} {{ }}"


def render(blocks: list[ServerBlock]) -> list[str]:
    """Each block as 'ADDRESS... { line; line { sub } }'."""
    out = []
    for block in blocks:
        keys = " ".join(key.address for key in block.keys)
        lines = "; ".join(_render_line(line) for line in block.directives)
        out.append(f"{keys} {{ {lines} }}" if lines else f"{keys} {{ }}")
    return out


def positions(blocks: list[ServerBlock]) -> list[tuple[str, str, int]]:
    """Every key and directive token with its file and line, in file order."""
    out = []

    def walk(lines: tuple[Directive, ...]) -> None:
        for line in lines:
            out.extend((t.text, t.file, t.line) for t in (line.name, *line.args))
            walk(line.block or ())

    for block in blocks:
        seen = []
        for key in block.keys:
            if key.token not in seen:
                seen.append(key.token)
                out.append((key.token.text, key.token.file, key.token.line))
        walk(block.directives)
    return out


def p(text: str, **kw) -> list[ServerBlock]:
    kw.setdefault("env", {})
    return parse(text, directives=DIRECTIVES, **kw)


def error_of(text: str, **kw) -> str:
    with pytest.raises(CorefileError) as info:
        p(text, **kw)
    return str(info.value)


# --- Lexing (§1.1) -------------------------------------------------------------------------------

LEXING = [
    ("bom", "\ufeff. {\nwhoami\n}\n", ["dns://.:53 { whoami }"]),
    ("crlf", ". {\r\n  log\r\n  whoami\r\n}\r\n", ["dns://.:53 { log; whoami }"]),
    ("cr_inside_bare_token", ". {\n  log a\rb\n}\n", ["dns://.:53 { log ab }"]),
    ("tabs_and_unicode_spaces", ".\t{\n\u00a0log\u2003x\n}\n", ["dns://.:53 { log x }"]),
    ("s1_10_1_braces_glued", ". {\n  log foo} {bar\n}\n", ['dns://.:53 { log "foo}" "{bar" }']),
    ("s1_10_2_comment_mid_token", ". {\n  log foo#bar baz\n}\n", ["dns://.:53 { log foo }"]),
    ("s1_10_2_hash_in_quotes", '. {\n  log "a#b"\n}\n', ["dns://.:53 { log a#b }"]),
    (
        "comment_lines",
        "# top\n. { # after brace\n  # whole line\n  log # tail\n}\n",
        ["dns://.:53 { log }"],
    ),
    ("quote_escape", '. {\n  log "say \\"hi\\""\n}\n', ['dns://.:53 { log "say \\"hi\\"" }']),
    (
        "s1_10_4_backslash_kept",
        '. {\n  log "a\\.b" "c\\\\d"\n}\n',
        ["dns://.:53 { log a\\.b c\\\\d }"],
    ),
    ("quote_mid_token_literal", '. {\n  log ab"c"\n}\n', ['dns://.:53 { log "ab\\"c\\"" }']),
    ("closing_quote_ends_token", '. {\n  log "ab"cd\n}\n', ["dns://.:53 { log ab cd }"]),
    ("empty_quoted_token", '. {\n  log "" x\n}\n', ['dns://.:53 { log "" x }']),
    ("quoted_brace_is_a_brace", '. "{"\n  log\n"}"\n', ["dns://.:53 { log }"]),
    ("quoted_spaces", '. {\n  log "a b\tc"\n}\n', ['dns://.:53 { log "a b\\tc" }']),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in LEXING], ids=[c[0] for c in LEXING])
def test_lexing(text: str, expected: list[str]) -> None:
    assert render(p(text)) == expected


POSITIONS = [
    (
        "lines_counted",
        "# comment\n\n. {\n  log a\n\n  whoami\n}\n",
        [(".", 3), ("log", 4), ("a", 4), ("whoami", 6)],
    ),
    (
        "s1_10_3_multiline_quote_is_an_argument",
        '. {\n  template "line1\nline2" next\n  whoami\n}\n',
        [(".", 1), ("template", 2), ("line1\nline2", 2), ("next", 3), ("whoami", 4)],
    ),
    (
        "crlf_lines",
        ".\r\n{\r\nlog\r\n\r\nwhoami\r\n}",
        [(".", 1), ("log", 3), ("whoami", 5)],
    ),
]


@pytest.mark.parametrize(
    ("text", "expected"), [c[1:] for c in POSITIONS], ids=[c[0] for c in POSITIONS]
)
def test_token_positions(text: str, expected: list[tuple[str, int]]) -> None:
    assert positions(p(text)) == [(t, "Corefile", line) for t, line in expected]


def test_quoted_multiline_argument_stays_on_its_directive_line() -> None:
    # The token after a multi-line quoted argument is still on the directive's line (NextArg).
    (block,) = p('. {\n  log "a\nb" c\n  whoami\n}\n')
    log_line, whoami = block.directives
    assert log_line.values == ["a\nb", "c"]
    assert whoami.name.text == "whoami"


# --- Structure (§1.2) ----------------------------------------------------------------------------

STRUCTURE = [
    ("empty_input", "", []),
    ("only_comments", "# nothing\n   \n", []),
    ("single_block", ". {\n  whoami\n}\n", ["dns://.:53 { whoami }"]),
    ("empty_block", ". {\n}\n", ["dns://.:53 { }"]),
    ("keys_only_at_eof", "example.org\n", ["dns://example.org.:53 { }"]),
    (
        "several_keys_one_line",
        "example.org example.net:1053 {\n  whoami\n}\n",
        ["dns://example.org.:53 dns://example.net.:1053 { whoami }"],
    ),
    (
        "s1_10_5_trailing_comma_continues",
        "example.org,\n  example.net,\n  example.com {\n  whoami\n}\n",
        ["dns://example.org.:53 dns://example.net.:53 dns://example.com.:53 { whoami }"],
    ),
    (
        "comma_separated_on_one_line",
        "a.org, b.org {\n  whoami\n}\n",
        ["dns://a.org.:53 dns://b.org.:53 { whoami }"],
    ),
    (
        "s1_10_6_brace_on_next_line",
        "example.org\n{\n  whoami\n}\n",
        ["dns://example.org.:53 { whoami }"],
    ),
    ("directive_on_brace_line", ". { whoami\n  log\n}\n", ["dns://.:53 { whoami; log }"]),
    ("s1_10_7_braceless_block", ".\nwhoami\nlog\n", ["dns://.:53 { whoami; log }"]),
    (
        "braceless_block_runs_to_eof",
        "example.org\nlog\nerrors\n\nwhoami\n",
        ["dns://example.org.:53 { log; errors; whoami }"],
    ),
    (
        "two_blocks_in_order",
        "b.org {\n  log\n}\na.org {\n  whoami\n}\n",
        ["dns://b.org.:53 { log }", "dns://a.org.:53 { whoami }"],
    ),
    (
        "s1_10_11_repeated_directive_kept_in_order",
        ". {\n  forward example.org 10.0.0.1\n  log\n  forward . 1.1.1.1\n}\n",
        ["dns://.:53 { forward example.org 10.0.0.1; log; forward . 1.1.1.1 }"],
    ),
    (
        "s1_10_12_duplicate_blocks_are_parsed",
        ".:53 {\n  whoami\n}\n.:53 {\n  log\n}\n",
        ["dns://.:53 { whoami }", "dns://.:53 { log }"],
    ),
    (
        "nested_block",
        ". {\n  forward . 1.1.1.1 {\n    max_fails 3\n    except a.org b.org\n  }\n}\n",
        ["dns://.:53 { forward . 1.1.1.1 { max_fails 3; except a.org b.org } }"],
    ),
    (
        "nested_block_any_depth",
        ". {\n  template IN A {\n    answer {\n      deep {\n        x 1\n      }\n    }\n    rcode NOERROR\n  }\n}\n",
        ["dns://.:53 { template IN A { answer { deep { x 1 } }; rcode NOERROR } }"],
    ),
    ("empty_nested_block", ". {\n  cache {\n  }\n}\n", ["dns://.:53 { cache { } }"]),
    ("empty_nested_block_one_line", ". {\n  cache { }\n}\n", ["dns://.:53 { cache { } }"]),
    (
        "one_line_nested_block",
        ". {\n  health { lameduck 5s }\n  log\n}\n",
        ["dns://.:53 { health { lameduck 5s }; log }"],
    ),
    (
        "one_line_nested_blocks_inside_nested",
        ". {\n  template IN A {\n    answer { a 1 }\n    b { c { d } }\n  }\n}\n",
        ["dns://.:53 { template IN A { answer { a 1 }; b { c { d } } } }"],
    ),
    (
        "nested_block_opened_after_first_subline",
        ". {\n  health { lameduck 5s\n  }\n}\n",
        ["dns://.:53 { health { lameduck 5s } }"],
    ),
    (
        "sublines_are_not_checked_against_directives",
        ". {\n  hosts {\n    anything goes here\n  }\n}\n",
        ["dns://.:53 { hosts { anything goes here } }"],
    ),
    ("empty_key_ignored", '"" example.org {\n  whoami\n}\n', ["dns://example.org.:53 { whoami }"]),
    ("only_empty_key_drops_block", '"" {\n  whoami\n}\n. {\n  log\n}\n', ["dns://.:53 { log }"]),
    (
        "closing_brace_then_next_block_same_line",
        "a.org {\n  log\n} b.org {\n  whoami\n}\n",
        ["dns://a.org.:53 { log }", "dns://b.org.:53 { whoami }"],
    ),
]


@pytest.mark.parametrize(
    ("text", "expected"), [c[1:] for c in STRUCTURE], ids=[c[0] for c in STRUCTURE]
)
def test_structure(text: str, expected: list[str]) -> None:
    assert render(p(text)) == expected


def test_nesting_up_to_the_limit() -> None:
    (block,) = p(". {\n  cache" + " { x" * 100 + " }" * 100 + "\n}\n")
    depth, line = 0, block.directives[0]
    while line.block:
        depth, line = depth + 1, line.block[0]
    assert depth == 100


def test_block_position_and_types() -> None:
    (block,) = p("\n# c\nexample.org:1053 {\n  forward . 1.1.1.1 {\n    max_fails 3\n  }\n}\n")
    assert (block.file, block.line) == ("Corefile", 3)
    (forward,) = block.directives
    assert forward.name == Token("forward", "Corefile", 4)
    assert forward.args == (Token(".", "Corefile", 4), Token("1.1.1.1", "Corefile", 4))
    assert (forward.file, forward.line, forward.values) == ("Corefile", 4, [".", "1.1.1.1"])
    assert forward.block == (
        Directive(Token("max_fails", "Corefile", 5), (Token("3", "Corefile", 5),), None),
    )
    (key,) = block.keys
    assert (key.scheme, key.zone, key.port, key.token) == (
        "dns",
        "example.org.",
        1053,
        Token("example.org:1053", "Corefile", 3),
    )


STRUCTURE_ERRORS = [
    (
        "s1_10_15_unknown_directive",
        ". {\n  whoami\n\n  fwd . 1.1.1.1\n}\n",
        "Corefile:4 - Error during parsing: Unknown directive 'fwd'",
    ),
    (
        "leading_bare_directive_is_a_key",  # the coredns.io manual's example
        "health\n\n. {\n    whoami\n}\n",
        "Corefile:3 - Error during parsing: Unknown directive '.' (server block 'health' at"
        " Corefile:1 has no '{', so it runs to the end of the file)",
    ),
    (
        "s1_10_1_glued_brace_on_directive",
        ". {\n  log}\n}\n",
        "Corefile:2 - Error during parsing: Unknown directive 'log}' (put a space before '}')",
    ),
    (
        "s1_10_1_glued_brace_on_key",
        "example.org{\n  whoami\n}\n",
        "Corefile:1 - Error during parsing: zone is not a valid domain name: example.org{"
        " (put a space before '{')",
    ),
    (
        "s1_10_16_close_brace_on_directive_line",
        ". {\n  whoami }\n",
        "Corefile:2 - Error during parsing: Unexpected '}' because no matching opening brace",
    ),
    (
        "one_line_server_block",
        ". { whoami }\n",
        "Corefile:1 - Error during parsing: Unexpected '}' because no matching opening brace",
    ),
    (
        "close_brace_after_nested_block_on_server_line",
        ". {\n  health { lameduck 5s } }\n",
        "Corefile:2 - Error during parsing: Unexpected '}' because no matching opening brace",
    ),
    (
        "stray_close_brace_in_braceless_block",
        ".\nwhoami\n}\n",
        "Corefile:3 - Error during parsing: Unexpected '}' because no matching opening brace"
        " (server block '.' at Corefile:1 has no '{')",
    ),
    (
        "token_after_nested_block",
        ". {\n  health { lameduck 5s } log\n}\n",
        "Corefile:2 - Error during parsing: Unexpected token 'log' after '}', expecting a new line",
    ),
    (
        "extra_comma_before_brace",
        "a.org, {\n  whoami\n}\n",
        "Corefile:1 - Error during parsing: Expected another address but had '{'"
        " - check for extra comma",
    ),
    (
        "extra_comma_brace_next_line",
        "a.org,\n{\n  whoami\n}\n",
        "Corefile:2 - Error during parsing: Expected another address but had '{'"
        " - check for extra comma",
    ),
    ("trailing_comma_at_eof", "a.org,\n", "Corefile:1 - Error during parsing: Unexpected EOF"),
    (
        "missing_closing_brace",
        ". {\n  whoami\n  log\n",
        "Corefile:3 - Syntax error: missing '}': the server block '.' opened at Corefile:1 is"
        " still open at the end of the file",
    ),
    (
        "missing_closing_brace_empty_block",
        ". {\n",
        "Corefile:1 - Syntax error: missing '}': the server block '.' opened at Corefile:1 is"
        " still open at the end of the file",
    ),
    (
        "missing_closing_brace_swallows_next_block",
        ". {\n  whoami\nexample.org {\n  log\n}\n",
        "Corefile:3 - Error during parsing: Unknown directive 'example.org' (is a '}' missing"
        " before it? server block '.' at Corefile:1 is still open)",
    ),
    (
        "eof_inside_nested_block",
        ". {\n  forward . 1.1.1.1 {\n    max_fails 3\n",
        "Corefile:3 - Syntax error: missing '}': the block of 'forward . 1.1.1.1' opened at"
        " Corefile:2 is still open at the end of the file (so is the server block '.' opened"
        " at Corefile:1)",
    ),
    (
        "brace_starting_a_subline",
        ". {\n  forward . 1.1.1.1 {\n    {\n    }\n  }\n}\n",
        "Corefile:3 - Error during parsing: Unexpected '{' - a block must open on the line that"
        " names it",
    ),
    (
        "stray_close_brace_at_top_level",
        ". {\n}\n}\n",
        "Corefile:3 - Error during parsing: Unexpected '}' because no matching opening brace"
        " (the '}' at Corefile:2 closed the server block '.' opened at Corefile:1)",
    ),
    (
        "nesting_too_deep",
        ". {\n  cache" + " { x" * 101 + " }" * 101 + "\n}\n",
        "Corefile:2 - Error during parsing: blocks nested more than 100 levels deep",
    ),
    (
        "block_without_key",
        "{\n  whoami\n}\n",
        "Corefile:1 - Error during parsing: Expected a server block key (zone) before '{'",
    ),
    (
        "unterminated_quote",
        '. {\n  log "abc\n}\n',
        "Corefile:2 - Error during parsing: Unterminated quoted string",
    ),
    (
        "unterminated_quote_escaped_at_end",
        '. {\n  log "abc\\"',
        "Corefile:2 - Error during parsing: Unterminated quoted string",
    ),
    (
        "error_line_counts_quoted_newlines",
        '. {\n  log "a\n\nb"\n  nope\n}\n',
        "Corefile:5 - Error during parsing: Unknown directive 'nope'",
    ),
]


@pytest.mark.parametrize(
    ("text", "expected"),
    [c[1:] for c in STRUCTURE_ERRORS],
    ids=[c[0] for c in STRUCTURE_ERRORS],
)
def test_structure_errors(text: str, expected: str) -> None:
    assert error_of(text) == expected


def test_filename_appears_in_tokens_and_errors() -> None:
    (block,) = p(". {\n  whoami\n}\n", filename="/etc/dnsfw/Corefile")
    assert block.file == block.directives[0].file == "/etc/dnsfw/Corefile"
    assert error_of(". {\n  nope\n}\n", filename="conf/Corefile") == (
        "conf/Corefile:2 - Error during parsing: Unknown directive 'nope'"
    )


# --- Environment substitution (§1.3) -------------------------------------------------------------

ENV = [
    ("unix_style", ". {\n  log {$A}\n}\n", {"A": "x"}, ["dns://.:53 { log x }"]),
    ("windows_style", ". {\n  log {%A%}\n}\n", {"A": "x"}, ["dns://.:53 { log x }"]),
    ("s1_10_8_unset_is_empty", ". {\n  log {$UNSET}\n}\n", {}, ['dns://.:53 { log "" }']),
    (
        "s1_10_8_concatenates",
        ". {\n  log {$A}{%B%}\n}\n",
        {"A": "x", "B": "y"},
        ["dns://.:53 { log xy }"],
    ),
    (
        "inside_quotes",
        '. {\n  log "pre {$A} post"\n}\n',
        {"A": "x"},
        ['dns://.:53 { log "pre x post" }'],
    ),
    (
        "value_with_spaces_one_token",
        ". {\n  log {$A}\n}\n",
        {"A": "a b"},
        ['dns://.:53 { log "a b" }'],
    ),
    (
        "malformed_left_alone",
        ". {\n  log {%ADDRESS} {$X\n}\n",
        {"ADDRESS": "x"},
        ['dns://.:53 { log "{%ADDRESS}" "{$X" }'],
    ),
    (
        "in_key",
        "{$ZONE}:{$PORT} {\n  whoami\n}\n",
        {"ZONE": "Example.org", "PORT": "1053"},
        ["dns://example.org.:1053 { whoami }"],
    ),
    ("directive_name", ". {\n  {$D} x\n}\n", {"D": "log"}, ["dns://.:53 { log x }"]),
    (
        "windows_first_then_unix",
        ". {\n  log {%A%}\n}\n",
        {"A": "{$B}", "B": "z"},
        ["dns://.:53 { log z }"],
    ),
    ("value_not_rescanned", ". {\n  log {$A}\n}\n", {"A": "{$A}"}, ['dns://.:53 { log "{$A}" }']),
    ("go_template_is_eaten", ". {\n  template {{$var}}\n}\n", {}, ['dns://.:53 { template "{}" }']),
    (
        "env_dot_syntax_is_literal",
        ". {\n  log {env.A}\n}\n",
        {"A": "x"},
        ['dns://.:53 { log "{env.A}" }'],
    ),
]


@pytest.mark.parametrize(("text", "env", "expected"), [c[1:] for c in ENV], ids=[c[0] for c in ENV])
def test_env_substitution(text: str, env: dict[str, str], expected: list[str]) -> None:
    assert render(p(text, env=env)) == expected


def test_env_defaults_to_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DNSFW_TEST_UPSTREAM", "9.9.9.9")
    blocks = parse(". {\n  forward . {$DNSFW_TEST_UPSTREAM}\n}\n", directives=DIRECTIVES)
    assert render(blocks) == ["dns://.:53 { forward . 9.9.9.9 }"]


# --- Server-block keys (§1.5) --------------------------------------------------------------------

LONG_NAME = ("a" * 63 + ".") * 3 + "a" * 61  # 253 characters: the longest valid name

KEYS = [
    ("longest_name", LONG_NAME, 53, [f"dns://{LONG_NAME}.:53"]),
    ("root", ".", 53, ["dns://.:53"]),
    ("root_with_port", ".:1053", 53, ["dns://.:1053"]),
    ("port_only_means_root", ":1053", 53, ["dns://.:1053"]),
    ("scheme_port_only", "dns://:1053", 53, ["dns://.:1053"]),
    ("zone_fqdn_lowercase", "Example.ORG", 53, ["dns://example.org.:53"]),
    ("zone_already_fqdn", "example.org.", 53, ["dns://example.org.:53"]),
    ("underscore_label", "_tcp.Example.org", 53, ["dns://_tcp.example.org.:53"]),
    ("dns_port_default", "example.org", 1053, ["dns://example.org.:1053"]),
    ("explicit_port_not_overridden", "example.org:5353", 1053, ["dns://example.org.:5353"]),
    ("port_zero_like_coredns", ".:0", 53, ["dns://.:0"]),
    ("dns_scheme", "dns://example.org", 53, ["dns://example.org.:53"]),
    ("s1_10_14_tls_explicit", "tls://.:853", 53, ["tls://.:853"]),
    ("tls_default_port", "tls://example.org", 1053, ["tls://example.org.:853"]),
    ("quic_default_port", "quic://.", 53, ["quic://.:853"]),
    ("grpc_default_port", "grpc://.", 53, ["grpc://.:443"]),
    ("s1_10_14_https_default_port", "https://.", 53, ["https://.:443"]),
    ("https3_default_port", "https3://.", 53, ["https3://.:443"]),
    ("tls_explicit_port", "tls://.:5553", 53, ["tls://.:5553"]),
    ("cidr_octet_boundary", "10.0.0.0/24", 53, ["dns://0.0.10.in-addr.arpa.:53"]),
    ("cidr_slash_8", "10.0.0.0/8", 53, ["dns://10.in-addr.arpa.:53"]),
    ("cidr_slash_32", "10.1.2.3/32", 53, ["dns://3.2.1.10.in-addr.arpa.:53"]),
    ("cidr_slash_0", "0.0.0.0/0", 53, ["dns://in-addr.arpa.:53"]),
    ("cidr_host_bits_ignored", "10.1.2.3/24", 53, ["dns://2.1.10.in-addr.arpa.:53"]),
    (
        "cidr_slash_22_rounds_up",
        "10.0.0.0/22",
        53,
        [f"dns://{i}.0.10.in-addr.arpa.:53" for i in range(4)],
    ),
    (
        "s1_10_13_cidr_slash_27",
        "10.0.0.0/27",
        53,
        [f"dns://{i}.0.0.10.in-addr.arpa.:53" for i in range(32)],
    ),
    ("cidr_with_port", "10.0.0.0/24:1053", 53, ["dns://0.0.10.in-addr.arpa.:1053"]),
    ("cidr_with_scheme", "tls://192.168.0.0/16", 53, ["tls://168.192.in-addr.arpa.:853"]),
    ("cidr6_nibble_boundary", "2001:db8::/32", 53, ["dns://8.b.d.0.1.0.0.2.ip6.arpa.:53"]),
    ("cidr6_slash_8", "fd00::/8", 53, ["dns://d.f.ip6.arpa.:53"]),
    ("cidr6_rounds_up", "fd00::/7", 53, ["dns://c.f.ip6.arpa.:53", "dns://d.f.ip6.arpa.:53"]),
    (
        "cidr6_slash_30",
        "2001:db8::/30",
        53,
        [f"dns://{n}.b.d.0.1.0.0.2.ip6.arpa.:53" for n in "89ab"],
    ),
    ("cidr6_with_port", "2001:db8::/32:1053", 53, ["dns://8.b.d.0.1.0.0.2.ip6.arpa.:1053"]),
    ("cidr6_slash_0", "::/0", 53, ["dns://ip6.arpa.:53"]),
]


@pytest.mark.parametrize(
    ("key", "dns_port", "expected"), [c[1:] for c in KEYS], ids=[c[0] for c in KEYS]
)
def test_keys(key: str, dns_port: int, expected: list[str]) -> None:
    (block,) = p(key + " {\n  whoami\n}\n", dns_port=dns_port)
    assert [k.address for k in block.keys] == expected
    assert all(k.token == Token(key, "Corefile", 1) for k in block.keys)


def test_cidr_keys_expand_in_place_among_other_keys() -> None:
    (block,) = p("a.org 10.0.0.0/23 b.org {\n}\n")
    assert [k.address for k in block.keys] == [
        "dns://a.org.:53",
        "dns://0.0.10.in-addr.arpa.:53",
        "dns://1.0.10.in-addr.arpa.:53",
        "dns://b.org.:53",
    ]


KEY_ERRORS = [
    ("trailing_colon", "example.org:", 'expecting data after last colon: "example.org:"'),
    ("trailing_colon_after_scheme", "tls://.:", 'expecting data after last colon: ".:"'),
    ("unset_env_port", ".:{$PORT$}", 'expecting data after last colon: ".:"'),
    ("port_not_a_number", "example.org:abc", "invalid port 'abc' in 'example.org:abc'"),
    ("port_with_sign", "example.org:+53", "invalid port '+53' in 'example.org:+53'"),
    (
        "port_too_large",
        "example.org:65536",
        "invalid port '65536' in 'example.org:65536': must be 0-65535",
    ),
    ("ipv6_literal_is_not_a_zone", "[::1]:53", "zone is not a valid domain name: [::1]"),
    (
        "unix_scheme",
        "unix:///run/dns.sock",
        "transport 'unix' cannot serve a server block: unix:///run/dns.sock",
    ),
    (
        "unknown_scheme",
        "udp://example.org",
        "unknown transport 'udp' in 'udp://example.org' (known: dns, tls, quic, grpc, https, https3)",
    ),
    (
        "scheme_is_case_sensitive",
        "DNS://example.org",
        "unknown transport 'DNS' in 'DNS://example.org' (known: dns, tls, quic, grpc, https, https3)",
    ),
    ("zone_too_long", "a" * 256, "specified zone is too long: 256 > 255"),
    ("label_too_long", "a" * 64 + ".org", f"zone is not a valid domain name: {'a' * 64}.org"),
    ("name_too_long", LONG_NAME + "a", f"zone is not a valid domain name: {LONG_NAME}a"),
    ("empty_label", "example..org", "zone is not a valid domain name: example..org"),
    ("bad_character", "ex@mple.org", "zone is not a valid domain name: ex@mple.org"),
    ("snippet_like_key_among_others", "(a)", "zone is not a valid domain name: (a)"),
    (
        "cidr_prefix_too_long",
        "10.0.0.0/33",
        "invalid CIDR '10.0.0.0/33': '10.0.0.0/33' does not appear to be an IPv4 or IPv6 network",
    ),
    ("cidr_missing_prefix", "10.0.0.0/", "invalid CIDR '10.0.0.0/': expected ADDRESS/PREFIX"),
    ("cidr_of_a_name", "example.org/24", "invalid CIDR 'example.org/24': expected ADDRESS/PREFIX"),
    (
        "cidr6_bad_address",
        "fd00::zz/64",
        "invalid CIDR 'fd00::zz/64': expected ADDRESS/PREFIX",
    ),
    (
        "cidr6_bad_prefix",
        "fd00::/129",
        "invalid CIDR 'fd00::/129': 'fd00::/129' does not appear to be an IPv4 or IPv6 network",
    ),
]


@pytest.mark.parametrize(
    ("key", "message"), [c[1:] for c in KEY_ERRORS], ids=[c[0] for c in KEY_ERRORS]
)
def test_key_errors(key: str, message: str) -> None:
    text = "other.org " + key + " {\n  whoami\n}\n"
    if key == "(a)":
        text = "other.org (a) {\n}\n"
    assert error_of(text) == f"Corefile:1 - Error during parsing: {message}"


def test_key_error_points_at_the_line_of_the_key() -> None:
    text = "a.org,\n  b.org,\n  bad..org {\n  whoami\n}\n"
    assert (
        error_of(text)
        == "Corefile:3 - Error during parsing: zone is not a valid domain name: bad..org"
    )


def test_key_errors_come_before_errors_in_the_block() -> None:
    assert error_of("bad..org {\n  nope\n}\n") == (
        "Corefile:1 - Error during parsing: zone is not a valid domain name: bad..org"
    )


# --- Snippets (§1.4) -----------------------------------------------------------------------------

SNIPPETS = [
    (
        "s1_10_9_snippet_at_top_level",
        "(blk) {\n  . {\n    whoami\n  }\n}\nimport blk\n",
        ["dns://.:53 { whoami }"],
    ),
    (
        "s1_10_9_snippet_in_block",
        "(snip) {\n  log\n  errors\n}\n. {\n  whoami\n  import snip\n  cache\n}\n",
        ["dns://.:53 { whoami; log; errors; cache }"],
    ),
    (
        "s1_10_9_snippet_in_directive_block",
        "(opts) {\n  max_fails 3\n  expire 10s\n}\n"
        ". {\n  forward . 1.1.1.1 {\n    import opts\n    policy sequential\n  }\n}\n",
        ["dns://.:53 { forward . 1.1.1.1 { max_fails 3; expire 10s; policy sequential } }"],
    ),
    (
        "snippet_as_keys",
        "(keys) {\n  a.org b.org\n}\nimport keys\n{\n  whoami\n}\n",
        ["dns://a.org.:53 dns://b.org.:53 { whoami }"],
    ),
    (
        "snippet_used_twice",
        "(s) {\n  log\n}\na.org {\n  import s\n}\nb.org {\n  import s\n  import s\n}\n",
        ["dns://a.org.:53 { log }", "dns://b.org.:53 { log; log }"],
    ),
    (
        "snippet_imports_snippet",
        "(a) {\n  log\n}\n(b) {\n  import a\n  errors\n}\n. {\n  import b\n}\n",
        ["dns://.:53 { log; errors }"],
    ),
    (
        "snippet_with_nested_block",
        "(fw) {\n  forward . 1.1.1.1 {\n    max_fails 3\n  }\n}\n. {\n  import fw\n}\n",
        ["dns://.:53 { forward . 1.1.1.1 { max_fails 3 } }"],
    ),
    (
        "snippet_brace_on_next_line",
        "(s)\n{\n  log\n}\n. {\n  import s\n}\n",
        ["dns://.:53 { log }"],
    ),
    ("empty_snippet", "(s) {\n}\n. {\n  import s\n  whoami\n}\n", ["dns://.:53 { whoami }"]),
    (
        "unused_snippet_is_not_checked",
        "(unused) {\n  nonsense here\n}\n. {\n  whoami\n}\n",
        ["dns://.:53 { whoami }"],
    ),
    (
        "snippet_defined_after_block_is_not_seen_before",
        "(log) {\n  errors\n}\n. {\n  import log\n}\n",
        ["dns://.:53 { errors }"],
    ),
    (
        "import_name_from_env",
        "(s) {\n  log\n}\n. {\n  import {$NAME}\n}\n",
        ["dns://.:53 { log }"],
    ),
    (
        "snippet_line_after_import_in_same_block",
        "(s) {\n  log a\n}\n. {\n  import s\n  errors b\n}\n",
        ["dns://.:53 { log a; errors b }"],
    ),
]


@pytest.mark.parametrize(
    ("text", "expected"), [c[1:] for c in SNIPPETS], ids=[c[0] for c in SNIPPETS]
)
def test_snippets(text: str, expected: list[str]) -> None:
    assert render(p(text, env={"NAME": "s"})) == expected


def test_snippet_tokens_keep_the_lines_of_their_definition() -> None:
    (block,) = p("(s) {\n  log a\n}\n. {\n  whoami\n  import s\n}\n")
    assert positions([block]) == [
        (".", "Corefile", 4),
        ("whoami", "Corefile", 5),
        ("log", "Corefile", 2),
        ("a", "Corefile", 2),
    ]


SNIPPET_ERRORS = [
    (
        "s1_10_9_self_import",
        "(s) {\n  log\n  import s\n}\n",
        "Corefile:3 - Error during parsing: maximum snippet import depth (10000) exceeded",
    ),
    (
        "self_import_on_brace_line",
        "(s) { import s\n}\n",
        "Corefile:1 - Error during parsing: maximum snippet import depth (10000) exceeded",
    ),
    (
        "self_import_inside_nested_block",
        "(s) {\n  forward . 1.1.1.1 {\n    import s\n  }\n}\n",
        "Corefile:3 - Error during parsing: maximum snippet import depth (10000) exceeded",
    ),
    (
        "indirect_cycle",
        "(a) {\n  import b\n}\n(b) {\n  log\n  import a\n}\n. {\n  import a\n}\n",
        "Corefile:6 - Error during parsing: maximum snippet import depth (10000) exceeded"
        " (import cycle: a -> b -> a)",
    ),
    (
        "redeclaration",
        "(s) {\n}\n(s) {\n}\n",
        "Corefile:3 - Error during parsing: redeclaration of previously declared snippet s",
    ),
    (
        "snippet_without_braces",
        "(s)\n  log\n",
        "Corefile:2 - Syntax error: Unexpected token 'log', expecting '{'",
    ),
    ("snippet_at_eof", "(s)\n", "Corefile:1 - Syntax error: Unexpected token '(s)', expecting '{'"),
    (
        "unclosed_snippet",
        "(s) {\n  log\n",
        "Corefile:2 - Syntax error: missing '}': the snippet '(s)' opened at Corefile:1 is"
        " still open at the end of the file",
    ),
    (
        "error_in_snippet_reported_at_its_definition",
        "(s) {\n  nope\n}\n. {\n  import s\n}\n",
        "Corefile:2 - Error during parsing: Unknown directive 'nope'",
    ),
    (
        "import_without_argument",
        ". {\n  import\n}\n",
        "Corefile:2 - Error during parsing: Wrong argument count or unexpected line ending after 'import'",
    ),
    (
        "import_without_argument_at_top",
        "import\n. {\n}\n",
        "Corefile:1 - Error during parsing: Wrong argument count or unexpected line ending after 'import'",
    ),
    (
        "import_two_arguments",
        ". {\n  import a b\n}\n",
        "Corefile:2 - Error during parsing: Import takes only one argument (glob pattern or file)",
    ),
    (
        "import_empty_pattern",
        '. {\n  import ""\n}\n',
        "Corefile:2 - Error during parsing: Import requires a non-empty filepath",
    ),
    (
        "import_unset_env_pattern",
        ". {\n  import {$NOPE}\n}\n",
        "Corefile:2 - Error during parsing: Import requires a non-empty filepath",
    ),
]


@pytest.mark.parametrize(
    ("text", "expected"),
    [c[1:] for c in SNIPPET_ERRORS],
    ids=[c[0] for c in SNIPPET_ERRORS],
)
def test_snippet_errors(text: str, expected: str) -> None:
    assert error_of(text) == expected


def test_exponential_snippet_imports_hit_the_expansion_limit() -> None:
    # s20 would expand to 2**20 lines; the per-parse limit stops it after 10000 imports.
    text = "(s0) {\n  log\n}\n"
    for i in range(1, 21):
        text += f"(s{i}) {{\n  import s{i - 1}\n  import s{i - 1}\n}}\n"
    text += ". {\n  import s20\n}\n"
    message = error_of(text)
    assert message.endswith("Error during parsing: maximum snippet import depth (10000) exceeded")


# --- File imports (§1.4) -------------------------------------------------------------------------


def write_tree(root: Path, files: dict[str, str | bytes]) -> None:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)


def parse_tree(root: Path, corefile: str, files: dict[str, str | bytes]) -> list[ServerBlock]:
    """Write ``files`` and the Corefile under ``root`` (``{tmp}`` stands for root), then parse."""
    write_tree(root, files)
    main = root / "Corefile"
    main.write_text(corefile.replace("{tmp}", str(root)))
    return parse_file(str(main), directives=DIRECTIVES, env={})


IMPORTS = [
    (
        "file_in_block",
        ". {\n  import common.conf\n  whoami\n}\n",
        {"common.conf": "log\nerrors\n"},
        ["dns://.:53 { log; errors; whoami }"],
    ),
    (
        "file_at_top_level",
        "import blocks.conf\nb.org {\n  whoami\n}\n",
        {"blocks.conf": "a.org {\n  log\n}\n"},
        ["dns://a.org.:53 { log }", "dns://b.org.:53 { whoami }"],
    ),
    (
        "file_in_directive_block",
        ". {\n  forward . 1.1.1.1 {\n    import opts.conf\n    policy random\n  }\n}\n",
        {"opts.conf": "max_fails 3\nexpire 10s\n"},
        ["dns://.:53 { forward . 1.1.1.1 { max_fails 3; expire 10s; policy random } }"],
    ),
    (
        "glob_in_sorted_order",
        ". {\n  import conf.d/*.conf\n}\n",
        {"conf.d/b.conf": "errors\n", "conf.d/a.conf": "log\n", "conf.d/c.txt": "nope\n"},
        ["dns://.:53 { log; errors }"],
    ),
    (
        "glob_question_mark",
        ". {\n  import z?.conf\n}\n",
        {"z2.conf": "errors\n", "z1.conf": "log\n"},
        ["dns://.:53 { log; errors }"],
    ),
    (
        "glob_matches_dotfiles_like_go",
        ". {\n  import d/*.conf\n}\n",
        {"d/.hidden.conf": "errors\n", "d/a.conf": "log\n"},
        ["dns://.:53 { errors; log }"],
    ),
    (
        "s1_10_10_glob_without_matches_is_only_a_warning",
        ". {\n  import conf.d/*.conf\n  whoami\n}\n",
        {},
        ["dns://.:53 { whoami }"],
    ),
    (
        "relative_to_the_importing_file",
        ". {\n  import sub/outer.conf\n}\n",
        {"sub/outer.conf": "import inner.conf\n", "sub/inner.conf": "log\n"},
        ["dns://.:53 { log }"],
    ),
    (
        "absolute_path",
        ". {\n  import {tmp}/abs/x.conf\n}\n",
        {"abs/x.conf": "log\n"},
        ["dns://.:53 { log }"],
    ),
    (
        "snippet_defined_in_imported_file",
        "import snippets.conf\n. {\n  import s\n}\n",
        {"snippets.conf": "(s) {\n  log\n}\n"},
        ["dns://.:53 { log }"],
    ),
    (
        "imported_file_uses_snippet",
        "(s) {\n  errors\n}\n. {\n  import part.conf\n}\n",
        {"part.conf": "log\nimport s\n"},
        ["dns://.:53 { log; errors }"],
    ),
    (
        "snippet_imports_file",
        "(s) {\n  import part.conf\n}\n. {\n  import s\n}\n",
        {"part.conf": "log\n"},
        ["dns://.:53 { log }"],
    ),
    (
        "same_file_twice_is_not_a_cycle",
        ". {\n  import c.conf\n  import c.conf\n}\n",
        {"c.conf": "log\n"},
        ["dns://.:53 { log; log }"],
    ),
    (
        "glob_sibling_imported_by_another_is_not_a_cycle",
        ". {\n  import d/*.conf\n}\n",
        {"d/a.conf": "import b.conf\n", "d/b.conf": "log\n"},
        ["dns://.:53 { log; log }"],
    ),
    (
        "empty_file",
        ". {\n  import empty.conf\n  whoami\n}\n",
        {"empty.conf": "# nothing here\n"},
        ["dns://.:53 { whoami }"],
    ),
    (
        "imported_line_ends_at_file_end",
        ". {\n  import a.conf\n  whoami\n}\n",
        {"a.conf": "log a"},
        ["dns://.:53 { log a; whoami }"],
    ),
]


@pytest.mark.parametrize(
    ("corefile", "files", "expected"), [c[1:] for c in IMPORTS], ids=[c[0] for c in IMPORTS]
)
def test_imports(tmp_path: Path, corefile: str, files: dict, expected: list[str]) -> None:
    assert render(parse_tree(tmp_path, corefile, files)) == expected


def test_glob_without_matches_logs_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="dnsfw.corefile"):
        parse_tree(tmp_path, ". {\n  import conf.d/*.conf\n}\n", {})
    assert [(r.name, r.levelno, r.getMessage()) for r in caplog.records] == [
        ("dnsfw.corefile", logging.WARNING, "No files matching import glob pattern: conf.d/*.conf")
    ]


def test_imported_tokens_carry_their_file_and_line(tmp_path: Path) -> None:
    blocks = parse_tree(tmp_path, ". {\n  whoami\n  import c.conf\n}\n", {"c.conf": "\nlog a\n"})
    main, imported = str(tmp_path / "Corefile"), str(tmp_path / "c.conf")
    assert positions(blocks) == [
        (".", main, 1),
        ("whoami", main, 2),
        ("log", imported, 2),
        ("a", imported, 2),
    ]


def test_relative_corefile_path_keeps_its_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_tree(tmp_path, {"Corefile": ". {\n  import c.conf\n}\n", "c.conf": "log\n"})
    monkeypatch.chdir(tmp_path)
    (block,) = parse_file("Corefile", directives=DIRECTIVES, env={})
    assert block.file == "Corefile"
    assert block.directives[0].file == str(tmp_path / "c.conf")


def test_parse_resolves_imports_against_filename(tmp_path: Path) -> None:
    write_tree(tmp_path, {"conf/c.conf": "log\n"})
    blocks = parse(
        ". {\n  import c.conf\n}\n",
        filename=str(tmp_path / "conf" / "Corefile"),
        directives=DIRECTIVES,
        env={},
    )
    assert render(blocks) == ["dns://.:53 { log }"]


def test_symlink_to_the_importing_file_is_a_cycle(tmp_path: Path) -> None:
    write_tree(tmp_path, {"a.conf": "import link.conf\n"})
    (tmp_path / "link.conf").symlink_to(tmp_path / "a.conf")
    with pytest.raises(CorefileError) as info:
        parse_tree(tmp_path, ". {\n  import a.conf\n}\n", {})
    t = tmp_path
    assert str(info.value) == (
        f"{t}/a.conf:1 - Error during parsing: Could not import {t}/link.conf:"
        f" import cycle ({t}/a.conf -> {t}/link.conf)"
    )


IMPORT_ERRORS = [
    (
        "s1_10_10_missing_plain_file",
        ". {\n  import nothere.conf\n}\n",
        {},
        "{tmp}/Corefile:2 - Error during parsing: File to import not found: nothere.conf",
    ),
    (
        "s1_10_10_two_stars",
        ". {\n  import */*.conf\n}\n",
        {},
        "{tmp}/Corefile:2 - Error during parsing: Glob pattern may only contain one wildcard (*),"
        " but has others: {tmp}/*/*.conf",
    ),
    (
        "two_question_marks",
        ". {\n  import a??.conf\n}\n",
        {},
        "{tmp}/Corefile:2 - Error during parsing: Glob pattern may only contain one wildcard (*),"
        " but has others: {tmp}/a??.conf",
    ),
    (
        "character_class",
        ". {\n  import a[12].conf\n}\n",
        {},
        "{tmp}/Corefile:2 - Error during parsing: Glob pattern may only contain one wildcard (*),"
        " but has others: {tmp}/a[12].conf",
    ),
    (
        "directory",
        ". {\n  import dir\n}\n",
        {"dir/x.conf": "log\n"},
        "{tmp}/Corefile:2 - Error during parsing: Could not import {tmp}/dir: is a directory",
    ),
    (
        "file_imports_itself",
        ". {\n  import a.conf\n}\n",
        {"a.conf": "log\nimport a.conf\n"},
        "{tmp}/a.conf:2 - Error during parsing: Could not import {tmp}/a.conf:"
        " import cycle ({tmp}/a.conf -> {tmp}/a.conf)",
    ),
    (
        "cycle_through_two_files",
        ". {\n  import a.conf\n}\n",
        {"a.conf": "import b.conf\n", "b.conf": "log\nimport a.conf\n"},
        "{tmp}/b.conf:2 - Error during parsing: Could not import {tmp}/a.conf:"
        " import cycle ({tmp}/a.conf -> {tmp}/b.conf -> {tmp}/a.conf)",
    ),
    (
        "corefile_imports_itself",
        ". {\n  import Corefile\n}\n",
        {},
        "{tmp}/Corefile:2 - Error during parsing: Could not import {tmp}/Corefile:"
        " import cycle ({tmp}/Corefile -> {tmp}/Corefile)",
    ),
    (
        "glob_matching_the_importing_file",
        ". {\n  import d/a.conf\n}\n",
        {"d/a.conf": "import *.conf\n"},
        "{tmp}/d/a.conf:1 - Error during parsing: Could not import {tmp}/d/a.conf:"
        " import cycle ({tmp}/d/a.conf -> {tmp}/d/a.conf)",
    ),
    (
        "error_in_imported_file",
        ". {\n  import c.conf\n}\n",
        {"c.conf": "log\n\nnope\n"},
        "{tmp}/c.conf:3 - Error during parsing: Unknown directive 'nope'",
    ),
    (
        "unterminated_quote_in_imported_file",
        ". {\n  import c.conf\n}\n",
        {"c.conf": 'log "x\n'},
        "{tmp}/c.conf:1 - Error during parsing: Unterminated quoted string",
    ),
    (
        "imported_file_not_utf8",
        ". {\n  import c.conf\n}\n",
        {"c.conf": b"log\nerrors \xff\n"},
        "{tmp}/Corefile:2 - Error during parsing: Could not import {tmp}/c.conf:"
        " not valid UTF-8 (line 2, byte 11)",
    ),
    (
        "missing_file_inside_imported_file",
        ". {\n  import a.conf\n}\n",
        {"a.conf": "\nimport b.conf\n"},
        "{tmp}/a.conf:2 - Error during parsing: File to import not found: b.conf",
    ),
]


@pytest.mark.parametrize(
    ("corefile", "files", "expected"),
    [c[1:] for c in IMPORT_ERRORS],
    ids=[c[0] for c in IMPORT_ERRORS],
)
def test_import_errors(tmp_path: Path, corefile: str, files: dict, expected: str) -> None:
    with pytest.raises(CorefileError) as info:
        parse_tree(tmp_path, corefile, files)
    assert str(info.value) == expected.replace("{tmp}", str(tmp_path))


# --- parse_file ----------------------------------------------------------------------------------


def test_parse_file_missing(tmp_path: Path) -> None:
    path = str(tmp_path / "Corefile")
    with pytest.raises(CorefileError) as info:
        parse_file(path, directives=DIRECTIVES)
    assert (info.value.file, info.value.line) == (path, 0)
    assert str(info.value) == (
        f"{path}:0 - Error during parsing: Could not read file: No such file or directory"
    )


def test_parse_file_directory(tmp_path: Path) -> None:
    with pytest.raises(CorefileError) as info:
        parse_file(str(tmp_path), directives=DIRECTIVES)
    assert str(info.value) == (
        f"{tmp_path}:0 - Error during parsing: Could not read file: Is a directory"
    )


def test_parse_file_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "Corefile"
    path.write_bytes(b". {\n  log \xc3\n}\n")
    with pytest.raises(CorefileError) as info:
        parse_file(str(path), directives=DIRECTIVES)
    assert str(info.value) == (
        f"{path}:0 - Error during parsing: Could not read file: not valid UTF-8 (line 2, byte 10)"
    )


# --- fingerprint ---------------------------------------------------------------------------------

BASE = "example.org {\n  forward . 1.1.1.1 {\n    max_fails 3\n  }\n  log\n}\n"

SAME_FINGERPRINT = [
    (
        "comments_and_blank_lines",
        "# hi\n\nexample.org { # x\n  forward . 1.1.1.1 {\n\n    max_fails 3 # y\n  }\n  log\n}\n",
    ),
    ("layout", "example.org\n{\n\tforward . 1.1.1.1 { max_fails 3\n }\nlog\n}"),
    (
        "quoting_plain_tokens",
        'example.org {\n  forward "." "1.1.1.1" {\n    max_fails "3"\n  }\n  log\n}\n',
    ),
    ("key_spelling", "EXAMPLE.org.:53 {\n  forward . 1.1.1.1 {\n    max_fails 3\n  }\n  log\n}\n"),
    (
        "snippet",
        "(s) {\n  max_fails 3\n}\nexample.org {\n  forward . 1.1.1.1 {\n    import s\n  }\n  log\n}\n",
    ),
]

DIFFERENT_FINGERPRINT = [
    ("argument", BASE.replace("1.1.1.1", "9.9.9.9")),
    ("nested_argument", BASE.replace("max_fails 3", "max_fails 4")),
    ("directive_order", "example.org {\n  log\n  forward . 1.1.1.1 {\n    max_fails 3\n  }\n}\n"),
    ("key", BASE.replace("example.org", "example.net")),
    ("port", BASE.replace("example.org", "example.org:1053")),
    ("scheme", BASE.replace("example.org", "tls://example.org:53")),
    ("empty_block_versus_none", BASE.replace("  log\n", "  log {\n  }\n")),
    ("token_boundaries", BASE.replace("forward . 1.1.1.1", 'forward ". 1.1.1.1"')),
]


@pytest.mark.parametrize(
    "text", [c[1] for c in SAME_FINGERPRINT], ids=[c[0] for c in SAME_FINGERPRINT]
)
def test_fingerprint_ignores_presentation(text: str) -> None:
    assert render(p(text)) == render(p(BASE))
    assert fingerprint(p(text)) == fingerprint(p(BASE))


@pytest.mark.parametrize(
    "text", [c[1] for c in DIFFERENT_FINGERPRINT], ids=[c[0] for c in DIFFERENT_FINGERPRINT]
)
def test_fingerprint_sees_changes(text: str) -> None:
    assert fingerprint(p(text)) != fingerprint(p(BASE))


def test_fingerprint_is_sha512_hex_and_stable() -> None:
    value = fingerprint(p(BASE))
    assert len(value) == 128 and int(value, 16) >= 0
    assert fingerprint(p(BASE)) == value
    assert fingerprint([]) != value


def test_fingerprint_follows_imported_files(tmp_path: Path) -> None:
    corefile = ". {\n  import conf.d/*.conf\n}\n"
    first = fingerprint(parse_tree(tmp_path, corefile, {"conf.d/a.conf": "log\n"}))
    same = fingerprint(parse_tree(tmp_path, corefile, {"conf.d/a.conf": "# note\nlog\n"}))
    changed = fingerprint(parse_tree(tmp_path, corefile, {"conf.d/a.conf": "log a\n"}))
    added = fingerprint(parse_tree(tmp_path, corefile, {"conf.d/b.conf": "errors\n"}))
    assert first == same
    assert len({first, changed, added}) == 3


# --- Errors and Directive helpers ----------------------------------------------------------------


def test_corefile_error_format() -> None:
    err = CorefileError("Corefile", 12, "Unknown directive 'fwd'")
    assert isinstance(err, Exception)
    assert str(err) == "Corefile:12 - Error during parsing: Unknown directive 'fwd'"
    assert (err.file, err.line, err.message, err.kind, err.plugin) == (
        "Corefile",
        12,
        "Unknown directive 'fwd'",
        "Error during parsing",
        None,
    )


def test_corefile_error_with_plugin_is_a_copy() -> None:
    err = CorefileError("Corefile", 3, "more than 15 TOs configured: 16")
    wrapped = err.with_plugin("forward")
    assert str(wrapped) == (
        "plugin/forward: Corefile:3 - Error during parsing: more than 15 TOs configured: 16"
    )
    assert wrapped.plugin == "forward" and err.plugin is None
    syntax = CorefileError(
        "Corefile", 2, "Unexpected token 'x', expecting '}'", kind="Syntax error"
    )
    assert str(syntax.with_plugin("log")) == (
        "plugin/log: Corefile:2 - Syntax error: Unexpected token 'x', expecting '}'"
    )


def test_directive_error_helpers() -> None:
    (block,) = p(". {\n  forward . {\n    bogus 1\n  }\n}\n")
    (forward,) = block.directives
    assert forward.block is not None
    (bogus,) = forward.block
    assert str(forward.arg_error()) == (
        "Corefile:2 - Error during parsing: Wrong argument count or unexpected line ending after 'forward'"
    )
    assert (
        str(bogus.unknown_property())
        == "Corefile:3 - Error during parsing: unknown property 'bogus'"
    )
    assert str(forward.error("no upstream")) == "Corefile:2 - Error during parsing: no upstream"
    assert str(forward.error("bad", at=bogus.args[0])) == "Corefile:3 - Error during parsing: bad"


def test_parsed_data_is_immutable() -> None:
    (block,) = p(". {\n  log\n}\n")
    with pytest.raises(AttributeError):
        block.directives[0].name = Token("x", "f", 1)  # type: ignore[misc]
    assert isinstance(block.directives, tuple) and isinstance(block.keys, tuple)


def test_parse_accepts_any_collection_of_directives() -> None:
    assert render(parse(". {\n  whoami\n}\n", directives=["whoami"], env={})) == [
        "dns://.:53 { whoami }"
    ]
    with pytest.raises(CorefileError):
        parse(". {\n  whoami\n}\n", directives=(), env={})


def test_environment_is_not_read_when_env_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(os.environ, "DNSFW_TEST_X", "from-os")
    assert render(p(". {\n  log {$DNSFW_TEST_X}\n}\n", env={})) == ['dns://.:53 { log "" }']
