"""The build checks that need what the planner knows: UndefinedVar in stages built on an
image (its ENV names are defined) and CopyIgnoredFile (a context source .dockerignore
excludes), as BuildKit runs them while dispatching (dockerfile2llb/convert.go dispatch,
validations.go reportUnmatchedVariables and validateCopySourcePath)."""

from __future__ import annotations

from builder.frontend import instructions as ins
from builder.frontend.checks.copy import ContextCopy, copy_ignored_file
from builder.frontend.checks.directive import CheckFacts, findings
from builder.frontend.dockerfile import parse_dockerfile
from builder.plan.planner import ImageResolver, PlanRequest, make_plan
from cache.digest import sha256_bytes
from cache.images import StoredImage
from cache.oci import MEDIA_OCI_CONFIG, ContainerConfig, Descriptor, ImageConfig, Manifest


def _image(env: tuple[str, ...] = (), triggers: tuple[str, ...] = ()) -> ImageResolver:
    def resolve(name: str, instr: ins.From) -> StoredImage:
        config_digest = sha256_bytes(name.encode())
        manifest = Manifest(Descriptor(MEDIA_OCI_CONFIG, config_digest, 2), ())
        config = ImageConfig(config=ContainerConfig(env=env, on_build=triggers))
        return StoredImage(sha256_bytes(b"m" + name.encode()), manifest, config, config_digest)

    return resolve


def _warnings(text: str, resolve: ImageResolver, ignore: tuple[str, ...] = ()) -> tuple[str, ...]:
    df = parse_dockerfile(text, "Dockerfile")
    request = PlanRequest(df, {}, None, "host", ignore_patterns=ignore)
    return make_plan(request, resolve).warnings


def _undefined(text: str, base_env: dict[int, frozenset[str]]) -> set[tuple[str, int]]:
    df = parse_dockerfile(text, "Dockerfile")
    found = findings(df, CheckFacts(base_env=base_env))
    return {(f.message, f.line) for f in found if f.rule == "UndefinedVar"}


def test_undefined_var_counts_the_base_image_env_as_defined() -> None:
    text = "FROM busybox\nWORKDIR $HOME\nLABEL a=$NOPE\n"
    assert _undefined(text, {0: frozenset({"HOME"})}) == {
        ("Usage of undefined variable '$NOPE'", 3)
    }


def test_undefined_var_follows_stages_built_on_a_known_image() -> None:
    text = "FROM busybox AS a\nENV A=1\nFROM a\nWORKDIR /$A/$B\n"
    assert _undefined(text, {0: frozenset()}) == {("Usage of undefined variable '$B'", 4)}


def test_undefined_var_stays_quiet_where_the_base_image_config_is_unknown() -> None:
    assert _undefined("FROM busybox AS a\nFROM a\nWORKDIR $HOME\n", {}) == set()


def test_planned_build_reports_undefined_var_against_the_base_image_env() -> None:
    text = "FROM base\nWORKDIR $HOME\nLABEL a=$NOPE b=$PATH\n"
    warnings = _warnings(text, _image(env=("HOME=/root",)))
    assert warnings == ("Dockerfile:3: UndefinedVar: Usage of undefined variable '$NOPE'",)


def test_planned_build_counts_names_the_base_image_triggers_define() -> None:
    text = "FROM base\nWORKDIR /$FROM_TRIGGER\n"
    assert _warnings(text, _image(triggers=("ENV FROM_TRIGGER=1",))) == ()


def test_copy_ignored_file_names_the_source_with_buildkits_message() -> None:
    found = copy_ignored_file([ContextCopy(3, False, ("secret.txt", "ok.txt"))], ["secret.txt"])
    assert [(f.rule, f.line, f.message) for f in found] == [
        (
            "CopyIgnoredFile",
            3,
            'Attempting to Copy file "secret.txt" that is excluded by .dockerignore',
        )
    ]


def test_copy_ignored_file_says_add_and_matches_parents_and_cleaned_paths() -> None:
    found = copy_ignored_file([ContextCopy(2, True, ("./build//out/x.o",))], ["build"])
    assert [f.message for f in found] == [
        'Attempting to Add file "build/out/x.o" that is excluded by .dockerignore'
    ]


def test_copy_ignored_file_is_quiet_when_the_ignore_file_has_an_exception() -> None:
    assert copy_ignored_file([ContextCopy(2, False, ("a.txt",))], ["*.txt", "!keep.txt"]) == []


def test_copy_of_the_context_root_is_reported_only_when_everything_is_ignored() -> None:
    root = [ContextCopy(2, False, (".",))]
    assert copy_ignored_file(root, ["node_modules"]) == []
    assert [f.rule for f in copy_ignored_file(root, ["*"])] == ["CopyIgnoredFile"]


def test_planned_build_checks_context_copies_but_not_copies_from_a_stage() -> None:
    text = "FROM scratch AS a\nCOPY secret /s\nFROM scratch\nCOPY --from=a /secret /s\n"
    warnings = _warnings(text, _image(), ignore=("secret",))
    assert warnings == (
        'Dockerfile:2: CopyIgnoredFile: Attempting to Copy file "secret" that is excluded '
        "by .dockerignore",
    )


def test_copy_ignored_file_is_checked_only_in_the_stages_being_built() -> None:
    text = "FROM scratch AS unused\nCOPY secret /s\nFROM scratch\nCOPY ok /o\n"
    assert _warnings(text, _image(), ignore=("secret",)) == ()


def test_copy_ignored_file_sees_expanded_sources() -> None:
    text = "FROM scratch\nARG F=secret\nCOPY $F /s\n"
    warnings = _warnings(text, _image(), ignore=("secret",))
    assert [w.split(": ")[1] for w in warnings] == ["CopyIgnoredFile"]
