"""Shell-word processing with BuildKit's semantics: quote removal and ``$VAR`` expansion.

This mirrors the lexer in moby/buildkit ``frontend/dockerfile/shell`` (``lex.go``), which
the Dockerfile frontend uses for every word it expands. It never runs a shell.

* Outside quotes the escape character (``\\`` or the Dockerfile's ``# escape=`` token)
  makes the next character literal; a trailing lone escape is dropped.
* ``'...'`` is literal; ``"..."`` expands ``$`` and lets the escape character escape only
  ``"``, ``$`` and itself.
* ``$NAME``, ``${NAME}`` and the modifiers ``:-  -  :+  +  :?  ?  #  ##  %  %%  /  //``;
  ``${NAME:?msg}`` on an unset (or, with ``:``, empty) variable is an error.
* Positional and special parameters (``$1``, ``$@``, ``$$`` ...) are never set.

Every failure raises :class:`~builder.errors.DockerfileError` without a location: the
caller knows which instruction the word came from and fills it in with
``BuildError.located()``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from builder.errors import DockerfileError
from builder.frontend.expand_patterns import (
    PatternError,
    go_replace,
    pattern_regex,
    trim_prefix,
    trim_suffix,
)

# Go's unicode.IsSpace: the ASCII blanks plus NEL, NBSP and the Unicode White_Space set.
# Python's str.isspace() also accepts U+001C..U+001F, which Go does not.
GO_SPACE = frozenset(
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
_EOF = ""
_SPECIAL_PARAMS = frozenset("@*#?-$!0")
# What lex.go's heredoc marker handling swallows after "<<" (spaces, tabs, CR, LF).
_MARKER_BLANKS = frozenset(" \t\r\n")


def go_trim_space(text: str) -> str:
    """Go's ``strings.TrimSpace``: strip Unicode white space at both ends."""
    start, end = 0, len(text)
    while start < end and text[start] in GO_SPACE:
        start += 1
    while end > start and text[end - 1] in GO_SPACE:
        end -= 1
    return text[start:end]


def go_trim_left_space(text: str) -> str:
    """Go's ``strings.TrimLeftFunc(s, unicode.IsSpace)``."""
    start = 0
    while start < len(text) and text[start] in GO_SPACE:
        start += 1
    return text[start:]


@dataclass(frozen=True)
class Expansion:
    """The result of processing one word.

    ``text`` is the single-word result (inner blanks kept, ProcessWord); ``words`` the same
    input split on unquoted blanks (ProcessWords). ``matched``/``unmatched`` name the
    variables that were looked up and found / not found: the planner uses them to know
    which ARG values an instruction actually depends on.
    """

    text: str
    words: tuple[str, ...]
    matched: frozenset[str]
    unmatched: frozenset[str]


@dataclass(frozen=True)
class ShellLexer:
    """Lexer options, as in BuildKit's ``shell.Lex``.

    ``raw_quotes`` keeps quote characters in the output, ``raw_escapes`` keeps escape
    characters, ``skip_unset`` leaves references to unset variables as written and
    ``skip_quotes`` treats quotes as ordinary characters. The parser uses these to find
    heredoc markers; expansion for a build uses the defaults.
    """

    escape: str = "\\"
    raw_quotes: bool = False
    raw_escapes: bool = False
    skip_unset: bool = False
    skip_quotes: bool = False

    def process(self, word: str, env: Mapping[str, str]) -> Expansion:
        """Expand ``word`` against ``env``; raises DockerfileError (no location) on bad input."""
        state = _Lexer(self, word, env)
        try:
            text, words = state.process_stop_on(_EOF, self.raw_escapes)
        except _LexError as err:
            raise DockerfileError(
                f"failed to process {_go_quote_simple(word)}: {err}", hint=err.hint
            ) from None
        except PatternError as err:
            raise DockerfileError(
                f"failed to process {_go_quote_simple(word)}: {err}",
                hint="only \\*, \\? and \\\\ may be escaped in a ${...} pattern",
            ) from None
        except RecursionError:
            # Go's growable stacks have no such limit; no real Dockerfile nests this deep.
            raise DockerfileError(
                f"failed to process {_go_quote_simple(word)}: ${{...}} nested too deeply",
                hint=_SYNTAX_HINT,
            ) from None
        return Expansion(text, tuple(words), frozenset(state.matched), frozenset(state.unmatched))


def expand_word(word: str, env: Mapping[str, str], *, escape: str = "\\") -> str:
    """One word with quotes removed and variables expanded (BuildKit ProcessWord)."""
    return ShellLexer(escape=escape).process(word, env).text


