"""The Corefile language, as CoreDNS parses it (coredns/caddy ``caddyfile`` plus CoreDNS's keys).

This module turns Corefile text into server blocks of directives, with the file and line of every
token for error messages. It knows nothing about plugins: the caller passes the set of valid
directive names, and each plugin interprets its own directive's arguments and block.

Lexing
    The input is UTF-8; a leading BOM is dropped. Tokens are separated by whitespace; ``\\r`` is
    ignored and each ``\\n`` starts a new line. An unquoted ``#`` starts a comment that runs to the
    end of the line, even in the middle of a token (``foo#bar`` is ``foo``). A token that *starts*
    with ``"`` runs to the next unescaped ``"`` (it may span lines); its quotes are stripped and
    ``\\"`` is its only escape (``"a\\.b"`` is ``a\\.b``). A quote inside a token is literal
    (``ab"c"``), a closing quote ends the token (``"ab"cd`` is ``ab`` and ``cd``) and ``""`` is
    an empty token. Braces are ordinary characters: ``{`` and ``}`` are special only as tokens on
    their own (``example.org{`` and ``log}`` are single tokens). Every token keeps the line where it
    starts.

Environment
    After lexing, ``{%NAME%}`` and then ``{$NAME}`` in any token are replaced by the variable's
    value ("" when unset), so they work inside quotes and a value with spaces stays one token.
    Malformed references such as ``{%NAME}`` are left alone. Substituted values are not scanned
    again.

Structure::

    corefile     = { import_line | snippet_def | server_block }
    snippet_def  = "(" NAME ")" "{" tokens-with-balanced-braces "}"
    server_block = keys [NEWLINE] "{" { line } "}"
                 | keys NEWLINE { line }                  (brace-less: runs to the end of input)
    keys         = KEY { KEY }           one line; a KEY ending in "," continues on the next line
    line         = import_line | DIRECTIVE { ARG } [ "{" { line } "}" ] NEWLINE

    The first token of each line of a server block must be a known directive
    (``Unknown directive 'X'``); lines inside a directive's ``{ }`` are not checked, because the
    plugin owns them. A ``{`` on a line opens a nested block (to any depth) whose lines become
    ``Directive.block``; it may close on the same line (``health { lameduck 5s }``), and after
    its ``}`` the line must end. A ``}`` ends the current line inside a nested block, but on a
    server-block line it is an error, as in CoreDNS (so ``. { whoami }`` is refused). A bare
    word before the first block is a key, not a global directive.

Snippets and imports
    ``(name) { ... }`` defines a snippet; its tokens are interpreted where ``import name``
    replays them. ``import PATTERN`` (first token of a line: in place of keys, in a server block,
    or in a directive's block) splices a snippet, or else the files matching PATTERN, relative
    to the directory of the file that holds the ``import``. A glob may have at most one ``*``,
    one ``?`` and no ``[...]``; a glob without matches only logs a warning, a missing plain file
    is an error. Import cycles (a snippet or file importing itself, directly or not) are errors,
    and one parse expands at most 10000 snippet and 100000 file imports.

Keys
    ``[SCHEME://]ZONE[:PORT]`` with SCHEME one of dns (default), tls, quic, grpc, https, https3.
    Default ports: dns the ``dns_port`` argument, tls and quic 853, grpc/https/https3 443. The
    zone is lower-cased and fully qualified, international names in A-labels (``straße.de``
    is ``xn--strae-oqa.de.``); an empty zone (``:1053``) is the root ``.``. A zone written as a
    CIDR becomes its reverse zones, rounded to octet (IPv4) or nibble (IPv6) boundaries:
    ``10.0.0.0/27`` is the 32 zones ``0.0.0.10.in-addr.arpa.`` .. ``31.0.0.10.in-addr.arpa.``
    (``proxy.names``; plugins read zone arguments the same way, with ``zones_of``). An empty key
    (``""``) is ignored. Duplicate zone and port checks need ``bind`` information, so they
    happen in the core, not here.

Errors are ``CorefileError`` and print like CoreDNS's, with a hint where one helps:
``Corefile:12 - Error during parsing: Unknown directive 'firewal' (did you mean 'firewall'?)``.
A block still open at the end of the input names the block and where it opened (CoreDNS
says only ``Unexpected token '}', expecting '}'``); an unknown directive that looks like a
server block key, or a stray ``}``, says which block it ended up in.

Stricter than CoreDNS, on purpose (each of these is accepted there and then misbehaves): an
unterminated quote; a ``}`` in a brace-less block; a ``{`` with no key before it; tokens after
a nested block's ``}`` on its line; blocks nested more than 100 deep; unknown schemes; zones
that are not host names (labels of letters, digits, ``-`` and ``_``); a ``/`` in a zone that
is not a CIDR; ports above 65535. ``import`` is recognised as the first word of any line in
a directive's block, including right after its ``{``.
"""

