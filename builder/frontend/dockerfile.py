"""Parse a Dockerfile into stages of typed instructions, accepting what BuildKit accepts.

Reading follows BuildKit's ``parser.Parse`` (moby/buildkit ``frontend/dockerfile/parser``)
line for line, because its quirks decide what a Dockerfile means:

* Parser directives (``# syntax=``, ``# escape=``, ``# check=``) count only at the very
  top, before any other comment, blank line or instruction; each may appear once.
* A line continues when the escape character is its last non-blank character and is not
  itself escaped (``a\\\\`` does not continue). The next line is appended with no
  separator and keeps its leading blanks. Comment lines and empty lines inside a
  continued instruction are skipped (the latter with a warning).
* Heredoc bodies (RUN/COPY/ADD, shell form) are read after the instruction's last line,
  in the order their markers appear; they are never treated as comments or directives.
* A line of more than 65535 bytes is an error, as is a file with no instruction.

Each logical line becomes a :class:`~builder.frontend.nodes.Node` (keyword, flags, raw
arguments), then a typed instruction (:mod:`builder.frontend.convert`), then the
instructions are grouped into stages. Every refusal is a DockerfileError with file and line.

dockerfile-parse (the PyPI library) is not used for reading lines: its splitter ends an
instruction at an empty continuation line, continues after ``\\\\``, drops instructions
without arguments (a bare ``HEALTHCHECK``) and turns heredoc bodies into instructions, so
it disagrees with BuildKit on 7 of the 33 upstream parser cases.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace

from builder.errors import DockerfileError
from builder.frontend.convert import instruction_from_node
from builder.frontend.expand import go_trim_left_space
from builder.frontend.instructions import Arg, Dockerfile, From, Instruction, ParseWarning, Stage
from builder.frontend.nodes import Node, heredocs_in_line, node_from_line

MAX_LINE_BYTES = 65535
KNOWN_DIRECTIVES = frozenset({"syntax", "escape", "check"})
_DIRECTIVE = re.compile(r"([a-zA-Z][a-zA-Z0-9]*)[\t\n\f\r ]*=[\t\n\f\r ]*(.+?)[\t\n\f\r ]*")
_EMPTY_CONTINUATION_DETAIL = "Empty continuation lines will become errors in a future release"


@dataclass(frozen=True)
class NodeTree:
    """A Dockerfile as nodes: what BuildKit's parser hands to its instruction layer."""

    file: str
    children: tuple[Node, ...]
    directives: tuple[tuple[str, str], ...]
    escape: str
    warnings: tuple[ParseWarning, ...]


@dataclass(frozen=True)
class DirectiveMatch:
    """A directive found by :func:`detect_syntax` / :func:`find_directive`.

    ``value`` is the text up to the first space (the frontend reference for ``syntax``),
    ``cmdline`` the whole value, ``line`` the 1-based line (0 for the JSON form without
    a shebang line, as upstream reports it).
    """

    value: str
    cmdline: str
    line: int


class _DirectiveParser:
    """Recognises directives at the top of a file until the first line that is not one."""

    def __init__(self, comment: str = "#", line: int = 0) -> None:
        self.comment = comment
        self.line = line
        self.done = False
        self.seen: set[str] = set()

    def parse_line(self, text: str) -> tuple[str, str, int] | None:
        self.line += 1
        if self.done:
            return None
        if not text.startswith(self.comment):
            self.done = True
            return None
        match = _DIRECTIVE.fullmatch(go_trim_left_space(text[len(self.comment) :]))
        key = match.group(1).lower() if match else ""
        if match is None or key not in KNOWN_DIRECTIVES:
            self.done = True
            return None
        if key in self.seen:
            raise DockerfileError(
                f"only one {key} parser directive can be used",
                line=self.line,
                hint=f"remove the second '# {key}=' line",
            )
        self.seen.add(key)
        return key, match.group(2), self.line


