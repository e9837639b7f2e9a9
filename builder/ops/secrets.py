"""Build secrets and SSH agents for ``RUN --mount=type=secret|ssh``.

``pybuild build --secret`` and ``--ssh`` are parsed into :class:`BuildSecrets`, which
keeps only *where* each secret comes from (a file path or an environment variable
name), never its bytes. A RUN that mounts a secret reads it then, writes it to a private
file on a tmpfs (``/dev/shm``) for that RUN only and removes it afterwards, so secret
bytes never reach a layer, a cache key, the history, the metadata file or the progress
output. SSH agents are forwarded by bind-mounting the agent's unix socket.
"""

from __future__ import annotations

import fcntl
import os
import stat
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from builder.errors import BuildError, UsageError
from cache.digest import sha256_bytes
from cache.store import remove_if_unlocked
from fstree.tree import remove_tree

if TYPE_CHECKING:
    import socket

ENTITLEMENTS = ("security.insecure", "network.host")
_SHM = Path("/dev/shm")
_SECRET_PREFIX = "pybuild-secret-"
# Between making a secret dir and locking it: younger dirs are never swept.
_DEAD_GRACE = 2.0


@dataclass(frozen=True)
class SecretSource:
    """Where secret ``id`` comes from: exactly one of ``file`` and ``env`` is set."""

    id: str
    file: Path | None = None
    env: str | None = None


@dataclass(frozen=True)
class SshSource:
    """An SSH agent socket on the host, forwarded as ``--mount=type=ssh,id=<id>``."""

    id: str
    socket: Path


@dataclass(frozen=True)
class BuildSecrets:
    """What ``--secret``, ``--ssh`` and ``--allow`` gave one build."""

    secrets: tuple[SecretSource, ...] = ()
    agents: tuple[SshSource, ...] = ()
    allow_insecure: bool = False
    allow_network_host: bool = False  # --allow network.host: RUN --network=host runs

    def secret(self, secret_id: str) -> SecretSource | None:
        """The last ``--secret`` given for ``secret_id`` (later flags win, as in buildx)."""
        found = [s for s in self.secrets if s.id == secret_id]
        return found[-1] if found else None

    def agent(self, agent_id: str) -> SshSource | None:
        found = [a for a in self.agents if a.id == agent_id]
        return found[-1] if found else None


def parse_secret_flag(text: str, environ: Mapping[str, str]) -> SecretSource:
    """One ``--secret`` value as buildx reads it.

    ``id=X,src=FILE`` (or ``source=``), ``id=X,env=VAR``, ``type=file|env`` with the
    other part defaulting to the id; ``id=X`` alone takes ``$X`` when it is set, else the
    file ``X``. Raises UsageError for anything else.
    """
    fields = _fields(text, "--secret", ("id", "src", "source", "env", "type"))
    secret_id = fields.get("id", "")
    if not secret_id:
        raise UsageError(f"--secret {text!r}: id= is required", hint="e.g. id=token,src=FILE")
    kind = fields.get("type", "")
    src = fields.get("src") or fields.get("source")
    env = fields.get("env")
    if kind not in ("", "file", "env"):
        raise UsageError(f"--secret {text!r}: type must be file or env")
    if (src and (env or kind == "env")) or (env and kind == "file"):
        raise UsageError(f"--secret {text!r}: give either a file (src=) or env=, not both")
    if kind == "env" or env:
        return SecretSource(secret_id, env=env or secret_id)
    if kind == "" and not src and secret_id in environ:
        return SecretSource(secret_id, env=secret_id)
    return SecretSource(secret_id, file=Path(src or secret_id))


def parse_ssh_flag(text: str, environ: Mapping[str, str]) -> SshSource:
    """One ``--ssh`` value: ``ID`` (the agent at ``$SSH_AUTH_SOCK``) or ``ID=SOCKET``.

    Only agent sockets are forwarded: a key file is refused with a hint, as is a socket
    that does not exist.
    """
    agent_id, sep, path = text.partition("=")
    if not agent_id or "," in agent_id:
        raise UsageError(f"--ssh {text!r}: expected ID or ID=SOCKET", hint="e.g. --ssh default")
    if not sep:
        path = environ.get("SSH_AUTH_SOCK", "")
        if not path:
            raise UsageError(
                f"--ssh {text}: SSH_AUTH_SOCK is not set",
                hint="start an agent (eval $(ssh-agent); ssh-add) or pass --ssh ID=SOCKET",
            )
    if "," in path:
        raise UsageError(f"--ssh {text!r}: pybuild forwards one agent socket per id")
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise UsageError(f"--ssh {text}: cannot use {path}: {exc.strerror}") from None
    if not stat.S_ISSOCK(mode):
        raise UsageError(
            f"--ssh {text}: {path} is not a unix socket",
            hint="pybuild forwards ssh-agent sockets only: ssh-add the key to an agent "
            "and pass its socket",
        )
    return SshSource(agent_id, Path(path))


def parse_allow(values: Sequence[str]) -> bool:
    """``--allow`` entitlements; True when ``security.insecure`` is granted."""
    for value in values:
        if value not in ENTITLEMENTS:
            raise UsageError(
                f"--allow {value}: unknown entitlement", hint="use " + " or ".join(ENTITLEMENTS)
            )
    return "security.insecure" in values


def build_secrets(
    secrets: Sequence[str],
    ssh: Sequence[str],
    allow: Sequence[str],
    environ: Mapping[str, str] | None = None,
) -> BuildSecrets:
    """All three build flags at once (what ``pybuild build`` passes on); ``environ``
    defaults to this process's environment."""
    environ = os.environ if environ is None else environ
    return BuildSecrets(
        tuple(parse_secret_flag(s, environ) for s in secrets),
        tuple(parse_ssh_flag(s, environ) for s in ssh),
        parse_allow(allow),
        "network.host" in allow,
    )


