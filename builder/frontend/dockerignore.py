""".dockerignore patterns with the semantics of moby/patternmatcher (what BuildKit uses).

Syntax is Go's ``filepath.Match`` (``*``, ``?``, ``[a-z]``, ``[^a-z]``, ``\\`` escapes) plus
``**`` for any number of directories. A path is excluded when the *last* pattern that
matches it or one of its parent directories is a normal pattern, not a ``!`` exception.

Deliberate differences from upstream's regexp translation, all in corners upstream garbles:
inside ``[...]`` every character is literal, and ``\\x`` is always the literal ``x``
(upstream hands ``\\d``, ``\\p`` or a ``*`` inside a class to Go's regexp engine).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from builder.errors import BuildError

# Go's unicode.IsSpace, which strings.TrimSpace uses; Python's str.strip() also strips
# \x1c-\x1f, which Go keeps.
_GO_SPACE = (
    "\t\n\v\f\r \x85\xa0\u1680"
    + "".join(map(chr, range(0x2000, 0x200B)))
    + ("\u2028\u2029\u202f\u205f\u3000")
)
_SYNTAX_HINT = (
    "patterns use Go filepath.Match syntax: *, ?, [a-z], [^a-z], \\ escapes, "
    "and ** for any number of directories"
)


def clean_path(path: str) -> str:
    """Go's ``filepath.Clean`` on a ``/`` path: ``""`` -> ``"."``, ``a//b/../c`` -> ``a/c``."""
    rooted = path.startswith("/")
    parts: list[str] = []
    for seg in path.split("/"):
        if seg in ("", "."):
            continue
        if seg != "..":
            parts.append(seg)
        elif parts and parts[-1] != "..":
            parts.pop()
        elif not rooted:
            parts.append("..")
    body = "/".join(parts)
    if rooted:
        return "/" + body
    return body or "."


def read_ignore_file(text: str) -> list[str]:
    """Pattern lines of a ``.dockerignore``, read as BuildKit's ``ignorefile.ReadAll`` does.

    Drops a UTF-8 BOM, lines whose first character is ``#``, and blank lines; trims each
    line; cleans it as a path and drops one leading ``/``, keeping a leading ``!``.
    A bare ``!`` is kept: ``PatternMatcher`` rejects it.
    """
    out: list[str] = []
    for number, raw in enumerate(text.split("\n")):
        line = raw.removesuffix("\r")
        if number == 0:
            line = line.removeprefix("\ufeff")
        if line.startswith("#"):
            continue
        line = line.strip(_GO_SPACE)
        if not line:
            continue
        invert = line.startswith("!")
        if invert:
            line = line[1:].strip(_GO_SPACE)
        if line:
            line = clean_path(line)
            if len(line) > 1 and line.startswith("/"):
                line = line[1:]
        out.append("!" + line if invert else line)
    return out


class _BadPattern(Exception):
    """A pattern Go's filepath.Match rejects."""


@dataclass(frozen=True)
class _Tok:
    """One pattern token. ``op``: lit (char c), star (``[^/]*``), one (``[^/]``),
    cls (class), dirs (``(.*/)?``), rest (``.*``)."""

    op: str
    c: str = ""
    negated: bool = False
    ranges: tuple[tuple[str, str], ...] = ()
    any_nl: bool = False  # for dirs/rest: "." also matches a newline


def _get_esc(p: str, i: int) -> tuple[str, int]:
    """One class character at ``p[i]`` (maybe ``\\``-escaped), as Go's getEsc checks it."""
    if i >= len(p) or p[i] in "-]":
        raise _BadPattern
    if p[i] == "\\":
        i += 1
        if i >= len(p):
            raise _BadPattern
    if i + 1 >= len(p):  # the class is never closed
        raise _BadPattern
    return p[i], i + 1


def _parse_class(p: str, i: int) -> tuple[_Tok, int]:
    """The class whose ``[`` precedes ``p[i]``; returns it and the index after ``]``."""
    negated = i < len(p) and p[i] == "^"
    if negated:
        i += 1
    ranges: list[tuple[str, str]] = []
    while True:
        if i < len(p) and p[i] == "]" and ranges:
            return _Tok("cls", negated=negated, ranges=tuple(ranges)), i + 1
        lo, i = _get_esc(p, i)
        hi = lo
        if p[i] == "-":
            hi, i = _get_esc(p, i + 1)
        ranges.append((lo, hi))


