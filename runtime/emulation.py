"""Which foreign architectures this kernel can run: QEMU user-mode emulation registered
with binfmt_misc.

A RUN step for another architecture execs that architecture's ELF binaries; the kernel
hands them to the interpreter binfmt_misc has registered for their ELF header. Inside a
sandbox the interpreter's path (``/usr/bin/qemu-aarch64-static``) does not exist, so the
entry must have the ``F`` (fix binary) flag: the kernel opened the interpreter when it
was registered (Debian's ``qemu-user-static`` registers its entries that way through
``binfmt-support``). An entry without ``F``, or disabled, does not count.

Architectures are OCI names (``arm64``, ``arm``...), read from the ELF machine field of
each entry's magic, not from the entry's name.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

BINFMT_MISC = Path("/proc/sys/fs/binfmt_misc")
# Tests point this at an empty directory to build as on a machine without emulation.
BINFMT_ENV = "PYBUILD_BINFMT_MISC"

# ELF e_machine (with EI_CLASS 1: 32-bit, 2: 64-bit; EI_DATA 1: little endian) -> OCI
# architecture (image-index.md and Go's GOARCH values).
_MACHINES = {
    (0x3E, 2, 1): "amd64",
    (0x03, 1, 1): "386",
    (0xB7, 2, 1): "arm64",
    (0x28, 1, 1): "arm",
    (0x15, 2, 1): "ppc64le",
    (0x16, 2, 2): "s390x",
    (0xF3, 2, 1): "riscv64",
    (0x08, 2, 1): "mips64le",
    (0x102, 2, 1): "loong64",
}


@dataclass(frozen=True)
class Emulator:
    """One enabled binfmt_misc entry for ELF binaries."""

    name: str  # the entry's file name, e.g. qemu-aarch64
    architecture: str  # OCI name, e.g. arm64
    interpreter: str
    flags: str  # e.g. "PF"

    @property
    def usable(self) -> bool:
        """Usable in a sandbox: the interpreter was opened at registration (F)."""
        return "F" in self.flags


def binfmt_dir() -> Path:
    """Where binfmt_misc is read: ``$PYBUILD_BINFMT_MISC``, else /proc/sys/fs/binfmt_misc."""
    return Path(os.environ.get(BINFMT_ENV) or BINFMT_MISC)


def emulators(directory: Path | None = None) -> tuple[Emulator, ...]:
    """The enabled ELF entries registered in ``directory`` (default ``binfmt_dir()``);
    none when binfmt_misc is not mounted."""
    where = directory if directory is not None else binfmt_dir()
    try:
        names = sorted(os.listdir(where))
    except OSError:
        return ()
    found = []
    for name in names:
        if name in ("register", "status"):
            continue
        try:
            text = (where / name).read_text()
        except (OSError, UnicodeDecodeError):
            continue
        entry = parse_entry(name, text)
        if entry is not None:
            found.append(entry)
    return tuple(found)


def parse_entry(name: str, text: str) -> Emulator | None:
    """An entry file's text (``enabled``, ``interpreter X``, ``flags: PF``, ``offset 0``,
    ``magic 7f454c46...``) as an Emulator; None when disabled or not for ELF."""
    lines = text.splitlines()
    if not lines or lines[0].strip() != "enabled":
        return None
    fields: dict[str, str] = {}
    for line in lines[1:]:
        key, _, value = line.replace(":", " ", 1).partition(" ")
        fields[key.strip()] = value.strip()
    magic = fields.get("magic", "")
    if fields.get("offset", "0") != "0" or not magic.startswith("7f454c46"):
        return None
    try:
        raw = bytes.fromhex(magic)
    except ValueError:
        return None
    if len(raw) < 20:
        return None
    data = raw[5]
    machine = int.from_bytes(raw[18:20], "little" if data == 1 else "big")
    arch = _MACHINES.get((machine, raw[4], data))
    if arch is None:
        return None
    return Emulator(name, arch, fields.get("interpreter", ""), fields.get("flags", ""))


def emulated_architectures(directory: Path | None = None) -> frozenset[str]:
    """The OCI architectures a sandbox can run through emulation (entries with F)."""
    return frozenset(e.architecture for e in emulators(directory) if e.usable)