from __future__ import annotations

import difflib
import glob
import hashlib
import json
import logging
import os
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

from . import names

__all__ = [
    "CorefileError",
    "Directive",
    "ServerBlock",
    "ServerKey",
    "Token",
    "did_you_mean",
    "fingerprint",
    "parse",
    "parse_file",
    "zones_of",
]

log = logging.getLogger("dnsfw.corefile")

MAX_SNIPPET_EXPANSIONS = 10_000
MAX_FILE_EXPANSIONS = 100_000
MAX_BLOCK_DEPTH = 100  # nested { } levels in a directive; deeper input is surely a mistake
_SNIPPET_LIMIT_MESSAGE = f"maximum snippet import depth ({MAX_SNIPPET_EXPANSIONS}) exceeded"
_FILE_LIMIT_MESSAGE = f"maximum file import depth ({MAX_FILE_EXPANSIONS}) exceeded"


class CorefileError(Exception):
    """A configuration error at a file and line, formatted like CoreDNS."""

    def __init__(
        self,
        file: str,
        line: int,
        message: str,
        *,
        kind: str = "Error during parsing",
        plugin: str | None = None,
    ) -> None:
        super().__init__(file, line, message)
        self.file = file
        self.line = line
        self.message = message
        self.kind = kind
        self.plugin = plugin

    def __str__(self) -> str:
        text = f"{self.file}:{self.line} - {self.kind}: {self.message}"
        return f"plugin/{self.plugin}: {text}" if self.plugin else text

    def with_plugin(self, name: str) -> CorefileError:
        """A copy of this error attributed to plugin ``name`` (``plugin/NAME: ...``)."""
        return CorefileError(self.file, self.line, self.message, kind=self.kind, plugin=name)


@dataclass(frozen=True, slots=True)
class Token:
    text: str
    file: str
    line: int


@dataclass(frozen=True, slots=True)
class Directive:
    """One line of a server block (or of a directive's { } block), with its nested block."""

    name: Token
    args: tuple[Token, ...]
    block: tuple[Directive, ...] | None

    @property
    def file(self) -> str:
        return self.name.file

    @property
    def line(self) -> int:
        return self.name.line

    @property
    def values(self) -> list[str]:
        return [arg.text for arg in self.args]

    def error(self, message: str, at: Token | None = None) -> CorefileError:
        """An error at token ``at`` (default: this line's name)."""
        token = self.name if at is None else at
        return CorefileError(token.file, token.line, message)

    def arg_error(self) -> CorefileError:
        return self.error(
            f"Wrong argument count or unexpected line ending after '{self.name.text}'"
        )

    def unknown_property(self, known: Iterable[str] = ()) -> CorefileError:
        """``unknown property 'X'``, with the closest of ``known`` as a suggestion."""
        word = self.name.text
        return self.error(f"unknown property '{word}'{did_you_mean(word, known)}")