def _tokenize(p: str, *, double_star: bool) -> tuple[list[_Tok], str]:
    """Tokens of ``p`` and upstream's match kind: exact, prefix, suffix or regexp.

    Raises _BadPattern where Go's filepath.Match reports ErrBadPattern.
    """
    toks: list[_Tok] = []
    kind = "exact"
    i = 0
    first = True
    while i < len(p):
        ch = p[i]
        if ch == "*" and double_star and p.startswith("**", i):
            tok, kind, i = _double_star(p, i, kind, first=first)
            if tok is not None:
                toks.append(tok)
        elif ch in "*?":
            toks.append(_Tok("star" if ch == "*" else "one"))
            kind, i = "regexp", i + 1
        elif ch == "\\":
            if i + 1 >= len(p):
                raise _BadPattern
            toks.append(_Tok("lit", p[i + 1]))
            kind, i = "regexp", i + 2
        elif ch == "[":
            tok, i = _parse_class(p, i + 1)
            toks.append(tok)
            kind = "regexp"
        else:
            # Upstream passes a lone "]" to the regexp engine, which makes it "regexp".
            kind = "regexp" if ch == "]" else kind
            toks.append(_Tok("lit", ch))
            i += 1
        first = False
    return toks, kind


def _double_star(p: str, i: int, kind: str, *, first: bool) -> tuple[_Tok | None, str, int]:
    """The ``**`` at ``p[i]``: its token (None when it ends a pattern that is a plain
    prefix), the match kind so far, and the index after it (and after a ``/``)."""
    i += 2
    if p.startswith("/", i):  # "**/" is "**"
        i += 1
    tok: _Tok | None = None
    if i < len(p):
        tok, kind = _Tok("dirs"), "regexp"
    elif kind == "exact":
        kind = "prefix"
    else:
        tok, kind = _Tok("rest"), "regexp"
    return tok, ("suffix" if first else kind), i


def _class_regex(tok: _Tok, *, strict: bool) -> str:
    """Python regex for a class; a reversed range (z-a) is an error when strict, else empty."""
    items: list[str] = []
    for lo, hi in tok.ranges:
        if lo > hi:
            if strict:
                raise _BadPattern
            continue
        items.append(re.escape(lo) if lo == hi else f"{re.escape(lo)}-{re.escape(hi)}")
    if not items:
        return "(?s:.)" if tok.negated else "(?!)"
    return "[" + ("^" if tok.negated else "") + "".join(items) + "]"


def _regex(toks: Sequence[_Tok], *, strict: bool) -> str:
    parts: list[str] = []
    for tok in toks:
        if tok.op == "lit":
            parts.append(re.escape(tok.c))
        elif tok.op == "cls":
            parts.append(_class_regex(tok, strict=strict))
        elif tok.op in ("star", "one"):
            parts.append("[^/]*" if tok.op == "star" else "[^/]")
        else:
            part = "(?:.*/)?" if tok.op == "dirs" else ".*"
            parts.append(f"(?s:{part})" if tok.any_nl else part)
    return "".join(parts)


def _pred(tok: _Tok) -> Callable[[str], bool]:
    if tok.op == "lit":
        return lambda ch: ch == tok.c
    if tok.op in ("star", "one"):
        return lambda ch: ch != "/"
    if tok.op == "cls":
        return lambda ch: any(lo <= ch <= hi for lo, hi in tok.ranges) != tok.negated
    return lambda ch: tok.any_nl or ch != "\n"


