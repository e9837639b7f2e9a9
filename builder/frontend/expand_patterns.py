"""The pattern operations of ``${VAR#p}``, ``${VAR%p}`` and ``${VAR/p/r}``, as BuildKit does them.

BuildKit turns a shell pattern (``*``, ``?`` and ``\\`` escapes; no bracket expressions)
into a regular expression and uses Go's regexp functions; this module reproduces the
results, including Go's replacement templates and its rule for empty matches.
"""

from __future__ import annotations

import re


class PatternError(ValueError):
    """A pattern that BuildKit refuses (a bad escape)."""


def pattern_regex(pattern: str, *, greedy: bool, anchored: bool) -> re.Pattern[str]:
    """A shell pattern (``*``, ``?``, ``\\`` escapes; no brackets) as a regular expression."""
    out = ["^"] if anchored else []
    star = ".*" if greedy else ".*?"
    i = 0
    while i < len(pattern):
        tok = pattern[i]
        i += 1
        if tok == "*":
            out.append(star)
        elif tok == "?":
            out.append(".")
        elif tok == "\\":
            following = pattern[i] if i < len(pattern) else ""
            if following in ("}", "/"):
                continue  # the escape only protected a ${} delimiter
            if following not in ("*", "?", "\\"):
                raise PatternError(
                    f"invalid pattern ({pattern}) in substitution: invalid escape '\\{following}'"
                )
            out.append("\\" + following)
            i += 1
        else:
            out.append(re.escape(tok))
    return re.compile("".join(out))


def trim_prefix(pattern: str, value: str, greedy: bool) -> str:
    match = pattern_regex(pattern, greedy=greedy, anchored=True).search(value)
    return value[match.end() :] if match else value


def _reverse_pattern(pattern: str) -> str:
    # Reverse, but keep each escape in front of the character it escapes.
    out = [""] * len(pattern)
    last = len(pattern) - 1
    i = 0
    while i <= last:
        if pattern[i] == "\\" and i != last:
            out[last - i - 1] = "\\"
            out[last - i] = pattern[i + 1]
            i += 2
        else:
            out[last - i] = pattern[i]
            i += 1
    return "".join(out)


def trim_suffix(pattern: str, value: str, greedy: bool) -> str:
    # A regex finds the leftmost match, not the shortest rightmost one: reverse both.
    return trim_prefix(_reverse_pattern(pattern), value[::-1], greedy)[::-1]


def go_replace(regex: re.Pattern[str], value: str, template: str, replace_all: bool) -> str:
    """Go's ``Regexp.ReplaceAllString`` (or one replacement), including its ``$`` templates.

    Go skips an empty match right after a previous match, where Python's ``re.sub`` does
    not, so ``${V//*/x}`` must be done by hand to give ``x`` and not ``xx``.
    """
    if not replace_all:
        match = regex.search(value)
        if match is None:
            return value
        return (
            value[: match.start()] + _go_template(template, match.group(0)) + value[match.end() :]
        )
    out: list[str] = []
    last_end = 0
    pos = 0
    while pos <= len(value):
        match = regex.search(value, pos)
        if match is None:
            break
        out.append(value[last_end : match.start()])
        if match.end() > last_end or match.start() == 0:
            out.append(_go_template(template, match.group(0)))
        last_end = match.end()
        pos = pos + 1 if pos + 1 > match.end() else match.end()
    out.append(value[last_end:])
    return "".join(out)


_TEMPLATE_NAME = re.compile(r"\{(\w+)\}|(\w+)")


def _go_template(template: str, whole: str) -> str:
    # Our regexes have no groups: $0 is the match, any other $name is empty, $$ is $.
    out: list[str] = []
    i = 0
    while (j := template.find("$", i)) >= 0:
        out.append(template[i:j])
        if template.startswith("$$", j):
            out.append("$")
            i = j + 2
            continue
        found = _TEMPLATE_NAME.match(template, j + 1)
        if found is None:
            out.append("$")
            i = j + 1
            continue
        name = found.group(1) or found.group(2)
        out.append(whole if name == "0" else "")
        i = found.end()
    out.append(template[i:])
    return "".join(out)