def did_you_mean(word: str, known: Iterable[str]) -> str:
    """`` (did you mean 'X'?)`` for the closest of ``known`` to a mistyped ``word``, or "".

    Every "unknown directive / property / option" message of the parser and the plugins
    gets its suggestion here, so they all read alike.
    """
    # 0.7, not difflib's 0.6: 'ttl' would get 'keepttl'; typos of one or two letters pass
    close = difflib.get_close_matches(word, list(known), n=1, cutoff=0.7)
    return f" (did you mean '{close[0]}'?)" if close else ""


@dataclass(frozen=True, slots=True)
class ServerKey:
    scheme: str
    zone: str
    port: int
    token: Token

    @property
    def address(self) -> str:
        return f"{self.scheme}://{self.zone}:{self.port}"


@dataclass(frozen=True, slots=True)
class ServerBlock:
    keys: tuple[ServerKey, ...]
    directives: tuple[Directive, ...]
    file: str
    line: int


def parse(
    text: str,
    *,
    filename: str = "Corefile",
    directives: Collection[str],
    dns_port: int = 53,
    env: Mapping[str, str] | None = None,
) -> list[ServerBlock]:
    """Parse Corefile ``text``; ``filename`` names its tokens and anchors relative imports."""
    parser = _Parser(
        text, filename, frozenset(directives), dns_port, os.environ if env is None else env
    )
    return parser.parse()


def parse_file(
    path: str,
    *,
    directives: Collection[str],
    dns_port: int = 53,
    env: Mapping[str, str] | None = None,
) -> list[ServerBlock]:
    """Read and parse the Corefile at ``path``; an unreadable file is a CorefileError at line 0."""
    try:
        text = _read_text(path)
    except OSError as exc:
        raise CorefileError(path, 0, f"Could not read file: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise CorefileError(
            path, 0, f"Could not read file: {_describe_decode_error(exc)}"
        ) from None
    return parse(text, filename=path, directives=directives, dns_port=dns_port, env=env)


def fingerprint(blocks: list[ServerBlock]) -> str:
    """SHA-512 (hex) of the parsed structure without file and line positions.

    Comment and layout edits leave it unchanged; any change of keys, directives or arguments,
    including inside imported files, changes it.
    """
    canonical = [
        [[[key.scheme, key.zone, key.port] for key in block.keys], _canonical(block.directives)]
        for block in blocks
    ]
    encoded = json.dumps(canonical, separators=(",", ":")).encode()
    return hashlib.sha512(encoded).hexdigest()


def _canonical(lines: Sequence[Directive]) -> list[object]:
    return [
        [line.name.text, line.values, None if line.block is None else _canonical(line.block)]
        for line in lines
    ]


def _read_text(path: str) -> str:
    with open(path, "rb") as handle:
        return handle.read().decode("utf-8")


def _describe_decode_error(exc: UnicodeDecodeError) -> str:
    line = exc.object[: exc.start].count(b"\n") + 1
    return f"not valid UTF-8 (line {line}, byte {exc.start})"


# --- Lexer -------------------------------------------------------------------------------------

# Go's unicode.IsSpace, without "\r" (which the lexer drops wherever it appears outside quotes).
_WHITESPACE = "\t\n\v\f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
_SKIP = re.compile(f"(?:[{_WHITESPACE}\\r]+|#[^\\n]*)*")
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"', re.DOTALL)
_BARE = re.compile(f"[^{_WHITESPACE}#]+")


@dataclass(frozen=True, slots=True)
class _Lexeme:
    token: Token
    starts_line: bool  # first token on its line (line breaks inside quoted tokens count)


def _lex(text: str, filename: str, env: Mapping[str, str]) -> list[_Lexeme]:
    """Split ``text`` into tokens (with environment references substituted)."""
    text = text.removeprefix("\ufeff")
    lexemes: list[_Lexeme] = []
    pos, line, previous_end_line = 0, 1, 0
    while True:
        skipped = _SKIP.match(text, pos)
        line += text.count("\n", pos, skipped.end())
        pos = skipped.end()
        if pos == len(text):
            return lexemes
        start_line = line
        if text[pos] == '"':
            match = _QUOTED.match(text, pos)
            if match is None:
                raise CorefileError(filename, line, "Unterminated quoted string")
            # In the raw body every '"' follows a backslash, so this is the only unescape.
            value = match.group(1).replace('\\"', '"')
            line += value.count("\n")
        else:
            match = _BARE.match(text, pos)
            assert match is not None  # _SKIP stopped at a character that starts a bare token
            value = match.group().replace("\r", "")
        pos = match.end()
        token = Token(_substitute_env(value, env), filename, start_line)
        lexemes.append(_Lexeme(token, start_line > previous_end_line))
        previous_end_line = line