def expand_words(word: str, env: Mapping[str, str], *, escape: str = "\\") -> list[str]:
    """Expand, then split on unquoted, unescaped blanks (BuildKit ProcessWords).

    Blanks that come from unquoted variable values split too; an empty quoted string on
    its own yields no word, as upstream.
    """
    return list(ShellLexer(escape=escape).process(word, env).words)


def expand_word_tracked(word: str, env: Mapping[str, str], *, escape: str = "\\") -> Expansion:
    """Like :func:`expand_word` but also reports which variables were looked up."""
    return ShellLexer(escape=escape).process(word, env)


def env_from_list(entries: Iterable[str]) -> dict[str, str]:
    """``NAME=value`` strings as a mapping: no ``=`` means an empty value; the last wins."""
    env: dict[str, str] = {}
    for entry in entries:
        name, _, value = entry.partition("=")
        env[name] = value
    return env


class _LexError(Exception):
    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


_SYNTAX_HINT = "check the quoting and the ${...} syntax in this word"


def _go_quote_simple(text: str) -> str:
    # Messages only: close enough to Go's %q for the user to see the word.
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class _Words:
    """Accumulates ProcessWords output (lex.go wordsStruct)."""

    def __init__(self) -> None:
        self.word = ""
        self.words: list[str] = []
        self.in_word = False

    def add_char(self, ch: str) -> None:
        if ch in GO_SPACE:
            if self.in_word and self.word:
                self.words.append(self.word)
                self.word = ""
                self.in_word = False
        else:
            self.add_raw(ch)

    def add_raw(self, text: str) -> None:
        self.word += text
        self.in_word = True

    def add_string(self, text: str) -> None:
        for ch in text:
            self.add_char(ch)

    def finish(self) -> list[str]:
        if self.word:
            self.words.append(self.word)
            self.word = ""
            self.in_word = False
        return self.words