class _Nfa:
    """A Thompson NFA over the tokens: can the pattern still match below a directory?"""

    def __init__(self, toks: Sequence[_Tok]) -> None:
        # Node: (predicate of its char edge or None, target of that edge, epsilon targets).
        self._nodes: list[tuple[Callable[[str], bool] | None, int, tuple[int, ...]]] = []
        for tok in toks:
            s = len(self._nodes)
            if tok.op in ("lit", "one", "cls"):
                self._nodes.append((_pred(tok), s + 1, ()))
            elif tok.op in ("star", "rest"):
                self._nodes.append((_pred(tok), s, (s + 1,)))
            else:  # dirs, (X*/)?: skip it, or X* then "/"
                self._nodes.append((None, -1, (s + 1, s + 3)))
                self._nodes.append((_pred(tok), s + 1, (s + 2,)))
                self._nodes.append((lambda ch: ch == "/", s + 3, ()))

    def _step(self, states: set[int], ch: str | None) -> set[int]:
        """States after reading ``ch`` (None: just the epsilon closure of ``states``)."""
        todo = list(states)
        if ch is not None:
            todo = [n[1] for n in map(self._node, states) if n[0] is not None and n[0](ch)]
        out = set(todo)
        while todo:
            for t in self._node(todo.pop())[2]:
                if t not in out:
                    out.add(t)
                    todo.append(t)
        return out

    def _node(self, s: int) -> tuple[Callable[[str], bool] | None, int, tuple[int, ...]]:
        return self._nodes[s] if s < len(self._nodes) else (None, -1, ())  # s: accepting

    def could_continue(self, prefix: str) -> bool:
        """False only when no string ``prefix + s`` with non-empty ``s`` can match."""
        states = self._step({0}, None)
        for ch in prefix:
            states = self._step(states, ch)
        return any(self._node(s)[0] is not None for s in states)


def _tokens_for(kind: str, text: str, toks: list[_Tok]) -> list[_Tok]:
    """Tokens doing upstream's exact/prefix/suffix string tests (those match any character)."""
    if kind == "prefix":  # HasPrefix(path, text[:-2])
        return [*(_Tok("lit", ch) for ch in text[:-2]), _Tok("rest", any_nl=True)]
    if kind == "suffix":  # HasSuffix(path, text[2:]), and "**/foo" also matches "foo"
        head = "dirs" if text.startswith("**/") else "rest"
        return [_Tok(head, any_nl=True), *(_Tok("lit", ch) for ch in text[2:].lstrip("/")[:])]
    return toks


@dataclass(frozen=True, eq=False)
class _Pattern:
    """One cleaned pattern (``text``, without its ``!``)."""

    text: str
    exception: bool
    regex: re.Pattern[str] | None
    nfa: _Nfa | None
    error: str | None  # upstream accepts the pattern but fails every match with it

    def match(self, path: str) -> bool:
        if self.regex is None:
            raise BuildError(self.error or "bad pattern", hint=_SYNTAX_HINT)
        return self.regex.fullmatch(path) is not None


def _compile(raw: str) -> _Pattern:
    """Build one pattern as upstream's ``New`` does: trim, Clean, split off ``!``, check syntax."""
    text = clean_path(raw.strip(_GO_SPACE))
    exception = text.startswith("!")
    if exception:
        if text == "!":
            raise BuildError(
                'illegal exclusion pattern: "!"',
                hint="a '!' line needs a pattern after it: '!keep.txt' re-includes keep.txt",
            )
        text = text[1:]
    try:
        toks, kind = _tokenize(text, double_star=True)
    except _BadPattern:
        raise BuildError(f"syntax error in pattern {raw.strip()!r}", hint=_SYNTAX_HINT) from None
    toks = _tokens_for(kind, text, toks)
    try:
        regex = re.compile(_regex(toks, strict=True))
    except _BadPattern:  # Go's regexp rejects it, so upstream fails when matching
        error = f"bad pattern {raw.strip()!r}: a character range runs backwards (like z-a)"
        return _Pattern(text, exception, None, None, error)
    return _Pattern(text, exception, regex, _Nfa(toks), None)


def _ancestors(path: str) -> list[str]:
    """Parent directories of ``path``, outermost first, split as Go's ``filepath.Dir`` does."""
    parent = clean_path(path[: path.rfind("/") + 1])
    if parent == ".":
        return []
    parts = parent.split("/")
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


@dataclass(frozen=True)
class MatchState:
    """Result of matching one path; ``hits[i]``: pattern i matches the path or a parent."""

    excluded: bool
    hits: tuple[bool, ...]