def _substitute_env(text: str, env: Mapping[str, str]) -> str:
    if "{" not in text:
        return text
    return _replace_references(_replace_references(text, "{%", "%}", env), "{$", "}", env)


def _replace_references(text: str, start: str, end: str, env: Mapping[str, str]) -> str:
    parts: list[str] = []
    pos = 0
    while (begin := text.find(start, pos)) != -1:
        name_start = begin + len(start)
        finish = text.find(end, name_start)
        if finish <= name_start:  # no terminator, or an empty name: CoreDNS stops here too
            break
        parts.append(text[pos:begin])
        parts.append(env.get(text[name_start:finish], ""))
        pos = finish + len(end)
    parts.append(text[pos:])
    return "".join(parts)


# --- Token cursor --------------------------------------------------------------------------------


class _Frame:
    """Tokens being replayed: a file, or a snippet body at the place it is imported."""

    __slots__ = ("lexemes", "pos", "kind", "name", "identity")

    def __init__(self, lexemes: Sequence[_Lexeme], kind: str, name: str, identity: str) -> None:
        self.lexemes = lexemes
        self.pos = 0
        self.kind = kind  # "file" or "snippet"
        self.name = name  # shown in messages
        self.identity = identity  # compared to detect import cycles (real path, snippet name)


class _Cursor:
    """Reads tokens through a stack of frames, so an import splices tokens in place.

    A frame stays on the stack until a token is read beyond it, so while an import line is
    handled, every frame that has been started is an ancestor of that import: that is the
    chain checked for cycles. Frames pushed for later files of the same glob have not started.
    """

    def __init__(self, frame: _Frame) -> None:
        self._frames = [frame]
        self._previous_frame: _Frame | None = None
        self.last: Token | None = None  # the last token read, where EOF errors point

    def peek(self) -> _Lexeme | None:
        for frame in reversed(self._frames):
            if frame.pos < len(frame.lexemes):
                return self._lexeme(frame)
        return None

    def next(self) -> _Lexeme | None:
        while self._frames and self._frames[-1].pos == len(self._frames[-1].lexemes):
            self._frames.pop()
        if not self._frames:
            return None
        frame = self._frames[-1]
        lexeme = self._lexeme(frame)
        frame.pos += 1
        self._previous_frame = frame
        self.last = lexeme.token
        return lexeme

    def push(self, frame: _Frame) -> None:
        self._frames.append(frame)

    def chain(self, kind: str) -> list[_Frame]:
        """The started frames of ``kind``, outermost first."""
        return [frame for frame in self._frames if frame.kind == kind and frame.pos > 0]

    def _lexeme(self, frame: _Frame) -> _Lexeme:
        lexeme = frame.lexemes[frame.pos]
        # Imports always take whole lines, so crossing into or out of a frame starts a line.
        if lexeme.starts_line or frame.pos == 0 or frame is not self._previous_frame:
            return _Lexeme(lexeme.token, True)
        return lexeme


# --- Parser --------------------------------------------------------------------------------------


