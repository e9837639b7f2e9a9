"""RUN --mount at execute time: every mount of one RUN, made ready for the sandbox.

``builder.plan.mounts`` parses the flag into a ``MountSpec``; here a bind shows the
context or a stage (a rw one through a throwaway copy), a cache is locked in the store
(``builder.ops.cachemounts``), a secret is written to a private file and an ssh agent
relayed (``builder.ops.secrets``). Nothing a mount shows ever lands in the step's layer.
The step's key has every mount's definition and a bind mount's content
(``builder.ops.run``), never a cache's or secret's.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from builder.errors import BuildError
from builder.ops.base import ExecContext, stage_view
from builder.ops.cachemounts import CacheRequest, cache_dir
from builder.ops.rootpath import resolve_in_root
from builder.ops.secrets import agent_relay, read_secret, secret_file, store_tag
from builder.plan.specs import MountSpec
from fstree.tree import copy_tree
from runtime.spec import BindMount, TmpfsMount


@dataclass(frozen=True)
class MountSet:
    """What a RUN's mounts give the sandbox; ``env`` entries (``K=V``) are added to the
    RUN's environment for this run only (secret ``env=``, ``SSH_AUTH_SOCK``)."""

    binds: tuple[BindMount, ...] = ()
    tmpfs: tuple[TmpfsMount, ...] = ()
    env: tuple[str, ...] = ()


@contextmanager
def mounted(mounts: tuple[MountSpec, ...], ctx: ExecContext) -> Iterator[MountSet]:
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


def _bind(mount: MountSpec, ctx: ExecContext, stack: ExitStack, i: int) -> BindMount:
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


def _cache(mount: MountSpec, ctx: ExecContext, stack: ExitStack, i: int) -> BindMount:
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


def _cache_subdir(cache: Path, mount: MountSpec) -> Path:
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


def _secret(
    mount: MountSpec, ctx: ExecContext, stack: ExitStack, env: list[str]
) -> list[BindMount]:
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


def _missing(mount: MountSpec, flag: str, example: str) -> None:
    """A secret or agent the build was not given: an error only when ``required``."""
    if mount.required:
        what = "secret" if mount.kind == "secret" else "ssh agent"
        raise BuildError(
            f"RUN --mount=type={mount.kind}: {what} {mount.id!r} is required but was not given",
            hint=f"pass {flag} {example} to pybuild build",
        )
