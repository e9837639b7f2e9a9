"""Resolve a docker ``USER`` string against a root filesystem's /etc/passwd and /etc/group.

Semantics follow runc's ``GetExecUser`` (which docker and BuildKit use):

- ``""`` is root (uid 0, gid 0).
- a numeric user is always a uid; it needs no passwd entry (then gid 0 and home ``/``).
- a name must have a passwd entry, else :class:`UserNotFound`.
- an explicit group (``user:group``) replaces the primary gid; a numeric group needs no
  entry, a named one must exist. Supplementary groups: only when no group is given,
  every group of /etc/group that lists the matched user name as a member.
- the primary gid is always one of the supplementary groups, for RUN and ``pybuild run``
  alike: the fix for CVE-2023-25173 in containerd (``pkg/oci/spec_opts.go``,
  ``WithAdditionalGIDs``) and BuildKit (``executor/oci/user.go``, ``WithUIDGID`` ->
  ``ensureAdditionalGids``, v0.12 and backports). So ``id`` as root shows
  ``groups=0(root),10(wheel)`` when /etc/group lists root in wheel, and ``USER app:grp``
  runs with ``groups=<grp>``.
  (dockerd 20.10's BuildKit predates it: its RUN had no primary gid among the groups.)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from runtime.errors import UserNotFound
from runtime.rootfs import resolve_in_root

MAX_ID = 2**31 - 1


@dataclass(frozen=True)
class ResolvedUser:
    """Numeric identity to run as; ``groups`` are the supplementary gids."""

    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str


@dataclass(frozen=True)
class _PasswdEntry:
    name: str
    uid: int
    gid: int
    home: str


@dataclass(frozen=True)
class _GroupEntry:
    name: str
    gid: int
    members: tuple[str, ...]


def resolve_user(rootfs_root: Path, user: str) -> ResolvedUser:
    """Resolve ``user`` (``name``, ``uid``, ``name:group``, ``uid:gid``, or ``""``).

    Reads ``<rootfs_root>/etc/passwd`` and ``/etc/group``, resolving symlinks as if
    ``rootfs_root`` were ``/`` (a link can never lead outside it). Missing files count as
    empty. Raises :class:`UserNotFound` for unknown names and out-of-range ids.
    """
    user_part, _, group_part = user.partition(":")
    # An empty user is root, looked up like "0" so it gets root's home and groups.
    user_part = user_part or "0"
    uid_arg = _parse_id(user_part)
    passwd = _read_passwd(rootfs_root)
    if uid_arg is not None:
        matches = [e for e in passwd if e.uid == uid_arg]
    else:
        matches = [e for e in passwd if e.name == user_part]
    if matches:
        entry = matches[0]
        uid, gid, home, matched_name = entry.uid, entry.gid, entry.home, entry.name
    elif uid_arg is not None:
        uid, gid, home, matched_name = uid_arg, 0, "/", ""
    else:
        raise UserNotFound(
            f"unable to find user {user_part}: no matching entries in passwd file",
            hint="create the user in the image (e.g. RUN adduser) or use a numeric uid",
        )

    member_of: list[int] = []
    if group_part:
        gid = _resolve_group(rootfs_root, group_part)
    elif matched_name:
        member_of = [g.gid for g in _read_group(rootfs_root) if matched_name in g.members]
    # ensureAdditionalGids: the primary gid is prepended unless already listed.
    groups = tuple(member_of) if gid in member_of else (gid, *member_of)
    return ResolvedUser(uid=uid, gid=gid, groups=groups, home=home or "/")


def _resolve_group(rootfs_root: Path, group: str) -> int:
    gid_arg = _parse_id(group)
    for entry in _read_group(rootfs_root):
        if (entry.gid == gid_arg) if gid_arg is not None else (entry.name == group):
            return entry.gid
    if gid_arg is not None:
        return gid_arg
    raise UserNotFound(
        f"unable to find group {group}: no matching entries in group file",
        hint="create the group in the image (e.g. RUN addgroup) or use a numeric gid",
    )


def _parse_id(text: str) -> int | None:
    """A decimal id, or None when ``text`` is a name; out-of-range ids are errors."""
    if not text.isascii() or not text.isdigit():
        return None
    value = int(text)
    if value > MAX_ID:
        raise UserNotFound(f"id {text} is out of range (0..{MAX_ID})")
    return value


def _read_lines(rootfs_root: Path, name: str) -> list[list[str]]:
    path = resolve_in_root(rootfs_root, f"/etc/{name}")
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return []
    return [
        line.split(":")
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def _read_passwd(rootfs_root: Path) -> list[_PasswdEntry]:
    entries = []
    for fields in _read_lines(rootfs_root, "passwd"):
        fields += [""] * (7 - len(fields))
        uid, gid = _parse_field_id(fields[2]), _parse_field_id(fields[3])
        if uid is not None and gid is not None:
            entries.append(_PasswdEntry(fields[0], uid, gid, fields[5]))
    return entries


def _read_group(rootfs_root: Path) -> list[_GroupEntry]:
    entries = []
    for fields in _read_lines(rootfs_root, "group"):
        fields += [""] * (4 - len(fields))
        gid = _parse_field_id(fields[2])
        if gid is not None:
            members = tuple(m.strip() for m in fields[3].split(",") if m.strip())
            entries.append(_GroupEntry(fields[0], gid, members))
    return entries


def _parse_field_id(text: str) -> int | None:
    """An id field of a passwd/group line; malformed lines are skipped, not fatal."""
    text = text.strip()
    return int(text) if text.isascii() and text.isdigit() and int(text) <= MAX_ID else None