class _Parser:
    def __init__(
        self,
        text: str,
        filename: str,
        directives: frozenset[str],
        dns_port: int,
        env: Mapping[str, str],
    ) -> None:
        self._directives = directives
        self._dns_port = dns_port
        self._env = env
        self._snippets: dict[str, list[_Lexeme]] = {}
        self._files: dict[str, list[_Lexeme]] = {}  # lexed imported files, by real path
        self._snippet_expansions = 0
        self._file_expansions = 0
        # blocks currently open, outermost first: (what, its first token) for error messages
        self._open: list[tuple[str, Token]] = []
        self._last_closed: tuple[str, Token, Token] | None = None  # (what, opened at, '}')
        main = _Frame(_lex(text, filename, env), "file", filename, os.path.realpath(filename))
        self._cursor = _Cursor(main)

    def parse(self) -> list[ServerBlock]:
        blocks = []
        while (first := self._cursor.next()) is not None:
            block = self._entry(first)
            if block is not None:
                blocks.append(block)
        return blocks

    # Top level: a snippet definition or a server block.

    def _entry(self, first: _Lexeme) -> ServerBlock | None:
        key_tokens, braced = self._key_line(first)
        if len(key_tokens) == 1 and _is_snippet_name(key_tokens[0].text):
            self._define_snippet(key_tokens[0], braced)
            return None
        keys = [key for token in key_tokens for key in _parse_key(token, self._dns_port)]
        label = "server block '" + " ".join(t.text for t in key_tokens) + "'"
        lines = self._server_lines(braced, label, first.token)
        if not keys:  # only "" keys: CoreDNS drops the block
            return None
        return ServerBlock(tuple(keys), tuple(lines), key_tokens[0].file, key_tokens[0].line)

    def _key_line(self, lexeme: _Lexeme) -> tuple[list[Token], bool]:
        """Read the keys; returns them and whether the block's ``{`` was read."""
        keys: list[Token] = []
        expecting_another = seen_key = False
        while True:
            token = lexeme.token
            if token.text == "import" and lexeme.starts_line:
                self._import(token)
                following = self._cursor.next()
                if following is None:
                    if expecting_another:
                        raise self._eof_error()
                    return keys, False
                lexeme = following
                continue
            if token.text == "}":
                raise _error(
                    token,
                    "Unexpected '}' because no matching opening brace"
                    + (
                        ""
                        if self._last_closed is None
                        else " (the '}}' at {2} closed the {0} opened at {1})".format(
                            self._last_closed[0], *map(_at, self._last_closed[1:])
                        )
                    ),
                )
            if token.text == "{":
                if expecting_another:
                    raise _error(
                        token, "Expected another address but had '{' - check for extra comma"
                    )
                if not seen_key:
                    raise _error(token, "Expected a server block key (zone) before '{'")
                return keys, True
            seen_key = True
            expecting_another = token.text.endswith(",")
            text = token.text.removesuffix(",")
            if text:
                keys.append(Token(text, token.file, token.line))
            following = self._cursor.peek()
            if following is None:
                if expecting_another:
                    raise self._eof_error()
                return keys, False
            if following.starts_line and not expecting_another:
                if following.token.text == "{":
                    self._cursor.next()
                    return keys, True
                return keys, False
            lexeme = self._next()

    def _define_snippet(self, key: Token, braced: bool) -> None:
        if not braced:
            following = self._cursor.peek()
            raise _syntax_error(key if following is None else following.token, "{")
        name = key.text[1:-1]
        if name in self._snippets:
            raise _error(key, f"redeclaration of previously declared snippet {name}")
        body: list[_Lexeme] = []
        depth = 1
        self._open.append((f"snippet '{key.text}'", key))
        while True:
            lexeme = self._cursor.next()
            if lexeme is None:
                raise self._unclosed_error()
            if lexeme.token.text == "}":
                depth -= 1
                if depth == 0:
                    break
            elif lexeme.token.text == "{":
                depth += 1
            body.append(lexeme)
        self._open.pop()
        _check_direct_self_import(name, body)
        self._snippets[name] = body

    # Lines of a server block and of directive blocks.

    def _server_lines(self, braced: bool, label: str, first: Token) -> list[Directive]:
        lines: list[Directive] = []
        self._open.append((label, first))
        while (lexeme := self._cursor.next()) is not None:
            token = lexeme.token
            if token.text == "}":
                if braced:
                    self._close(token)
                    return lines
                raise _error(
                    token,
                    "Unexpected '}' because no matching opening brace"
                    f" ({label} at {_at(first)} has no '{{')",
                )
            if token.text == "import":
                self._import(token)
                continue
            if token.text not in self._directives:
                hint = self._unknown_directive_hint(token, lines, braced)
                raise _error(token, f"Unknown directive '{token.text}'{hint}")
            lines.append(self._directive(token, nested=False))
        if braced:
            raise self._unclosed_error()
        self._open.pop()
        return lines

    def _unknown_directive_hint(self, token: Token, lines: list[Directive], braced: bool) -> str:
        """Why a line might not start with a directive: a typo, a missing '}' or '{'."""
        if token.text.endswith("}") and token.text[:-1] in self._directives:
            return " (put a space before '}')"
        hint = did_you_mean(token.text, self._directives)
        if hint:
            return hint
        label, first = self._open[-1]
        if "." in token.text or ":" in token.text:  # reads like a server block key
            if braced:
                return f" (is a '}}' missing before it? {label} at {_at(first)} is still open)"
            return f" ({label} at {_at(first)} has no '{{', so it runs to the end of the file)"
        # the line right above has no block: maybe its '{' is missing (the lines below it
        # then read as directives)
        if lines and lines[-1].block is None and lines[-1].line + 1 == token.line:
            previous = lines[-1].name
            return f" (a property of '{previous.text}' at {_at(previous)}? then that line needs a '{{')"
        return ""

    def _nested_lines(self, name: Token, args: list[Token]) -> tuple[Directive, ...]:
        """The lines after a directive's ``{``, through its matching ``}``."""
        if len(self._open) > MAX_BLOCK_DEPTH:  # the server block is not a nesting level
            raise _error(name, f"blocks nested more than {MAX_BLOCK_DEPTH} levels deep")
        self._open.append((f"block of '{' '.join(t.text for t in [name, *args])}'", name))
        lines: list[Directive] = []
        while (lexeme := self._cursor.next()) is not None:
            token = lexeme.token
            if token.text == "}":
                self._close(token)
                return tuple(lines)
            if token.text == "import":
                self._import(token)
                continue
            if token.text == "{":
                raise _error(token, "Unexpected '{' - a block must open on the line that names it")
            lines.append(self._directive(token, nested=True))
        raise self._unclosed_error()

    def _directive(self, name: Token, *, nested: bool) -> Directive:
        args: list[Token] = []
        while (lexeme := self._cursor.peek()) is not None and not lexeme.starts_line:
            token = lexeme.token
            if token.text == "}":
                if nested:  # closes the enclosing block; the caller reads it
                    break
                raise _error(token, "Unexpected '}' because no matching opening brace")
            self._cursor.next()
            if token.text == "{":
                block = self._nested_lines(name, args)
                self._check_line_ends_after_block(nested)
                return Directive(name, tuple(args), block)
            args.append(token)
        return Directive(name, tuple(args), None)

    def _check_line_ends_after_block(self, nested: bool) -> None:
        following = self._cursor.peek()
        if following is None or following.starts_line:
            return
        token = following.token
        if token.text == "}":
            if nested:
                return
            raise _error(token, "Unexpected '}' because no matching opening brace")
        raise _error(token, f"Unexpected token '{token.text}' after '}}', expecting a new line")

    # Imports.

    def _import(self, keyword: Token) -> None:
        args = []
        while (lexeme := self._cursor.peek()) is not None and not lexeme.starts_line:
            args.append(self._next().token)
        if not args:
            raise _error(keyword, "Wrong argument count or unexpected line ending after 'import'")
        if not args[0].text:
            raise _error(args[0], "Import requires a non-empty filepath")
        if len(args) > 1:
            raise _error(args[1], "Import takes only one argument (glob pattern or file)")
        pattern = args[0]
        if pattern.text in self._snippets:
            self._import_snippet(pattern)
        else:
            self._import_files(pattern)

    def _import_snippet(self, pattern: Token) -> None:
        name = pattern.text
        chain = [frame.name for frame in self._cursor.chain("snippet")]
        if name in chain:
            cycle = " -> ".join([*chain[chain.index(name) :], name])
            raise _error(pattern, f"{_SNIPPET_LIMIT_MESSAGE} (import cycle: {cycle})")
        if self._snippet_expansions >= MAX_SNIPPET_EXPANSIONS:
            raise _error(pattern, _SNIPPET_LIMIT_MESSAGE)
        self._snippet_expansions += 1
        self._cursor.push(_Frame(self._snippets[name], "snippet", name, name))

    def _import_files(self, pattern: Token) -> None:
        base = os.path.dirname(os.path.abspath(pattern.file))
        glob_pattern = os.path.join(base, pattern.text)  # an absolute pattern stays as it is
        if (
            glob_pattern.count("*") > 1
            or glob_pattern.count("?") > 1
            or ("[" in glob_pattern and "]" in glob_pattern)
        ):
            # Many wildcards can make a glob very slow (caddy issue #2096).
            raise _error(
                pattern,
                f"Glob pattern may only contain one wildcard (*), but has others: {glob_pattern}",
            )
        if self._file_expansions >= MAX_FILE_EXPANSIONS:
            raise _error(pattern, _FILE_LIMIT_MESSAGE)
        self._file_expansions += 1
        matches = sorted(glob.glob(glob_pattern, include_hidden=True))  # Go's Glob shows dotfiles
        if not matches:
            if any(char in glob_pattern for char in "*?[]"):
                log.warning("No files matching import glob pattern: %s", pattern.text)
                return
            raise _error(pattern, f"File to import not found: {pattern.text}")
        frames = [self._file_frame(pattern, path) for path in matches]
        for frame in reversed(frames):
            self._cursor.push(frame)

    def _file_frame(self, pattern: Token, path: str) -> _Frame:
        real = os.path.realpath(path)
        chain = self._cursor.chain("file")
        for index, frame in enumerate(chain):
            if frame.identity == real:
                cycle = " -> ".join([*(f.name for f in chain[index:]), path])
                raise _error(pattern, f"Could not import {path}: import cycle ({cycle})")
        if os.path.isdir(path):
            raise _error(pattern, f"Could not import {path}: is a directory")
        display = os.path.abspath(path)
        lexemes = self._files.get(real)
        if lexemes is None:
            try:
                text = _read_text(path)
            except OSError as exc:
                raise _error(pattern, f"Could not import {path}: {exc.strerror or exc}") from None
            except UnicodeDecodeError as exc:
                message = f"Could not import {path}: {_describe_decode_error(exc)}"
                raise _error(pattern, message) from None
            lexemes = self._files[real] = _lex(text, display, self._env)
        return _Frame(lexemes, "file", display, real)

    # Helpers.

    def _next(self) -> _Lexeme:
        """The next token, when peek() has shown there is one."""
        lexeme = self._cursor.next()
        assert lexeme is not None
        return lexeme

    def _eof_error(self) -> CorefileError:
        assert self._cursor.last is not None
        return _error(self._cursor.last, "Unexpected EOF")

    def _close(self, brace: Token) -> None:
        label, first = self._open.pop()
        self._last_closed = (label, first, brace)

    def _unclosed_error(self) -> CorefileError:
        """A block still open at the end of input: at the last token (as CoreDNS), naming the
        innermost open block and where it opened, and what the last ``}`` closed."""
        last = self._cursor.last
        assert last is not None and self._open
        label, first = self._open[-1]
        message = (
            f"missing '}}': the {label} opened at {_at(first)} is still open at the end of the file"
        )
        if len(self._open) > 1:
            outer = ", ".join(f"the {what} opened at {_at(at)}" for what, at in self._open[-2::-1])
            message += f" (so is {outer})"
        if self._last_closed is not None and self._last_closed[2] is last:
            closed, opened, _ = self._last_closed
            message += f"; the '}}' at {_at(last)} closes the {closed} opened at {_at(opened)}"
        return CorefileError(last.file, last.line, message, kind="Syntax error")


