"""Whether a build's RUN steps can run here: natively, or under QEMU through binfmt_misc.

Checked once all platforms are planned and before any step runs, so a build that needs
emulation this machine lacks fails at once, naming the platform and how to enable it.
"""

from __future__ import annotations

from collections.abc import Sequence

from builder.errors import BuildError
from builder.plan.specs import RunSpec
from builder.plan.stages import Plan
from cache.oci import Platform
from runtime.emulation import emulated_architectures

ENABLE_HINT = (
    "install QEMU user-mode emulation and register it with binfmt_misc (fix-binary flag F): "
    "`apt-get install qemu-user-static binfmt-support`, then `mount -t binfmt_misc binfmt_misc "
    "/proc/sys/fs/binfmt_misc` if it is not mounted and `update-binfmts --enable`; or build "
    "without RUN steps for that platform (cross-compile in a FROM --platform=$BUILDPLATFORM "
    "stage)"
)


def runnable(platform: Platform, host: Platform, emulated: frozenset[str]) -> bool:
    """The host runs its own platform; others need a registered emulator (linux only)."""
    if platform.os != host.os:
        return False
    return platform.architecture == host.architecture or platform.architecture in emulated


def check_emulation(plans: Sequence[Plan], host: Platform) -> None:
    """BuildError when a stage with a RUN step is for a platform this machine can run
    neither natively nor through an emulator (the first such stage is named)."""
    emulated: frozenset[str] | None = None
    for plan in plans:
        for stage in plan.stages:
            run = next((s for s in stage.steps if isinstance(s.spec, RunSpec)), None)
            if run is None or stage.platform == host:
                continue
            if emulated is None:
                emulated = emulated_architectures()
            if not runnable(stage.platform, host, emulated):
                location = run.instruction.location
                raise BuildError(
                    f"stage {stage.label} runs RUN steps for {stage.platform}, which this "
                    f"{host} machine cannot run: no emulator for {stage.platform.architecture} "
                    "is registered with binfmt_misc",
                    hint=ENABLE_HINT,
                    file=location.file,
                    line=location.line,
                )
