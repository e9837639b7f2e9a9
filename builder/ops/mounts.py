"""RUN --mount: parse the flag (BuildKit's CSV form) and mount it for one RUN.

Types, with BuildKit's options and defaults:

- ``bind`` (the default type): from the context, a stage or an image; read-only unless
  ``rw``, in which case writes go to a throwaway copy.
- ``tmpfs``: ``size``.
- ``cache``: a directory kept in the store across builds (``builder.ops.cachemounts``).
- ``secret``: a ``--secret`` as a read-only file and/or an env var (``builder.ops.secrets``).
- ``ssh``: a ``--ssh`` agent socket, with ``SSH_AUTH_SOCK`` pointing at it.

Nothing a mount shows ever lands in the step's layer. The step's key has every mount's
definition and a bind mount's content (``builder.ops.run``), never a cache's or secret's.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

from builder.errors import BuildError, DockerfileError
from builder.frontend.suggest import did_you_mean
from builder.frontend.units import BINARY, MAX_SIZE
from builder.ops.cachemounts import SHARING_MODES, CacheRequest, cache_dir
from builder.ops.rootpath import clean, resolve_in_root
from builder.ops.secrets import agent_relay, read_secret, secret_file, store_tag
from fstree.tree import copy_tree
from runtime.spec import BindMount, TmpfsMount

if TYPE_CHECKING:
    from builder.ops.run import ExecContext

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


@dataclass(frozen=True)
class RunMount:
    """One ``--mount``: ``from_stage`` None means the build context (bind) or none (cache).

    ``target`` may be empty only for a secret exposed through ``env`` alone.
    """

    kind: str  # "bind" | "tmpfs" | "cache" | "secret" | "ssh"
    target: str
    source: str = ""
    from_stage: int | None = None
    readonly: bool = True
    size: int | None = None
    id: str = ""
    sharing: str = "shared"
    mode: int = 0o755
    uid: int = 0
    gid: int = 0
    required: bool = False
    env: str = ""
    # A cache given mode=, uid= or gid= (and no source=) is a cache of its own per
    # setting: BuildKit seeds it from a "/cache" dir made with them (dockerfile2llb
    # convert_runmount.go setCacheUIDGID), and keys the cache on that parent.
    owner_set: bool = False

    def describe(self) -> str:
        """The mount as the cache key sees it: its definition, never its content."""
        common = f"type={self.kind},target={self.target}"
        if self.kind in ("bind", "tmpfs"):
            return (
                f"{common},source={self.source},"
                f"from={self.from_stage},ro={self.readonly},size={self.size}"
            )
        owner = f"mode={self.mode:o},uid={self.uid},gid={self.gid}"
        if self.kind == "cache":
            return (
                f"{common},id={self.id},sharing={self.sharing},source={self.source},"
                f"from={self.from_stage},ro={self.readonly},{owner}"
            )
        return f"{common},id={self.id},env={self.env},required={self.required},{owner}"


def cache_mount_ids(mounts: tuple[RunMount, ...]) -> dict[str, bool]:
    """The cache ids ``mounts`` use -> whether one has a parent (``from=``, or its own
    mode/uid/gid), whose caches BuildKit prunes as well on ``--no-cache``."""
    ids: dict[str, bool] = {}
    for m in mounts:
        if m.kind == "cache":
            ids[m.id] = ids.get(m.id, False) or m.from_stage is not None or m.owner_set
    return ids


def parse_mount(raw: str, stage_ref: Callable[[str], int]) -> RunMount:
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
        return RunMount("tmpfs", _need_target(raw, target), size=_size(fields.get("size", "")))
    if kind in ("secret", "ssh"):
        return _parse_agent_or_secret(raw, kind, target, fields)
    readonly = _readonly(fields, default=kind == "bind")
    source = next((fields[k] for k in _SOURCE_KEYS if k in fields), "")
    from_stage = stage_ref(fields["from"]) if fields.get("from") else None
    if kind == "bind":
        return RunMount("bind", _need_target(raw, target), clean(source), from_stage, readonly)
    sharing = fields.get("sharing", "shared").lower()
    if sharing not in SHARING_MODES:
        raise DockerfileError(
            # BuildKit commands_runmount.go: suggest.WrapError(..., allShareModes())
            f"--mount={raw}: invalid sharing {sharing!r}" + did_you_mean(sharing, SHARING_MODES),
            hint="use shared, private or locked",
        )
    target = _need_target(raw, target)
    return RunMount(
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


def _parse_agent_or_secret(raw: str, kind: str, target: str, fields: dict[str, str]) -> RunMount:
    required = _bool(raw, "required", fields.get("required", "false"))
    owner_args = _owner_args(raw, kind, fields)
    if kind == "ssh":
        return RunMount(
            "ssh", target, id=fields.get("id") or "default", required=required, **owner_args
        )
    secret_id = fields.get("id") or (target.rsplit("/", 1)[-1] if target else "")
    if not secret_id:
        raise DockerfileError(f"--mount={raw}: a secret needs id= (or target=)", hint="add id=")
    env = fields.get("env", "")
    if not target and not env:
        target = f"/run/secrets/{secret_id}"
    return RunMount("secret", target, id=secret_id, required=required, env=env, **owner_args)


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


@dataclass(frozen=True)
class MountSet:
    """What a RUN's mounts give the sandbox; ``env`` entries (``K=V``) are added to the
    RUN's environment for this run only (secret ``env=``, ``SSH_AUTH_SOCK``)."""

    binds: tuple[BindMount, ...] = ()
    tmpfs: tuple[TmpfsMount, ...] = ()
    env: tuple[str, ...] = ()


