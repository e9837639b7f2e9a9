"""The server's log line leaves build args' values out and shows every other path as is."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, quote, urlsplit

from builder.engine.logline import shown_path


def test_build_args_values_are_left_out_of_the_log_line() -> None:
    args = quote(json.dumps({"NPM_TOKEN": "s3cret-value", "V": "1"}))
    path = f"/v1.41/build?t=app%3A1&buildargs={args}&nocache=1"
    shown = shown_path(path)
    assert "s3cret" not in shown and "NPM_TOKEN" not in shown
    query = parse_qs(urlsplit(shown).query)
    assert query == {"t": ["app:1"], "buildargs": ["..."], "nocache": ["1"]}
    assert shown == "/v1.41/build?t=app%3A1&buildargs=...&nocache=1"  # the rest as sent


def test_a_path_without_build_args_is_shown_unchanged() -> None:
    for path in ("/_ping", "/v1.41/images/json?all=1", "/v1.41/build?t=a%3A1&q=1"):
        assert shown_path(path) == path
