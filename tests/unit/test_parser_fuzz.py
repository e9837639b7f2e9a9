"""Property: mutated real Dockerfiles never crash the front end.

Seeds are every Dockerfile of the BuildKit parser corpus (positive and negative), the
repository's fixtures and a few hand-written ones; each example applies several
mutations (insert, delete, duplicate or swap characters and lines; insert backslashes,
heredoc markers, quotes, brackets, flags, expansions). The text then goes through the
parser, the instruction layer and the planner (word expansion, flag values, stage
references) with a fake base image. The only exception allowed is our ``BuildError``
(``DockerfileError`` included), and it always names the Dockerfile and a line in it.
"""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from builder.errors import BuildError
from builder.frontend import instructions as ins
from builder.frontend.dockerfile import parse_dockerfile
from builder.plan.planner import ImageResolver, PlanRequest, make_plan
from cache.digest import sha256_bytes
from cache.images import StoredImage
from cache.oci import MEDIA_OCI_CONFIG, ContainerConfig, Descriptor, ImageConfig, Manifest

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO.parent / "shared" / "conformance" / "buildkit-dockerfile-parser"
FILE = "fuzz/Dockerfile"


def _seeds() -> list[str]:
    paths = sorted(CORPUS.glob("testfiles*/*/Dockerfile")) + sorted(
        (REPO / "fixtures").glob("*/Dockerfile")
    )
    seeds = [p.read_bytes().decode("utf-8", "replace") for p in paths]
    return [
        *seeds,
        "FROM busybox AS b\nARG V=${X:-1}\nRUN <<EOF bash\necho $V\nEOF\n"
        "COPY --from=b --chmod=u+x <<-X /x\n\tdata\n\tX\n",
        '# escape=`\nFROM x\nENV A=1 B="2 3" `\n  C=4\nCMD ["a"]\nADD https://h/r.git#m:d /d\n',
        "ARG B=img\nFROM ${B}\nHEALTHCHECK --interval=5s CMD true\nONBUILD RUN a\n"
        "RUN --mount=type=bind,from=0,target=/m --network=none ls\nEXPOSE 80/tcp 1-3\n"
        'USER ${U:?unset}\nWORKDIR ${W/a/b}\nSTOPSIGNAL 9\nVOLUME ["/v"]\nSHELL ["sh"]\n',
    ]


SEEDS = _seeds()
PIECES = [
    "\\", "\\\n", "`", "\n", "\r\n", '"', "'", "[", "]", "{", "}", "${", "$", "=", "#",
    "<<EOF", "<<-EOF", "<<'EOF'", '<<"E"', "EOF", "\tEOF", "0<<X", "--", "--from=",
    "--mount=", "type=cache", "--chmod=", "--checksum=", "--keep-git-dir", "--link",
    "--platform=", "AS ", "\x00", "\ufeff", "é", ",", ":", "${A:-", "${A#", "${A/",
    ' ["a", ', "[]", "# escape=\\", "# escape=`", "# syntax=x", "FROM ", "RUN ", "ONBUILD ",
    "git@h:r.git", "http://", "*", "?",
]  # fmt: skip


@st.composite
def _mutation(draw: st.DrawFn, text: str) -> str:
    kind = draw(st.sampled_from(["insert", "delete", "duplicate", "line", "swap"]))
    pos = draw(st.integers(0, len(text)))
    if kind == "insert":
        piece = draw(st.sampled_from(PIECES) | st.text(max_size=3))
        return text[:pos] + piece + text[pos:]
    if kind == "delete":
        return text[:pos] + text[pos + draw(st.integers(1, 8)) :]
    if kind == "duplicate":
        end = min(len(text), pos + draw(st.integers(1, 40)))
        return text[:end] + text[pos:end] + text[end:]
    lines = text.split("\n")
    i = draw(st.integers(0, len(lines) - 1))
    j = draw(st.integers(0, len(lines) - 1))
    if kind == "line":
        action = draw(st.sampled_from(["drop", "copy"]))
        if action == "drop":
            del lines[i]
        else:
            lines.insert(j, lines[i])
    else:
        lines[i], lines[j] = lines[j], lines[i]
    return "\n".join(lines)


@st.composite
def mutated(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(1, 5))):
        text = draw(_mutation(text))
    return text


def _image(triggers: tuple[str, ...] = ()) -> ImageResolver:
    """A resolver giving every base name an empty image with these ONBUILD triggers."""

    def resolve(name: str, instr: ins.From) -> StoredImage:
        config_digest = sha256_bytes(name.encode())
        manifest = Manifest(Descriptor(MEDIA_OCI_CONFIG, config_digest, 2), ())
        config = ImageConfig(config=ContainerConfig(on_build=triggers))
        return StoredImage(sha256_bytes(b"m" + name.encode()), manifest, config, config_digest)

    return resolve


def check(text: str, triggers: tuple[str, ...] = ()) -> None:
    """Parse and plan ``text``; any failure must be a BuildError located in it."""
    last_line = text.count("\n") + 1
    try:
        df = parse_dockerfile(text, FILE)
        make_plan(PlanRequest(df, {"X": "y"}, None, "none"), _image(triggers))
    except BuildError as err:
        assert err.file == FILE, f"{err!r} has no file"
        assert err.line is not None, f"{err!r} has no line"
        assert 1 <= err.line <= last_line, f"line {err.line} outside 1..{last_line}: {err}"


def test_corpus_seeds_are_present() -> None:
    assert len(SEEDS) > 30, f"conformance corpus missing under {CORPUS}"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
@example("FROM a\nRUN <<EOF\n")
@example("FROM a\nADD --checksum=sha256:x https://h/f /f\n")
def test_mutated_dockerfiles_plan_or_fail_with_our_error_and_a_line(text: str) -> None:
    check(text)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(PIECES) | st.text(max_size=6), max_size=30).map("".join))
def test_random_piece_soup_plans_or_fails_with_our_error_and_a_line(text: str) -> None:
    check("FROM a\n" + text)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_onbuild_triggers_fail_with_our_error_at_the_from_line(text: str) -> None:
    # An image's ONBUILD triggers are Dockerfile lines too, run when a child starts FROM it.
    triggers = tuple(line for line in text.split("\n") if line.strip())[:6]
    check("FROM base\nRUN true\n", triggers)