def _error(token: Token, message: str) -> CorefileError:
    return CorefileError(token.file, token.line, message)


def _at(token: Token) -> str:
    return f"{token.file}:{token.line}"


def _syntax_error(token: Token, expected: str) -> CorefileError:
    return CorefileError(
        token.file,
        token.line,
        f"Unexpected token '{token.text}', expecting '{expected}'",
        kind="Syntax error",
    )


def _is_snippet_name(key: str) -> bool:
    return key.startswith("(") and key.endswith(")") and len(key) >= 2


def _check_direct_self_import(name: str, body: Sequence[_Lexeme]) -> None:
    """Refuse a snippet whose body imports itself, when it is defined (as CoreDNS does)."""
    for index, lexeme in enumerate(body[:-1]):
        at_line_start = index == 0 or lexeme.starts_line
        if lexeme.token.text == "import" and at_line_start and body[index + 1].token.text == name:
            raise _error(lexeme.token, _SNIPPET_LIMIT_MESSAGE)


# --- Server-block keys ---------------------------------------------------------------------------

_SCHEMES = ("dns", "tls", "quic", "grpc", "https", "https3")
_DEFAULT_PORTS = {"tls": 853, "quic": 853, "grpc": 443, "https": 443, "https3": 443}
_HOST_ZONE = re.compile(r"\.|(?:[a-z0-9_-]{1,63}\.)+")  # keys must be host names