class _Scanner:
    """The per-parse state: lines read so far, escape character, directives found."""

    def __init__(self, text: str, file: str) -> None:
        self.file = file
        self.lines = _lines_keeping_ends(text)
        self.count = 0
        self.directive_parser = _DirectiveParser()
        self.directives: list[tuple[str, str]] = []
        self.escape = "\\"
        self.continuation = _continuation_regex(self.escape)

    def next_line(self) -> str | None:
        if self.count >= len(self.lines):
            return None
        raw = self.lines[self.count]
        self.count += 1
        if self.count == 1:
            raw = raw.removeprefix("\ufeff")
        body = raw.removesuffix("\n")
        if len(body) * 4 > MAX_LINE_BYTES and len(body.encode("utf-8", "replace")) > MAX_LINE_BYTES:
            raise DockerfileError(
                f"dockerfile line greater than max allowed size of {MAX_LINE_BYTES}",
                file=self.file,
                line=self.count,
                hint="split the line with line continuations, or move data into a file",
            )
        return raw

    def process_line(self, raw: str, *, first: bool) -> str:
        """The line without its ending (and leading blanks when it starts an instruction);
        a comment becomes empty. Every such line is offered to the directive parser."""
        token = raw.rstrip("\r\n")
        if first:
            token = go_trim_left_space(token)
        try:
            found = self.directive_parser.parse_line(token)
        except DockerfileError as err:
            raise err.located(self.file, self.count) from None
        if found is not None:
            self._directive(found[0], found[1])
        return "" if _is_comment(token) else token

    def _directive(self, key: str, value: str) -> None:
        if key == "escape":
            if value not in ("`", "\\"):
                raise DockerfileError(
                    f"invalid escape token '{value}' does not match ` or \\",
                    file=self.file,
                    line=self.count,
                    hint="use '# escape=\\' (the default) or '# escape=`'",
                )
            self.escape = value
            self.continuation = _continuation_regex(value)
        self.directives.append((key, value))

    def trim_continuation(self, token: str) -> tuple[str, bool]:
        """Strip a continuation escape; the flag says whether the instruction ends here."""
        match = self.continuation.search(token)
        if match is None:
            return token, True
        return token[: match.start()] + (match.group(1) or ""), False


def _continuation_regex(escape: str) -> re.Pattern[str]:
    e = re.escape(escape)
    return re.compile(rf"([^{e}]){e}[ \t]*\Z|^{e}[ \t]*\Z")


def _lines_keeping_ends(text: str) -> list[str]:
    # Only "\n" ends a line (a lone "\r" does not), as with Go's bufio line scanning.
    lines = [part + "\n" for part in text.split("\n")]
    lines[-1] = lines[-1][:-1]
    return lines if lines[-1] else lines[:-1]


def _is_comment(text: str) -> bool:
    return go_trim_left_space(text).startswith("#")


def parse_nodes(text: str, file: str = "Dockerfile") -> NodeTree:
    """Parse Dockerfile text into nodes; raises DockerfileError carrying file and line."""
    scanner = _Scanner(text, file)
    children: list[Node] = []
    warnings: list[ParseWarning] = []
    while (raw := scanner.next_line()) is not None:
        token, done = scanner.trim_continuation(scanner.process_line(raw, first=True))
        if done and not token:
            continue
        start = scanner.count
        line, had_empty = _join_continuation(scanner, token, done)
        if had_empty:
            message = f"Empty continuation line found in: {line}"
            warnings.append(ParseWarning(message, _EMPTY_CONTINUATION_DETAIL, scanner.count))
        try:
            node = node_from_line(line, scanner.escape)
            if node.can_contain_heredoc() and "<<" in line:
                node = _read_heredocs(scanner, node, line, start)
        except DockerfileError as err:
            raise err.located(file, start) from None
        except RecursionError:
            # Only ONBUILD nests; BuildKit refuses ONBUILD ONBUILD anyway.
            raise DockerfileError(
                "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed", file=file, line=start
            ) from None
        children.append(replace(node, start_line=start, end_line=scanner.count))
    if not children:
        raise DockerfileError(
            "file with no instructions",
            file=file,
            line=max(scanner.count, 1),
            hint="a Dockerfile needs at least a FROM instruction",
        )
    directives = tuple(scanner.directives)
    return NodeTree(file, tuple(children), directives, scanner.escape, tuple(warnings))


def _join_continuation(scanner: _Scanner, token: str, done: bool) -> tuple[str, bool]:
    parts = [token]
    had_empty = False
    while not done and (raw := scanner.next_line()) is not None:
        token = scanner.process_line(raw, first=False)
        if _is_comment(raw):
            continue
        if not go_trim_left_space(token):
            had_empty = True
            continue
        token, done = scanner.trim_continuation(token)
        parts.append(token)
    return "".join(parts), had_empty


def _read_heredocs(scanner: _Scanner, node: Node, line: str, start: int) -> Node:
    docs = []
    for doc in heredocs_in_line(line):
        body: list[str] = []
        while True:
            raw = scanner.next_line()
            if raw is None:
                raise DockerfileError(
                    "unterminated heredoc",
                    line=start,
                    hint=f"end the heredoc with a line holding only {doc.name}",
                )
            candidate = raw.rstrip("\r\n")
            if doc.chomp:
                candidate = candidate.lstrip("\t")
            if candidate == doc.name:
                break
            body.append(raw)
        docs.append(replace(doc, content="".join(body)))
    return replace(node, heredocs=tuple(docs))


