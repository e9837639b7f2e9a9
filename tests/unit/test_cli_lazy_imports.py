"""A build loads only what it uses: a no-change rebuild is mostly start-up time."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from builder.cli.main import COMMANDS, make_parser

REPO = Path(__file__).resolve().parents[2]
# Modules a build without --cache-from/--cache-to, -o, --push, --build-context or
# resource limits never needs, and what `pybuild --version` alone needs.
UNUSED_BY_A_PLAIN_BUILD = (
    "importlib.metadata",
    "builder.exporters.cache_transfer",
    "builder.exporters.outputs",
    "builder.exporters.push_targets",
    "builder.images.namedcontexts",
    "builder.run.container_spec",
)
# Modules only a step that runs needs (stage views and mounts, writing, unpacking or
# clamping a layer, users), and the collector: a build that hits loads none of them.
UNUSED_BY_A_BUILD_THAT_HITS = (
    "builder.ops.mounts",
    "builder.ops.stagetree",
    "cache.clamp",
    "cache.gc",
    "cache.layers",
    "cache.unpacked",
    "runtime.users",
)


def _subparsers(command: str | None) -> set[str]:
    parser = make_parser(command)
    (sub,) = [a for a in parser._actions if a.dest == "subcommand"]
    assert isinstance(sub.choices, dict)
    return set(sub.choices)


def test_a_known_command_gets_only_its_own_parser() -> None:
    assert _subparsers("images") == {"images"}


def test_help_and_unknown_words_get_every_command() -> None:
    assert _subparsers(None) == set(COMMANDS)
    assert _subparsers("imgaes") == set(COMMANDS)


def test_parsing_a_build_and_loading_the_api_leaves_unused_features_unloaded() -> None:
    script = (
        "import sys\n"
        "from builder.cli.main import make_parser\n"
        "import builder.cli.build, builder.api\n"
        "make_parser('build').parse_args(['build', '-t', 'x', '.'])\n"
        f"print(sorted(set({UNUSED_BY_A_PLAIN_BUILD + UNUSED_BY_A_BUILD_THAT_HITS!r})"
        " & set(sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]"


def test_the_entry_point_asks_the_warm_builder_before_importing_the_builder(
    tmp_path: Path,
) -> None:
    script = (
        "import os, sys\n"
        f"os.environ['PYBUILD_ROOT'] = {str(tmp_path)!r}\n"
        "from builder.cli.warm_client import try_warm\n"
        "assert try_warm(['build', '.']) is None\n"
        "ours = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('builder', 'cache', 'runtime', 'fstree'))\n"
        "print(ours, 'argparse' in sys.modules, 'dataclasses' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=True
    )
    expected = ["builder", "builder.cli", "builder.cli.warm_client", "builder.cli.warm_wire"]
    expected += ["builder.images", "builder.images.root"]
    assert done.stdout.strip() == f"{sorted(expected)} False False"
