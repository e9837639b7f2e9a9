"""A fake ``docker-credential-<name>`` program that keeps its secrets in a JSON file,
speaking the credential-helper protocol (get, store, erase on stdin/stdout)."""

from __future__ import annotations

from pathlib import Path

_SCRIPT = """#!/usr/bin/env python3
import json, sys
store = {store!r}
data = json.load(open(store))
action, payload = sys.argv[1], sys.stdin.read().strip()
if action == "get":
    if payload not in data:
        print("credentials not found in native keychain"); sys.exit(1)
    print(json.dumps({{"ServerURL": payload, **data[payload]}}))
elif action == "store":
    doc = json.loads(payload)
    data[doc["ServerURL"]] = {{"Username": doc["Username"], "Secret": doc["Secret"]}}
    json.dump(data, open(store, "w"))
elif action == "erase":
    data.pop(payload, None); json.dump(data, open(store, "w"))
"""


def write_credential_helper(bindir: Path, name: str, store: Path) -> Path:
    """``bindir/docker-credential-<name>``, executable, over an empty ``store``."""
    bindir.mkdir(parents=True, exist_ok=True)
    store.write_text("{}")
    script = bindir / f"docker-credential-{name}"
    script.write_text(_SCRIPT.format(store=str(store)))
    script.chmod(0o755)
    return script