class _Lexer:
    """One pass over one word; holds the cursor, so it lives only for one call."""

    def __init__(self, opts: ShellLexer, text: str, env: Mapping[str, str]) -> None:
        self.opts = opts
        self.text = text
        self.pos = 0
        self.env = env
        self.raw_escapes = opts.raw_escapes
        self.matched: set[str] = set()
        self.unmatched: set[str] = set()

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else _EOF

    def next(self) -> str:
        ch = self.peek()
        if ch:
            self.pos += 1
        return ch

    def lookup(self, name: str) -> str | None:
        if name in self.env:
            self.matched.add(name)
            return self.env[name]
        self.unmatched.add(name)
        return None

    def _handler(self, ch: str) -> Callable[[], str] | None:
        if ch == "$":
            return self.dollar
        if ch == "<":
            return self.possible_heredoc
        if self.opts.skip_quotes:
            return None
        if ch == "'":
            return self.single_quote
        if ch == '"':
            return self.double_quote
        return None

    def process_stop_on(self, stop: str, raw_escapes: bool) -> tuple[str, list[str]]:
        """Read up to ``stop`` (consumed) or the end; an unmet ``stop`` is an error."""
        saved, self.raw_escapes = self.raw_escapes, raw_escapes
        try:
            return self._stop_on(stop)
        finally:
            self.raw_escapes = saved

    def _stop_on(self, stop: str) -> tuple[str, list[str]]:
        out: list[str] = []
        words = _Words()
        while (ch := self.peek()) != _EOF:
            if stop and ch == stop:
                self.next()
                return "".join(out), words.finish()
            handler = self._handler(ch)
            if handler is not None:
                piece = handler()
                out.append(piece)
                # Only text from a variable splits into words; quoted text never does.
                if ch == "$":
                    words.add_string(piece)
                else:
                    words.add_raw(piece)
                continue
            ch = self.next()
            if ch == self.opts.escape:
                if self.raw_escapes:
                    words.add_raw(ch)
                    out.append(ch)
                ch = self.next()
                if ch == _EOF:
                    break
                words.add_raw(ch)
            else:
                words.add_char(ch)
            out.append(ch)
        if stop:
            raise _LexError(
                f"unexpected end of statement while looking for matching {stop}", _SYNTAX_HINT
            )
        return "".join(out), words.finish()

    def _open_quote(self) -> list[str]:
        quote = self.next()
        return [quote] if self.opts.raw_quotes else []

    def single_quote(self) -> str:
        out = self._open_quote()
        while True:
            ch = self.next()
            if ch == _EOF:
                raise _LexError(
                    "unexpected end of statement while looking for matching single-quote",
                    "close the ' quote",
                )
            if ch == "'":
                if self.opts.raw_quotes:
                    out.append(ch)
                return "".join(out)
            out.append(ch)

    def double_quote(self) -> str:
        out = self._open_quote()
        while True:
            ch = self.peek()
            if ch == _EOF:
                raise _LexError(
                    "unexpected end of statement while looking for matching double-quote",
                    'close the " quote',
                )
            if ch == '"':
                self.next()
                if self.opts.raw_quotes:
                    out.append(ch)
                return "".join(out)
            if ch == "$":
                out.append(self.dollar())
                continue
            ch = self.next()
            if ch == self.opts.escape:
                if self.raw_escapes:
                    out.append(ch)
                following = self.peek()
                if following == _EOF:
                    continue
                if following in ('"', "$", self.opts.escape):
                    ch = self.next()
            out.append(ch)

    def possible_heredoc(self) -> str:
        # "<<", an optional "-" and the blanks after it stay one word, so that
        # `RUN <<- EOF` still yields the heredoc word `<<- EOF`.
        self.next()
        if self.peek() != "<":
            return "<"
        self.next()
        out = "<<"
        if self.peek() == "-":
            out += self.next()
        while self.peek() and self.peek() in _MARKER_BLANKS:
            out += self.next()
        return out

    def name(self) -> str:
        """A variable name; a leading digit run or one special character is a name too."""
        first = self.peek()
        if first and first.isdecimal():
            start = self.pos
            while self.peek() and self.peek().isdecimal():
                self.next()
            return self.text[start : self.pos]
        if first in _SPECIAL_PARAMS and first:
            return self.next()
        start = self.pos
        while (ch := self.peek()) and (ch.isalpha() or ch.isdecimal() or ch == "_"):
            self.next()
        return self.text[start : self.pos]

    def dollar(self) -> str:
        self.next()
        if self.peek() != "{":
            name = self.name()
            if not name:
                return "$"
            value = self.lookup(name)
            if value is None:
                return "$" + name if self.opts.skip_unset else ""
            return value
        self.next()
        if self.peek() == _EOF:
            raise _LexError("syntax error: missing '}'", _SYNTAX_HINT)
        if self.peek() in "{}:":
            raise _LexError("syntax error: bad substitution", _SYNTAX_HINT)
        name = self.name()
        op = self.next()
        if op == "}":
            value = self.lookup(name)
            if value is None:
                return "${" + name + "}" if self.opts.skip_unset else ""
            return value
        if op == "/":
            return self._replace(name)
        if op == _EOF:
            raise _LexError("syntax error: missing '}'", _SYNTAX_HINT)
        return self._modifier(name, op)

    def _modifier(self, name: str, op: str) -> str:
        null_is_unset = op == ":"
        if null_is_unset:
            op += self.next()
        kind = op[-1] if op else ""
        if not kind or kind not in "+-?#%":
            raise _LexError(f"unsupported modifier ({op}) in substitution", _SYNTAX_HINT)
        if null_is_unset and kind in "#%":
            raise _LexError(f"unsupported modifier ({op}) in substitution", _SYNTAX_HINT)
        word = self._braced_word(raw_escapes=kind in "#%")
        value = self.lookup(name)
        if value is None and self.opts.skip_unset:
            return "${" + name + op + word + "}"
        return _apply_modifier(name, kind, null_is_unset, value, word)

    def _braced_word(self, *, raw_escapes: bool) -> str:
        try:
            word, _ = self.process_stop_on("}", raw_escapes)
        except _LexError:
            if self.peek() == _EOF:
                raise _LexError("syntax error: missing '}'", _SYNTAX_HINT) from None
            raise
        return word

    def _replace(self, name: str) -> str:
        replace_all = self.peek() == "/"
        if replace_all:
            self.next()
        try:
            pattern, _ = self.process_stop_on("/", True)
        except _LexError:
            if self.peek() == _EOF:
                raise _LexError("syntax error: missing '/' in ${}", _SYNTAX_HINT) from None
            raise
        replacement = self._braced_word(raw_escapes=True)
        value = self.lookup(name)
        if value is None and self.opts.skip_unset:
            return "${" + name + "/" + pattern + "/" + replacement + "}"
        regex = pattern_regex(pattern, greedy=True, anchored=False)
        return go_replace(regex, value or "", replacement, replace_all)


def _apply_modifier(name: str, kind: str, null_is_unset: bool, value: str | None, word: str) -> str:
    missing = value is None or (null_is_unset and value == "")
    if kind == "-":
        return word if missing else (value or "")
    if kind == "+":
        return "" if missing else word
    if kind == "?":
        if value is None:
            raise _LexError(f"{name}: {word or 'is not allowed to be unset'}", _required_hint(name))
        if missing:
            raise _LexError(f"{name}: {word or 'is not allowed to be empty'}", _required_hint(name))
        return value
    greedy = word.startswith(kind)
    if greedy:
        word = word[1:]
    if kind == "%":
        return trim_suffix(word, value or "", greedy)
    return trim_prefix(word, value or "", greedy)


def _required_hint(name: str) -> str:
    return f"give {name} a value: --build-arg {name}=..., or an ARG/ENV default before this line"
