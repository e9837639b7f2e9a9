"""Each BuildKit build check pybuild runs: one Dockerfile where it fires (rule, line) and
one where it must stay quiet; plus what fires on the shipped fixtures and parity corpus."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from builder.errors import DockerfileError
from builder.frontend.checks.directive import check_warnings, findings
from builder.frontend.dockerfile import parse_dockerfile
from builder.frontend.instructions import Dockerfile

ROOT = Path(__file__).resolve().parents[2]


def _fired(text: str) -> set[tuple[str, int]]:
    return {(f.rule, f.line) for f in findings(parse_dockerfile(text, "Dockerfile"))}


def _rules(text: str) -> set[str]:
    return {rule for rule, _ in _fired(text)}


# (rule, Dockerfile where it fires, the line it fires on, a similar one where it does not)
CASES = [
    ("StageNameCasing", "FROM busybox AS Build\n", 1, "FROM busybox AS build\n"),
    ("FromAsCasing", "FROM busybox as build\n", 1, "from busybox as build\n"),
    (
        "ConsistentInstructionCasing",
        "FROM busybox\nRUN true\nrun true\n",
        3,
        "from busybox\nrun true\nrun true\n",
    ),
    ("ReservedStageName", "FROM busybox AS scratch\n", 1, "FROM busybox AS scratchy\n"),
    ("ReservedStageName", "FROM busybox AS context\n", 1, "FROM scratch\n"),
    ("JSONArgsRecommended", "FROM busybox\nCMD echo hi\n", 2, 'FROM busybox\nCMD ["echo"]\n'),
    (
        "JSONArgsRecommended",
        "FROM busybox\nENTRYPOINT top -b\n",
        2,
        'FROM busybox\nSHELL ["/bin/sh", "-c"]\nENTRYPOINT top -b\n',
    ),
    (
        "MaintainerDeprecated",
        "FROM busybox\nMAINTAINER me\n",
        2,
        "FROM busybox\nLABEL maintainer=me\n",
    ),
    (
        "WorkdirRelativePath",
        "FROM busybox\nWORKDIR app\nWORKDIR sub\n",
        2,
        "FROM busybox\nWORKDIR /app\nWORKDIR sub\n",
    ),
    ("LegacyKeyValueFormat", "FROM busybox\nENV A b c\n", 2, "FROM busybox\nENV A='b c'\n"),
    ("LegacyKeyValueFormat", "FROM busybox\nLABEL a b\n", 2, "FROM busybox\nLABEL a=b\n"),
    (
        "LegacyKeyValueFormat",
        'FROM busybox\nLABEL "a key" b\n',
        2,
        'FROM busybox\nLABEL "a key"=b\n',
    ),
    ("UndefinedArgInFrom", "FROM busybox:$TAG\n", 1, "ARG TAG=latest\nFROM busybox:$TAG\n"),
    (
        "UndefinedArgInFrom",
        "FROM --platform=$BUILDPLATFRM busybox\n",
        1,
        "FROM --platform=$BUILDPLATFORM busybox\n",
    ),
    (
        "InvalidDefaultArgInFrom",
        "ARG TAG\nFROM busybox:${TAG}\n",
        2,
        "ARG TAG=1.36\nFROM busybox:${TAG}\n",
    ),
    ("InvalidDefaultArgInFrom", "ARG IMG\nFROM $IMG\n", 2, "ARG IMG=busybox\nFROM $IMG\n"),
    (
        "RedundantTargetPlatform",
        "FROM --platform=$TARGETPLATFORM busybox\n",
        1,
        "FROM --platform=$BUILDPLATFORM busybox\n",
    ),
    (
        "FromPlatformFlagConstDisallowed",
        "FROM --platform=linux/amd64 busybox AS build\n",
        1,
        "FROM --platform=linux/amd64 busybox AS build-amd64\n",
    ),
    ("SecretsUsedInArgOrEnv", "FROM busybox\nARG API_TOKEN\n", 2, "FROM busybox\nARG TOKENS\n"),
    (
        "SecretsUsedInArgOrEnv",
        "ARG db_password=x\nFROM busybox\nENV AWS_SECRET_ACCESS_KEY=y\n",
        3,
        "FROM busybox\nENV PUBLIC_KEY=y KEYBOARD=us\n",
    ),
    (
        "ExposeProtoCasing",
        "FROM busybox\nEXPOSE 80/TCP\n",
        2,
        "FROM busybox\nEXPOSE 80/tcp 53/udp\n",
    ),
    (
        "ExposeInvalidFormat",
        "FROM busybox\nEXPOSE 127.0.0.1:80:80\n",
        2,
        "FROM busybox\nEXPOSE 8000-8010\n",
    ),
    (
        "MultipleInstructionsDisallowed",
        'FROM busybox\nCMD ["a"]\nCMD ["b"]\n',
        2,
        'FROM busybox AS one\nCMD ["a"]\nFROM one\nCMD ["b"]\n',
    ),
    (
        "MultipleInstructionsDisallowed",
        "FROM busybox\nHEALTHCHECK NONE\nHEALTHCHECK CMD true\n",
        2,
        "FROM busybox\nHEALTHCHECK NONE\n",
    ),
    ("UndefinedVar", "FROM scratch\nCOPY $SRC /\n", 2, "FROM scratch\nARG SRC\nCOPY $SRC /\n"),
    (
        "UndefinedVar",
        "FROM scratch AS a\nENV A=1\nFROM a\nWORKDIR /$B\n",
        4,
        "FROM scratch AS a\nENV B=1\nFROM a\nWORKDIR /$B\n",
    ),
]


@pytest.mark.parametrize(("rule", "bad", "line", "good"), CASES)
def test_rule_fires_at_its_line_and_stays_quiet_on_the_fixed_form(
    rule: str, bad: str, line: int, good: str
) -> None:
    assert (rule, line) in _fired(bad)
    assert rule not in _rules(good)


def test_undefined_var_is_not_reported_where_the_base_image_env_is_unknown() -> None:
    # busybox's environment might define HOME; only scratch-rooted stages are knowable.
    assert "UndefinedVar" not in _rules("FROM busybox\nWORKDIR $HOME\n")


def test_undefined_var_ignores_defaults_escapes_and_shell_expanded_instructions() -> None:
    text = "FROM scratch\nWORKDIR ${X:-/w}\nLABEL a=\\$Y b='$Z'\nRUN echo $Q\nCMD [\"$R\"]\n"
    assert "UndefinedVar" not in _rules(text)


def test_undefined_var_platform_args_need_an_arg_in_the_stage() -> None:
    assert ("UndefinedVar", 2) in _fired("FROM scratch\nCOPY a-$TARGETARCH /\n")
    assert "UndefinedVar" not in _rules("FROM scratch\nARG TARGETARCH\nCOPY a-$TARGETARCH /\n")


def test_env_values_see_only_earlier_instructions() -> None:
    # ENV a=1 b=$a: $a is looked up before this ENV defines it, as in BuildKit.
    assert ("UndefinedVar", 2) in _fired("FROM scratch\nENV a=1 b=$a\n")
    assert "UndefinedVar" not in _rules("FROM scratch\nENV a=1\nENV b=$a\n")


def test_json_args_recommended_respects_a_shell_set_in_a_parent_stage() -> None:
    text = 'FROM busybox AS base\nSHELL ["/bin/ash", "-c"]\nFROM base\nCMD echo hi\n'
    assert "JSONArgsRecommended" not in _rules(text)


def test_casing_majority_is_lowercase_when_most_keywords_are() -> None:
    assert _fired("from busybox\nrun true\nRUN true\n") & {("ConsistentInstructionCasing", 3)}


def test_warnings_carry_file_line_and_rule_in_line_order() -> None:
    df = parse_dockerfile("FROM busybox AS Build\nMAINTAINER me\n", "ctx/Dockerfile")
    assert check_warnings(df) == (
        "ctx/Dockerfile:1: StageNameCasing: Stage name 'Build' should be lowercase",
        "ctx/Dockerfile:2: MaintainerDeprecated: MAINTAINER is deprecated; use LABEL "
        "org.opencontainers.image.authors=...",
    )


def test_skip_silences_only_the_named_rules() -> None:
    body = "FROM busybox AS Build\nMAINTAINER me\nCMD echo\n"
    df = parse_dockerfile("# check=skip=StageNameCasing,MaintainerDeprecated\n" + body, "D")
    (warning,) = check_warnings(df)
    assert "JSONArgsRecommended" in warning
    assert check_warnings(parse_dockerfile("# check=skip=all\n" + body, "D")) == ()


def test_error_true_names_every_firing_rule_and_the_first_line() -> None:
    body = "# check=error=true\nFROM busybox AS Build\nMAINTAINER me\n"
    with pytest.raises(DockerfileError) as info:
        check_warnings(parse_dockerfile(body, "D"))
    assert info.value.line == 2
    assert "lint violation found for rules: StageNameCasing, MaintainerDeprecated" in str(
        info.value
    )


def test_clean_dockerfile_has_no_findings_even_with_error_true() -> None:
    body = '# check=error=true\nFROM busybox AS build\nWORKDIR /app\nENV A=1\nCMD ["sh"]\n'
    assert check_warnings(parse_dockerfile(body, "D")) == ()


# What fires on the shipped Dockerfiles, each checked by hand against the rule's meaning.
EXPECTED_CORPUS = {
    ("checks_build_arg_overrides_directive", "JSONArgsRecommended", 3),  # CMD echo hi
    ("checks_experimental_accepted", "JSONArgsRecommended", 3),  # CMD echo hi
    ("checks_only_built_stages", "JSONArgsRecommended", 2),
    ("checks_skip_comment_above", "JSONArgsRecommended", 3),
    ("checks_skip_comment_above", "JSONArgsRecommended", 4),  # in a stage not built
    ("checks_only_built_stages", "WorkdirRelativePath", 5),  # WORKDIR rel
    ("cmd_shell_form_env", "JSONArgsRecommended", 3),  # CMD echo ... (shell form)
    ("cmd_then_entrypoint", "MultipleInstructionsDisallowed", 2),  # first of two CMDs
    ("cmd_then_entrypoint", "JSONArgsRecommended", 3),  # ENTRYPOINT shell form
    ("cmd_then_entrypoint", "JSONArgsRecommended", 4),  # CMD shell form
    ("entrypoint_invalid_json_is_shell_form", "JSONArgsRecommended", 2),  # []random string
    ("env_forms", "LegacyKeyValueFormat", 3),  # ENV key value
    ("expose_words_and_mappings", "ExposeInvalidFormat", 5),  # EXPOSE 127.0.0.1:8080:80
    ("healthcheck_none", "MultipleInstructionsDisallowed", 2),  # HEALTHCHECK then NONE
    ("maintainer", "MaintainerDeprecated", 2),
    ("scratch_stage_copy", "WorkdirRelativePath", 5),  # first WORKDIR is relative
    ("stage_name_case", "StageNameCasing", 1),  # AS Builder
    ("stage_name_case", "StageNameCasing", 3),  # AS Next
    ("workdir_chain", "WorkdirRelativePath", 2),  # only the first relative WORKDIR
}


def _parse_or_expected_failure(path: Path) -> Dockerfile | None:
    """The parsed Dockerfile, or None for a parity case that expects the build to fail."""
    try:
        # Read as a build reads it: invalid UTF-8 becomes U+FFFD.
        text = path.read_bytes().decode("utf-8", errors="replace")
        return parse_dockerfile(text, str(path))
    except DockerfileError:
        expect = path.parent / "expect.json"
        assert expect.is_file() and "fails" in json.loads(expect.read_text()), path
        return None


def test_fixtures_and_parity_corpus_fire_only_the_expected_rules() -> None:
    files = sorted(ROOT.glob("fixtures/*/Dockerfile")) + sorted(
        ROOT.glob("tests/parity/cases/*/Dockerfile")
    )
    assert len(files) > 10
    parsed = [(path, _parse_or_expected_failure(path)) for path in files]
    fired = {
        (path.parent.name, f.rule, f.line)
        for path, df in parsed
        if df is not None
        for f in findings(df)
        if f.rule != "NoEmptyContinuation"
    }
    assert fired == EXPECTED_CORPUS
