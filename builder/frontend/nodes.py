"""Dockerfile nodes: one instruction line split the way BuildKit's parser splits it.

This is the layer below typed instructions (moby/buildkit ``frontend/dockerfile/parser``,
``line_parsers.go`` and ``split_command.go``): an instruction's keyword, its leading
``--flags``, and its arguments after the per-instruction rule (JSON-or-string for
RUN/CMD/ENTRYPOINT/SHELL, JSON-or-list for ADD/COPY/VOLUME, quote-keeping words for
ARG/ENV/LABEL, ...). Arguments are raw: no quote removal, no variable expansion.
``dump_node`` renders a node in BuildKit's AST dump format, which the conformance
tests compare byte for byte.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

from builder.errors import DockerfileError
from builder.frontend.expand import GO_SPACE, ShellLexer, go_trim_left_space, go_trim_space

# Go's reWhitespace in the parser: ASCII blanks only, unlike unicode.IsSpace.
_WS_SPLIT = re.compile(r"[\t\v\f\r ]+")
_HEREDOC_WORD = re.compile(r"([0-9]*)<<(-?)[\t\n\f\r ]*([^<]*)")
_LEADING_TABS = re.compile(r"^\t+", re.MULTILINE)
_SURROGATE = re.compile("[\ud800-\udfff]")

#: Instructions whose shell-form line may carry heredocs (also inside ONBUILD).
HEREDOC_INSTRUCTIONS = frozenset({"add", "copy", "run"})


@dataclass(frozen=True)
class NodeHeredoc:
    """A heredoc as the parser reads it: ``content`` is the raw body, never tab-stripped."""

    name: str
    content: str
    expand: bool
    chomp: bool
    fd: int


@dataclass(frozen=True)
class Node:
    """One parsed instruction line.

    ``keyword`` keeps its spelling; ``args`` are the argument strings; ``sub`` is the
    nested instruction of ONBUILD; ``json`` tells whether the arguments came from a JSON
    array. ``start_line``/``end_line`` are 1-based and include continuation lines and
    heredoc bodies.
    """

    keyword: str
    flags: tuple[str, ...]
    args: tuple[str, ...]
    sub: Node | None
    json: bool
    original: str
    start_line: int = 0
    end_line: int = 0
    heredocs: tuple[NodeHeredoc, ...] = ()

    def can_contain_heredoc(self) -> bool:
        """True for shell-form ADD/COPY/RUN, also as the trigger of an ONBUILD."""
        node = self.sub if self.keyword.lower() == "onbuild" and self.sub else self
        return node.keyword.lower() in HEREDOC_INSTRUCTIONS and not node.json


class NotStringArrayError(ValueError):
    """A JSON array argument holding something other than strings."""


_Parsed = tuple[tuple[str, ...], Node | None, bool]
_LineParser = Callable[[str, str], _Parsed]


def node_from_line(line: str, escape: str) -> Node:
    """Split one logical line (continuations already joined) into a Node.

    Raises DockerfileError (without a location) for the few things the parser itself
    refuses: a JSON array of non-strings, and ENV/LABEL without values.
    """
    keyword, flags, rest = split_command(line)
    parser = _LINE_PARSERS.get(keyword.lower(), _parse_ignore)
    try:
        args, sub, is_json = parser(rest, escape)
    except NotStringArrayError:
        raise DockerfileError(
            "when using JSON array syntax, arrays must be comprised of strings only",
            hint='write every element as a JSON string, e.g. ["echo", "hello"]',
        ) from None
    return Node(keyword, flags, args, sub, is_json, line)


def split_command(line: str) -> tuple[str, tuple[str, ...], str]:
    """Keyword, leading ``--flags`` (quotes removed) and the trimmed rest of the line."""
    parts = _WS_SPLIT.split(go_trim_space(line), maxsplit=1)
    if len(parts) < 2:
        return parts[0], (), ""
    rest, flags = extract_flags(parts[1])
    return parts[0], flags, go_trim_space(rest)


def extract_flags(line: str) -> tuple[str, tuple[str, ...]]:
    """Leading words that start with ``--``; a bare ``--`` ends them and is dropped.

    Inside a flag, quotes are removed and a backslash (always ``\\``, whatever the escape
    directive) makes the next character literal. Upstream walks bytes; we walk
    characters, which only differs for non-ASCII flag values (upstream garbles them).
    """
    words: list[str] = []
    pos = 0
    while True:
        while pos < len(line) and line[pos] in GO_SPACE:
            pos += 1
        if not line.startswith("--", pos):
            return line[pos:], tuple(words)
        word, pos, quoted = _flag_word(line, pos)
        if word == "--":
            return line[pos:], tuple(words)
        if word or quoted:
            words.append(word)
        if pos >= len(line):
            return "", tuple(words)


def _flag_word(line: str, pos: int) -> tuple[str, int, bool]:
    out: list[str] = []
    quote = ""
    quoted = False
    while pos < len(line):
        ch = line[pos]
        pos += 1
        if not quote and ch in GO_SPACE:
            return "".join(out), pos - 1, quoted
        if quote and ch == quote:
            quote = ""
            continue
        if not quote and ch in "'\"":
            quote, quoted = ch, True
            continue
        if ch == "\\":
            if pos == len(line):
                quote = ""
                continue  # a trailing backslash is dropped
            ch = line[pos]
            pos += 1
        out.append(ch)
    return "".join(out), pos, quoted


def parse_words(rest: str, escape: str) -> list[str]:
    """Split on blanks, keeping quotes and escape characters in the words (ARG/ENV/LABEL)."""
    words: list[str] = []
    word: list[str] = []
    blank_ok = False  # a quote was seen: the word counts even when empty ("")
    pos = 0
    while pos < len(rest):
        ch = rest[pos]
        pos += 1
        if ch in GO_SPACE:
            if blank_ok or word:
                words.append("".join(word))
            word, blank_ok = [], False
            continue
        if ch in "'\"":
            word.append(ch)
            pos = _quoted_word_part(rest, pos, ch, escape, word)
            blank_ok = True
            continue
        if ch == escape:
            if pos == len(rest):
                continue  # a trailing escape is dropped
            word.append(ch)
            ch = rest[pos]
            pos += 1
        word.append(ch)
    if blank_ok or word:
        words.append("".join(word))
    return words


def _quoted_word_part(rest: str, pos: int, quote: str, escape: str, word: list[str]) -> int:
    """Append to ``word`` the text after an opening ``quote`` up to and including its
    closing quote (or the end of ``rest``); return the position after it. The escape
    character works inside double quotes only, and stays in the word."""
    while pos < len(rest):
        ch = rest[pos]
        pos += 1
        if ch == quote:
            word.append(ch)
            return pos
        if ch == escape and quote != "'":
            if pos == len(rest):
                return pos  # a trailing escape is dropped
            word.append(ch)
            ch = rest[pos]
            pos += 1
        word.append(ch)
    return pos


def parse_json_array(rest: str) -> list[str] | None:
    """The strings of a JSON array, or None when ``rest`` is not one (shell form).

    Like Go's json.Unmarshal (BuildKit parser/line_parsers.go parseJSON; the older
    json.Decoder ignored it), text after the closing bracket other than blanks makes it
    no JSON: ``RUN ["echo", "hi"]junk`` is shell form. Raises NotStringArrayError for a
    valid array of non-strings.
    """
    rest = go_trim_left_space(rest)
    if not rest.startswith("["):
        return None
    try:
        value, end = _JSON.raw_decode(rest)
        if rest[end:].strip(" \t\r\n"):
            return None
    except (ValueError, _NotJson):
        return None
    except RecursionError:
        raise NotStringArrayError from None  # an array nested this deep holds arrays
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise NotStringArrayError
    # Go's decoder turns lone surrogate escapes into U+FFFD; keep strings encodable.
    return [_SURROGATE.sub("\ufffd", item) for item in value]


class _NotJson(Exception):
    pass


def _reject_constant(name: str) -> float:
    raise _NotJson(name)  # Go's JSON has no NaN or Infinity


_JSON = json.JSONDecoder(parse_constant=_reject_constant)


def _parse_ignore(rest: str, escape: str) -> _Parsed:
    return ("",), None, False


def _parse_string(rest: str, escape: str) -> _Parsed:
    return ((rest,) if rest else ()), None, False


def _parse_ws_list(rest: str, escape: str) -> _Parsed:
    return (tuple(_WS_SPLIT.split(rest)) if rest else ()), None, False


def _parse_maybe_json(rest: str, escape: str) -> _Parsed:
    if not rest:
        return (), None, False
    array = parse_json_array(rest)
    if array is None:
        return (rest,), None, False
    return tuple(array), None, True


def _parse_maybe_json_list(rest: str, escape: str) -> _Parsed:
    array = parse_json_array(rest)
    if array is None:
        return _parse_ws_list(rest, escape)
    return tuple(array), None, True


def _parse_arg(rest: str, escape: str) -> _Parsed:
    return tuple(parse_words(rest, escape)), None, False


def _name_value(keyword: str) -> _LineParser:
    def parse(rest: str, escape: str) -> _Parsed:
        words = parse_words(rest, escape)
        if not words:
            return (), None, False
        if "=" not in words[0]:
            # Old form `ENV key value...`: the value is the verbatim rest of the line.
            parts = _WS_SPLIT.split(rest, maxsplit=1)
            if len(parts) < 2:
                raise DockerfileError(
                    f"{keyword} must have two arguments",
                    hint=f"write {keyword} name=value (or {keyword} name value)",
                )
            return (parts[0], parts[1], ""), None, False
        args: list[str] = []
        for word in words:
            if "=" not in word:
                raise DockerfileError(
                    f"Syntax error - can't find = in {json.dumps(word)}. "
                    "Must be of the form: name=value",
                    hint='quote values that contain spaces: name="a b"',
                )
            key, value = word.split("=", 1)
            args += [key, value, "="]
        return tuple(args), None, False

    return parse


def _parse_healthcheck(rest: str, escape: str) -> _Parsed:
    sep = 0
    while sep < len(rest) and rest[sep] not in GO_SPACE:
        sep += 1
    if sep == 0:
        return (), None, False
    command, _, is_json = _parse_maybe_json(go_trim_left_space(rest[sep:]), escape)
    return (rest[:sep], *command), None, is_json


def _parse_onbuild(rest: str, escape: str) -> _Parsed:
    if not rest:
        return (), None, False
    return (), node_from_line(rest, escape), False


_LINE_PARSERS: dict[str, _LineParser] = {
    "add": _parse_maybe_json_list,
    "arg": _parse_arg,
    "cmd": _parse_maybe_json,
    "copy": _parse_maybe_json_list,
    "entrypoint": _parse_maybe_json,
    "env": _name_value("ENV"),
    "expose": _parse_ws_list,
    "from": _parse_ws_list,
    "healthcheck": _parse_healthcheck,
    "label": _name_value("LABEL"),
    "maintainer": _parse_string,
    "onbuild": _parse_onbuild,
    "run": _parse_maybe_json,
    "shell": _parse_maybe_json,
    "stopsignal": _parse_string,
    "user": _parse_string,
    "volume": _parse_maybe_json_list,
    "workdir": _parse_string,
}

#: Every instruction keyword BuildKit knows (lower case).
KNOWN_INSTRUCTIONS = frozenset(_LINE_PARSERS)


def parse_heredoc_word(word: str) -> NodeHeredoc | None:
    """The heredoc a word like ``<<EOF``, ``<<-'EOF'`` or ``3<<EOF`` opens, else None.

    The name has its quotes removed; ``expand`` is False when any part of it was quoted.
    Raises DockerfileError for unbalanced quotes in the name.
    """
    match = _HEREDOC_WORD.fullmatch(word)
    if match is None or not match.group(3):
        return None
    fd, chomp, rest = match.groups()
    plain = ShellLexer(skip_unset=True).process(rest, {}).words
    if len(plain) != 1:
        return None
    raw = ShellLexer(skip_unset=True, raw_quotes=True).process(rest, {}).words
    if len(raw) != 1:
        raise DockerfileError(f"internal lexing of heredoc produced inconsistent results: {rest}")
    expand = _count_quotes(plain[0]) == _count_quotes(raw[0])
    if len(fd or "") > 9:  # int() refuses 4300 digits; no fd is this large
        raise DockerfileError(f"heredoc file descriptor {fd[:20]}... is out of range")
    return NodeHeredoc(plain[0], "", expand, chomp == "-", int(fd or "0"))


def _count_quotes(text: str) -> int:
    return text.count("'") + text.count('"')


def heredocs_in_line(line: str) -> list[NodeHeredoc]:
    """The heredocs an instruction line opens, in order (bodies not read yet)."""
    lexer = ShellLexer(raw_quotes=True, raw_escapes=True, skip_unset=True)
    try:
        words = lexer.process(line, {}).words
    except DockerfileError:
        return []  # upstream ignores a line it cannot lex: it simply has no heredocs
    found = (parse_heredoc_word(word) for word in words)
    return [doc for doc in found if doc is not None]


def chomp_heredoc(content: str) -> str:
    """Strip leading tabs from every line, as ``<<-`` asks."""
    return _LEADING_TABS.sub("", content)


def dump_node(node: Node) -> str:
    """One instruction in BuildKit's AST dump form, e.g. ``(copy ["--from=a"] "x" "/")``."""
    text = node.keyword.lower()
    if node.flags:
        text += " [" + " ".join(go_quote(flag) for flag in node.flags) + "]"
    for arg in node.args:
        text += " " + go_quote(arg)
    if node.sub is not None:
        text += " (" + dump_node(node.sub) + ")"
    return go_trim_space(text)


def go_quote(text: str) -> str:
    """Go's ``strconv.Quote``: printable runes as-is, everything else escaped."""
    out = ['"']
    for ch in text:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch in _GO_ESCAPES:
            out.append(_GO_ESCAPES[ch])
        elif ch == " " or (unicodedata.category(ch)[0] in "LMNPS" and ch.isprintable()):
            out.append(ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        elif 0xD800 <= ord(ch) <= 0xDFFF:
            out.append("\\ufffd")  # Go sees invalid UTF-8 here; keep the dump encodable
        elif ord(ch) < 0x10000:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    out.append('"')
    return "".join(out)


_GO_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_GO_ESCAPES["\v"] = "\\v"
