"""RUN --mount at plan time: BuildKit's CSV form parsed into a ``MountSpec``.

Types, with BuildKit's options and defaults:

- ``bind`` (the default type): from the context, a stage or an image; read-only unless
  ``rw``, in which case writes go to a throwaway copy.
- ``tmpfs``: ``size``.
- ``cache``: a directory kept in the store across builds (``builder.ops.cachemounts``).
- ``secret``: a ``--secret`` as a read-only file and/or an env var (``builder.ops.secrets``).
- ``ssh``: a ``--ssh`` agent socket, with ``SSH_AUTH_SOCK`` pointing at it.

Mounting them for a RUN is ``builder.ops.mounts``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypedDict

from builder.errors import DockerfileError
from builder.frontend.suggest import did_you_mean
from builder.frontend.units import BINARY, MAX_SIZE
from builder.plan.paths import clean
from builder.plan.specs import SHARING_MODES, MountSpec

_TARGET_KEYS = ("target", "dst", "destination")
_SOURCE_KEYS = ("source", "src")
_RO_KEYS = ("ro", "readonly", "rw", "readwrite")
_OWNER_KEYS = ("mode", "uid", "gid")
_MAX_ID = 2**32 - 2
# Which keys each type takes (besides "type"); anything else is an error, as in BuildKit.
_KEYS: dict[str, tuple[str, ...]] = {
    "bind": (*_TARGET_KEYS, *_SOURCE_KEYS, *_RO_KEYS, "from"),
    "tmpfs": (*_TARGET_KEYS, "size"),
    "cache": (
        *_TARGET_KEYS,
        *_SOURCE_KEYS,
        *_RO_KEYS,
        "from",
        "id",
        "sharing",
        "mode",
        "uid",
        "gid",
    ),
    "secret": (*_TARGET_KEYS, "id", "env", "required", *_OWNER_KEYS),
    "ssh": (*_TARGET_KEYS, "id", "required", *_OWNER_KEYS),
}
_DEFAULT_MODE = {"cache": 0o755, "secret": 0o400, "ssh": 0o600}


class _Owner(TypedDict):
    mode: int
    uid: int
    gid: int


def parse_mount(raw: str, stage_ref: Callable[[str], int]) -> MountSpec:
    """One expanded ``--mount`` value; raises DockerfileError (no location)."""
    fields: dict[str, str] = {}
    for part in raw.split(","):
        key, sep, value = part.partition("=")
        key = key.strip().lower()
        if key in (*_RO_KEYS, "required") and not sep:
            value = "true"
        elif not sep:
            raise DockerfileError(f"--mount={raw}: {part!r} is not KEY=VALUE")
        fields[key] = value
    kind = fields.pop("type", "bind")
    if kind not in _KEYS:
        raise DockerfileError(
            f'--mount={raw}: unsupported mount type "{kind}"' + did_you_mean(kind, _KEYS),
            hint="use bind, cache, tmpfs, secret or ssh",
        )
    unknown = sorted(set(fields) - set(_KEYS[kind]))
    if unknown:
        raise DockerfileError(
            f"--mount={raw}: unexpected key '{unknown[0]}' for type={kind}"
            + did_you_mean(unknown[0], _KEYS[kind]),
            hint="keys for this type: " + ", ".join(_KEYS[kind]),
        )
    target = clean(t) if (t := next((fields[k] for k in _TARGET_KEYS if k in fields), "")) else ""
    if kind == "tmpfs":
        return MountSpec("tmpfs", _need_target(raw, target), size=_size(fields.get("size", "")))
    if kind in ("secret", "ssh"):
        return _parse_agent_or_secret(raw, kind, target, fields)
    readonly = _readonly(fields, default=kind == "bind")
    source = next((fields[k] for k in _SOURCE_KEYS if k in fields), "")
    from_stage = stage_ref(fields["from"]) if fields.get("from") else None
    if kind == "bind":
        return MountSpec("bind", _need_target(raw, target), clean(source), from_stage, readonly)
    sharing = fields.get("sharing", "shared").lower()
    if sharing not in SHARING_MODES:
        raise DockerfileError(
            # BuildKit commands_runmount.go: suggest.WrapError(..., allShareModes())
            f"--mount={raw}: invalid sharing {sharing!r}" + did_you_mean(sharing, SHARING_MODES),
            hint="use shared, private or locked",
        )
    target = _need_target(raw, target)
    return MountSpec(
        "cache",
        target,
        clean(source) if source else "",
        from_stage,
        readonly,
        id=fields.get("id") or target,
        sharing=sharing,
        **_owner_args(raw, kind, fields),
        owner_set=not source and any(k in fields for k in _OWNER_KEYS),
    )


def _parse_agent_or_secret(raw: str, kind: str, target: str, fields: dict[str, str]) -> MountSpec:
    required = _bool(raw, "required", fields.get("required", "false"))
    owner_args = _owner_args(raw, kind, fields)
    if kind == "ssh":
        return MountSpec(
            "ssh", target, id=fields.get("id") or "default", required=required, **owner_args
        )
    secret_id = fields.get("id") or (target.rsplit("/", 1)[-1] if target else "")
    if not secret_id:
        raise DockerfileError(f"--mount={raw}: a secret needs id= (or target=)", hint="add id=")
    env = fields.get("env", "")
    if not target and not env:
        target = f"/run/secrets/{secret_id}"
    return MountSpec("secret", target, id=secret_id, required=required, env=env, **owner_args)


def _owner(raw: str, kind: str, fields: dict[str, str]) -> tuple[int, int, int]:
    try:
        mode = int(fields["mode"], 8) if "mode" in fields else _DEFAULT_MODE[kind]
        uid, gid = int(fields.get("uid", "0")), int(fields.get("gid", "0"))
    except ValueError:
        raise DockerfileError(
            f"--mount={raw}: mode must be octal and uid/gid numbers", hint="e.g. mode=0700,uid=1000"
        ) from None
    # BuildKit parses uid/gid as 32-bit (strconv.ParseUint(v, 10, 32)); 2**32 - 1 is the
    # kernel's "unchanged" id, so it cannot own a directory.
    if not 0 <= mode <= 0o7777 or not 0 <= uid <= _MAX_ID or not 0 <= gid <= _MAX_ID:
        raise DockerfileError(
            f"--mount={raw}: mode, uid or gid out of range",
            hint=f"mode is octal up to 7777, uid and gid are 0 to {_MAX_ID}",
        )
    return mode, uid, gid


def _owner_args(raw: str, kind: str, fields: dict[str, str]) -> _Owner:
    mode, uid, gid = _owner(raw, kind, fields)
    return {"mode": mode, "uid": uid, "gid": gid}


def _need_target(raw: str, target: str) -> str:
    if not target:
        raise DockerfileError(f"--mount={raw}: a target is required", hint="add target=/path")
    return target


def _readonly(fields: dict[str, str], *, default: bool) -> bool:
    if "ro" in fields or "readonly" in fields:
        return _true(fields.get("ro")) or _true(fields.get("readonly"))
    if "rw" in fields or "readwrite" in fields:
        return not (_true(fields.get("rw")) or _true(fields.get("readwrite")))
    return default


def _bool(raw: str, key: str, value: str) -> bool:
    if value.lower() not in ("true", "false", "1", "0"):
        raise DockerfileError(f"--mount={raw}: {key}={value} is not true or false")
    return value.lower() in ("true", "1")


def _true(value: str | None) -> bool:
    return value is not None and value.lower() in ("", "true", "1")


def _size(text: str) -> int | None:
    """A tmpfs ``size=``: whole bytes, or k/m/g (powers of 1024), then any ``b``s."""
    if not text:
        return None
    number, unit = text.rstrip("kKmMgGbB"), text[len(text.rstrip("kKmMgGbB")) :]
    unit = unit.lower().rstrip("b")
    if not (number.isascii() and number.isdigit()) or unit not in ("", "k", "m", "g"):
        raise DockerfileError(f"invalid tmpfs size {text!r}", hint="write size=64m")
    size = int(number) * BINARY.get(unit, 1) if len(number) <= 20 else MAX_SIZE + 1
    if size > MAX_SIZE:  # BuildKit's units.RAMInBytes is an int64
        raise DockerfileError(f"invalid value for size: {text}", hint="write size=64m")
    return size