@contextmanager
def mounted(mounts: tuple[RunMount, ...], ctx: ExecContext) -> Iterator[MountSet]:
    """Every mount of one RUN, valid (caches locked, secrets on disk) while open."""
    binds: list[BindMount] = []
    env: list[str] = []
    tmpfs = [TmpfsMount(m.target, m.size) for m in mounts if m.kind == "tmpfs"]
    ssh_count = 0
    with ExitStack() as stack:
        for i, mount in enumerate(mounts):
            if mount.kind == "bind":
                binds.append(_bind(mount, ctx, stack, i))
            elif mount.kind == "cache":
                binds.append(_cache(mount, ctx, stack, i))
            elif mount.kind == "secret":
                binds += _secret(mount, ctx, stack, env)
            elif mount.kind == "ssh":
                agent = ctx.secrets.agent(mount.id)
                if agent is None:
                    _missing(mount, "--ssh", f"{mount.id}=$SSH_AUTH_SOCK")
                    continue
                target = mount.target or f"/run/buildkit/ssh_agent.{ssh_count}"
                if ssh_count == 0:  # BuildKit points SSH_AUTH_SOCK at the first agent
                    env.append(f"SSH_AUTH_SOCK={target}")
                ssh_count += 1
                relay = agent_relay(agent.socket, mount.mode, mount.uid, mount.gid)
                binds.append(BindMount(stack.enter_context(relay), target, readonly=False))
        yield MountSet(tuple(binds), tuple(tmpfs), tuple(env))


def _bind(mount: RunMount, ctx: ExecContext, stack: ExitStack, i: int) -> BindMount:
    from builder.ops.copy import stage_view

    if mount.from_stage is None:
        host = resolve_in_root(ctx.context.root, mount.source)
    else:
        root = stack.enter_context(stage_view(ctx, mount.from_stage, f"mount-{i}"))
        host = resolve_in_root(root, mount.source)
    if not host.exists():
        raise BuildError(f"RUN --mount source {mount.source} not found")
    if not mount.readonly:  # writes are discarded: they go to a copy
        copy = ctx.scratch / f"mount-rw-{i}"
        if host.is_dir():
            copy_tree(host, copy)  # any depth
        else:
            shutil.copy2(host, copy)
        host = copy
    return BindMount(host, mount.target, readonly=mount.readonly)


def _cache(mount: RunMount, ctx: ExecContext, stack: ExitStack, i: int) -> BindMount:
    from builder.ops.copy import stage_view

    seed, seed_key = None, ""
    if mount.from_stage is not None:
        root = stack.enter_context(stage_view(ctx, mount.from_stage, f"mount-{i}"))
        seed = resolve_in_root(root, mount.source or "/")
        seed_key = f"{ctx.stage_keys[mount.from_stage]}:{mount.source or '/'}"
    elif mount.owner_set:
        seed_key = f"owner:{mount.mode:o}:{mount.uid}:{mount.gid}"
    request = CacheRequest(
        mount.id, mount.sharing, mount.mode, mount.uid, mount.gid, seed, seed_key
    )
    store_root = ctx.store_root if ctx.store_root is not None else ctx.scratch
    host = stack.enter_context(cache_dir(store_root, request))
    if mount.from_stage is None and mount.source not in ("", "/"):
        host = _cache_subdir(host, mount)
    return BindMount(host, mount.target, readonly=mount.readonly)


def _cache_subdir(cache: Path, mount: RunMount) -> Path:
    """``source=`` of a cache without ``from=``: that path inside the cache (BuildKit
    mounts the cache with the source as its selector, executor/oci/spec.go subMount),
    its links resolved inside the cache; it must exist, as BuildKit opens it."""
    host = resolve_in_root(cache, mount.source)
    if not host.exists():
        raise BuildError(
            f"RUN --mount=type=cache,id={mount.id},source={mount.source.lstrip('/')}: "
            f"{mount.source} does not exist in the cache",
            hint="create it in the cache first (an earlier RUN with the cache mounted "
            "whole), or drop source=",
        )
    return host


def _secret(mount: RunMount, ctx: ExecContext, stack: ExitStack, env: list[str]) -> list[BindMount]:
    source = ctx.secrets.secret(mount.id)
    if source is None:
        _missing(mount, "--secret", f"id={mount.id},src=FILE")
        return []
    value = read_secret(source, os.environ)
    if mount.env:
        env.append(f"{mount.env}={value.decode('utf-8', 'surrogateescape')}")
    if not mount.target:
        return []
    owner = store_tag(ctx.store_root if ctx.store_root is not None else ctx.scratch)
    secret = secret_file(value, mount.mode, mount.uid, mount.gid, ctx.scratch, owner)
    host = stack.enter_context(secret)
    return [BindMount(host, mount.target, readonly=True)]


def _missing(mount: RunMount, flag: str, example: str) -> None:
    """A secret or agent the build was not given: an error only when ``required``."""
    if mount.required:
        what = "secret" if mount.kind == "secret" else "ssh agent"
        raise BuildError(
            f"RUN --mount=type={mount.kind}: {what} {mount.id!r} is required but was not given",
            hint=f"pass {flag} {example} to pybuild build",
        )
