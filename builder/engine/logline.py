"""What the server's one log line per request shows of the request's path."""

from __future__ import annotations

from urllib.parse import unquote_plus, urlsplit, urlunsplit

# Query parameters whose values stay out of the log: build args may carry tokens (docker
# warns against it, but it is common), and the log may be read by more people than the
# socket's users. The parameter's name is kept, so the line still says it was given.
HIDDEN = frozenset({"buildargs"})


def shown_path(path: str) -> str:
    """``path`` as the log shows it: the values of ``HIDDEN`` query parameters replaced
    by ``...``; everything else as the client sent it (its own encoding)."""
    url = urlsplit(path)
    parts = url.query.split("&") if url.query else []
    shown = [_shown(part) for part in parts]
    if shown == parts:
        return path
    return urlunsplit(url._replace(query="&".join(shown)))


def _shown(part: str) -> str:
    name, eq, _value = part.partition("=")
    return f"{name}{eq}..." if unquote_plus(name) in HIDDEN and eq else part