class PatternMatcher:
    """Ordered .dockerignore patterns (moby/patternmatcher ``MatchesOrParentMatches``).

    Construction raises BuildError for a bare ``!`` or a pattern Go's filepath.Match
    rejects. A pattern that only Go's regexp engine rejects (a backwards range such as
    ``[z-a]``) fails when matching, as upstream does; ``validate()`` surfaces it up front.
    """

    def __init__(self, patterns: Sequence[str]) -> None:
        self._patterns = tuple(_compile(p) for p in patterns if p.strip(_GO_SPACE))

    @property
    def patterns(self) -> tuple[str, ...]:
        """The cleaned patterns, exceptions with their leading ``!``."""
        return tuple(("!" if p.exception else "") + p.text for p in self._patterns)

    @property
    def has_exclusions(self) -> bool:
        """True when some pattern is a ``!`` exception."""
        return any(p.exception for p in self._patterns)

    def validate(self) -> None:
        """Raise the BuildError that matching would raise for some path, if any would."""
        for p in self._patterns:
            if p.error is not None:
                raise BuildError(p.error, hint=_SYNTAX_HINT)

    def matches(self, rel_path: str) -> bool:
        """True when ``rel_path`` (posix, relative to the context root) is excluded.

        A pattern hits when it matches the path or one of its parents; the path is
        excluded when the last pattern that hits is not an exception. The root (``""``
        or ``"."``) is never excluded. Raises BuildError for a pattern that cannot match.
        """
        if rel_path in ("", "."):
            return False
        ancestors = _ancestors(rel_path)
        matched = False
        for p in self._patterns:
            # Upstream skips patterns that cannot change the answer; that decides which
            # broken patterns get evaluated (and so raise), so keep the same order.
            if p.exception != matched:
                continue
            if p.match(rel_path) or any(p.match(a) for a in ancestors):
                matched = not p.exception
        return matched

    def match_with_parent(self, rel_path: str, parent: MatchState | None) -> MatchState:
        """Match ``rel_path`` reusing its parent directory's result (None: compute parents).

        Same answer as ``matches``, with one pattern test per pattern instead of one per
        pattern and parent. Call ``validate()`` first: every pattern is evaluated here.
        """
        if parent is None:
            ancestors = _ancestors(rel_path)
            hits = tuple(
                p.match(rel_path) or any(p.match(a) for a in ancestors) for p in self._patterns
            )
        else:
            pairs = zip(parent.hits, self._patterns, strict=True)
            hits = tuple(hit or p.match(rel_path) for hit, p in pairs)
        return MatchState(self._decide(hits), hits)

    def _decide(self, hits: tuple[bool, ...]) -> bool:
        # Skipped patterns never change the state, so the last hit alone decides.
        for p, hit in zip(reversed(self._patterns), reversed(hits), strict=True):
            if hit:
                return not p.exception
        return False

    def excludes_dir_entirely(self, rel_dir: str) -> bool:
        """True when ``rel_dir`` and everything below it are excluded, so it need not be read.

        Conservative: False whenever an exception pattern after the last pattern that
        excludes the directory could match some path below it.
        """
        if rel_dir in ("", "."):
            return False
        state = self.match_with_parent(rel_dir, None)
        if not state.excluded:
            return False
        last = max(i for i, hit in enumerate(state.hits) if hit)
        below = rel_dir + "/"
        return not any(
            p.exception and p.nfa is not None and p.nfa.could_continue(below)
            for p in self._patterns[last + 1 :]
        )


def has_wildcards(text: str) -> bool:
    """True when ``text`` has an unescaped ``*``, ``?`` or ``[`` (fsutil's containsWildcards)."""
    i = 0
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] in "*?[":
            return True
        i += 1
    return False


class Glob:
    """One path segment pattern, matched with Go's ``filepath.Match`` (``**`` is ``*``).

    Raises BuildError on a malformed pattern; a backwards range matches nothing, as in Go.
    """

    def __init__(self, pattern: str) -> None:
        try:
            toks, _ = _tokenize(pattern, double_star=False)
        except _BadPattern:
            raise BuildError(f"syntax error in pattern {pattern!r}", hint=_SYNTAX_HINT) from None
        self.pattern = pattern
        self._re = re.compile(_regex(toks, strict=False), re.DOTALL)

    def matches(self, name: str) -> bool:
        """True when the whole of ``name`` matches."""
        return self._re.fullmatch(name) is not None