def _parse_key(token: Token, dns_port: int) -> list[ServerKey]:
    """One written key as ServerKeys: one, or several for a CIDR off an octet/nibble boundary."""
    scheme, rest = "dns", token.text
    if "://" in rest:
        scheme, rest = rest.split("://", 1)
        if scheme == "unix":
            raise _error(token, f"transport 'unix' cannot serve a server block: {token.text}")
        if scheme not in _SCHEMES:
            known = ", ".join(_SCHEMES)
            raise _error(token, f"unknown transport '{scheme}' in '{token.text}' (known: {known})")
    host, port = _split_port(token, rest)
    if port is None:
        port = _DEFAULT_PORTS.get(scheme, dns_port)
    if len(host) > 255:
        raise _error(token, f"specified zone is too long: {len(host)} > 255")
    zones = zones_of(token, host)
    if not all(_HOST_ZONE.fullmatch(zone) for zone in zones):
        hint = " (put a space before '{')" if host.endswith("{") else ""
        raise _error(token, f"zone is not a valid domain name: {host}{hint}")
    return [ServerKey(scheme, zone, port, token) for zone in zones]


def _split_port(token: Token, text: str) -> tuple[str, int | None]:
    """Split a trailing ``:PORT``; an IPv6 CIDR's own colons are not a port."""
    if text.endswith(":"):
        raise _error(token, f"expecting data after last colon: {_go_quote(text)}")
    host, colon, port_text = text.rpartition(":")
    if not colon:
        return text, None
    if not (port_text.isascii() and port_text.isdigit()):
        if "/" in text:  # e.g. fd00::/64
            return text, None
        raise _error(token, f"invalid port '{port_text}' in '{token.text}'")
    port = int(port_text)
    if port > 65535:
        raise _error(token, f"invalid port '{port_text}' in '{token.text}': must be 0-65535")
    return host, port


def zones_of(token: Token, text: str | None = None) -> list[str]:
    """The zones a token names (``text``: the zone part of a key), by ``proxy.names.zones``:
    a lower-case FQDN, or a CIDR's reverse zones; a CorefileError at the token's line if
    neither. Plugins read their zone arguments with this, as the keys are read."""
    text = token.text if text is None else text
    try:
        return names.zones(text)
    except ValueError as err:
        raise _error(token, str(err)) from None


def _go_quote(text: str) -> str:
    """Quote like Go's %q for the printable text found in keys."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