def read_secret(source: SecretSource, environ: Mapping[str, str]) -> bytes:
    """The secret's bytes; raises BuildError (never showing them) when unavailable."""
    if source.env is not None:
        if source.env not in environ:
            raise BuildError(
                f"secret {source.id}: environment variable {source.env} is not set",
                hint=f"export {source.env}, or pass --secret id={source.id},src=FILE",
            )
        return environ[source.env].encode()
    assert source.file is not None
    try:
        return source.file.read_bytes()
    except OSError as exc:
        raise BuildError(
            f"secret {source.id}: cannot read {source.file}: {exc.strerror}",
            hint=f"pass --secret id={source.id},src=FILE with a readable file",
        ) from None


def store_tag(store_root: Path) -> str:
    """A short name for the store in the names of its secret dirs, so each store
    sweeps only its own (:func:`sweep_dead_secrets`)."""
    return sha256_bytes(os.fsencode(store_root.resolve())).hex[:16]


@contextmanager
def secret_file(
    value: bytes, mode: int, uid: int, gid: int, fallback: Path, owner: str
) -> Iterator[Path]:
    """A file holding ``value`` (with that mode and owner) while the context is open.

    It lives on ``/dev/shm`` (memory, never the disk) when that is writable, else under
    ``fallback``, in a directory only root can enter; it is removed on exit. The
    directory is named after the store (``owner``, from :func:`store_tag`) and held
    under an flock while in use, as store temp dirs are: if pybuild is killed, the
    store's next build removes it (:func:`sweep_dead_secrets`).
    """
    base = _SHM if os.access(_SHM, os.W_OK | os.X_OK) else fallback
    folder = Path(tempfile.mkdtemp(prefix=f"{_SECRET_PREFIX}{owner}-", dir=base))
    lock = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        path = folder / "secret"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, value)
            os.fchown(fd, uid, gid)
            os.fchmod(fd, mode)
        finally:
            os.close(fd)
        yield path
    finally:
        remove_tree(folder, ignore_errors=True)
        os.close(lock)


def sweep_dead_secrets(owner: str, *, grace: float = _DEAD_GRACE, shm: Path = _SHM) -> int:
    """Remove the store ``owner``'s secret dirs on ``/dev/shm`` that no live pybuild
    holds (their maker was killed); returns how many went. Dirs of other stores and
    other users are left alone."""
    cutoff = time.time() - grace
    removed = 0
    try:
        entries = sorted(shm.iterdir())
    except OSError:
        return 0
    for entry in entries:
        if not entry.name.startswith(f"{_SECRET_PREFIX}{owner}-"):
            continue
        try:
            st = entry.lstat()
            if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mtime > cutoff:
                continue
            removed += remove_if_unlocked(entry)
        except OSError:
            continue  # gone meanwhile, or replaced by something we do not remove
    return removed


@contextmanager
def agent_relay(agent: Path, mode: int, uid: int, gid: int) -> Iterator[Path]:
    """A new unix socket, owned and moded as the mount asks, that relays every
    connection to the agent at ``agent`` while the context is open.

    Binding the agent's own socket would keep the host's owner and mode (often 0600 for
    someone else); BuildKit likewise serves the mount from a socket of its own. It lives
    in a short private dir under /tmp because socket paths are limited to 107 bytes.
    """
    import socket  # here: only an ssh mount relays an agent

    folder = Path(tempfile.mkdtemp(prefix="pybuild-ssh-"))
    path = folder / "agent.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stop = threading.Event()
    try:
        server.bind(str(path))
        os.chown(path, uid, gid)
        os.chmod(path, mode)
        server.listen(16)
        server.settimeout(0.1)
        thread = threading.Thread(target=_serve, args=(server, agent, stop), daemon=True)
        thread.start()
        try:
            yield path
        finally:
            stop.set()
            thread.join()
    finally:
        server.close()
        remove_tree(folder, ignore_errors=True)


def _serve(server: socket.socket, agent: Path, stop: threading.Event) -> None:
    import socket

    while not stop.is_set():
        try:
            client, _ = server.accept()
        except TimeoutError:
            continue
        except OSError:
            return
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            upstream.connect(str(agent))
        except OSError:
            client.close()  # the agent went away: the client sees a closed connection
            upstream.close()
            continue
        threading.Thread(target=_connection, args=(client, upstream), daemon=True).start()


def _connection(client: socket.socket, upstream: socket.socket) -> None:
    """Relay both ways until both sides are done, then close both."""
    back = threading.Thread(target=_pump, args=(upstream, client), daemon=True)
    back.start()
    _pump(client, upstream)
    back.join()
    client.close()
    upstream.close()


def _pump(src: socket.socket, dst: socket.socket) -> None:
    """Copy one direction until EOF, then pass the EOF on (a half-close)."""
    import socket

    try:
        while data := src.recv(65536):
            dst.sendall(data)
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        with suppress(OSError):
            dst.shutdown(socket.SHUT_RDWR)  # wake the other direction's recv


def _fields(text: str, flag: str, known: tuple[str, ...]) -> dict[str, str]:
    fields: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        key = key.strip().lower()
        if key not in known or not sep:
            raise UsageError(
                f"{flag} {text!r}: unexpected {part!r}", hint="keys: " + ", ".join(known)
            )
        fields[key] = value
    return fields