def parse_directives(text: str) -> tuple[tuple[str, str], ...]:
    """The ``#`` directives at the top of ``text`` as (name, value), names lower-cased.

    Scanning stops at the first line that is not a known directive. Raises
    DockerfileError (with the line) for a repeated directive.
    """
    parser = _DirectiveParser()
    found: list[tuple[str, str]] = []
    for raw in text.removeprefix("\ufeff").split("\n"):
        directive = parser.parse_line(raw.removesuffix("\r"))
        if parser.done:
            break
        if directive is not None:
            found.append((directive[0], directive[1]))
    return tuple(found)


def detect_syntax(text: str) -> DirectiveMatch | None:
    """The ``syntax`` directive: ``# syntax=``, ``// syntax=`` or a JSON ``{"syntax": ...}``.

    A leading ``#!`` line and a BOM are skipped (BuildKit's DetectSyntax).
    """
    return _find_directive("syntax", text, any_format=True)


def find_directive(key: str, text: str) -> DirectiveMatch | None:
    """Directive ``key`` in its ``#`` form only (BuildKit's ParseDirective)."""
    return _find_directive(key, text, any_format=False)


def _find_directive(key: str, text: str, *, any_format: bool) -> DirectiveMatch | None:
    text = text.removeprefix("\ufeff")
    first, _, rest = text.partition("\n")
    line = 0
    if first.startswith("#!"):
        text, line = rest, 1
    for comment in ("#", "//") if any_format else ("#",):
        found = _scan_directives(key, text, _DirectiveParser(comment, line))
        if found is not None:
            return found
    if not any_format:
        return None
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):
        return None
    value = document.get(key) if isinstance(document, dict) else None
    return DirectiveMatch(value, value, line) if isinstance(value, str) else None


def _scan_directives(key: str, text: str, parser: _DirectiveParser) -> DirectiveMatch | None:
    for raw in text.split("\n"):
        if parser.done:
            break
        try:
            found = parser.parse_line(raw.removesuffix("\r"))
        except DockerfileError:
            break  # upstream keeps the directives found before a duplicate
        if found is not None and found[0] == key:
            return DirectiveMatch(found[1].split(" ", 1)[0], found[1], found[2])
    return None


def parse_dockerfile(text: str, file: str = "Dockerfile") -> Dockerfile:
    """Parse Dockerfile text; raises DockerfileError(file=..., line=...) for bad input.

    Words stay unexpanded (see :mod:`builder.frontend.instructions`). Stage names are lower-cased
    and must be unique; a Dockerfile needs at least one FROM, and only ARG may come
    before the first one.
    """
    tree = parse_nodes(text, file)
    global_args: list[Arg] = []
    stages: list[_StageBuilder] = []
    names: set[str] = set()  # stage names so far: one set lookup per FROM, not a scan
    for node in tree.children:
        try:
            instruction = instruction_from_node(node, file)
        except DockerfileError as err:
            raise err.located(file, node.start_line) from None
        _place(instruction, node, global_args, stages, names, file)
    if not stages:
        raise DockerfileError(
            "dockerfile contains no stages to build",
            file=file,
            line=tree.children[-1].start_line,
            hint="add a FROM instruction (FROM scratch for an empty base)",
        )
    return Dockerfile(
        file=file,
        escape=tree.escape,
        directives=tree.directives,
        global_args=tuple(global_args),
        stages=tuple(stage.build() for stage in stages),
        warnings=tree.warnings,
        lines=tuple(text.splitlines()),
    )


@dataclass
class _StageBuilder:
    index: int
    base: From
    instructions: list[Instruction]

    def build(self) -> Stage:
        return Stage(self.index, self.base.name, self.base, tuple(self.instructions))


def _place(
    instruction: Instruction,
    node: Node,
    global_args: list[Arg],
    stages: list[_StageBuilder],
    names: set[str],
    file: str,
) -> None:
    if isinstance(instruction, From):
        if instruction.name is not None and instruction.name in names:
            raise DockerfileError(
                f'duplicate stage name "{instruction.name}"',
                file=file,
                line=node.start_line,
                hint="give each stage a different name after AS",
            )
        stages.append(_StageBuilder(len(stages), instruction, []))
        if instruction.name is not None:
            names.add(instruction.name)
    elif stages:
        stages[-1].instructions.append(instruction)
    elif isinstance(instruction, Arg):
        global_args.append(instruction)
    else:
        raise DockerfileError(
            f"no build stage in current context: {node.keyword.upper()} before the first FROM",
            file=file,
            line=node.start_line,
            hint="only ARG may come before the first FROM; start the stage with FROM <image>",
        )
