"""BuildKit's build checks about variables: ARGs in FROM, ``--platform`` values, secret-
looking ARG/ENV names and ``$VAR`` references nothing defines.

UndefinedVar only looks where every definition is known: stages rooted in ``scratch`` or
in an image whose config the planner read (directly or through earlier stages), whose
ENV names count as defined. Elsewhere the base image's environment is unknown.
"""

from __future__ import annotations

import re
from collections import ChainMap
from collections.abc import Collection, Mapping

from builder.errors import DockerfileError
from builder.frontend import instructions as ins
from builder.frontend.builtin_args import host_platform_args
from builder.frontend.checks.rules import Finding, Rule
from builder.frontend.expand import expand_word_tracked
from builder.frontend.stages import stage_tree
from cache.distribution.errors import InvalidReference
from cache.distribution.reference import parse_reference

# Name parts BuildKit treats as secret-looking (whole ``_``-separated parts, any case),
# unless a part says the value is public.
_SECRET_PART = re.compile(
    r"(?i)(?:_|^)(?:apikey|auth|credential|credentials|key|password|pword|passwd|secret|token)"
    r"(?:_|$)"
)
_PUBLIC_PART = re.compile(r"(?i)(?:_|^)public(?:_|$)")
# ``$NAME`` and ``${NAME}``: references with a modifier (``${NAME:-x}``) say what to do
# when NAME is unset, so they are never reported.
_PLAIN_REF = re.compile(r"\$(?:([A-Za-z_][A-Za-z0-9_]*)|\{([A-Za-z_][A-Za-z0-9_]*)\})")
_SCRATCH_PATH = "PATH"  # BuildKit gives a stage without PATH its default one


def _unmatched(word: str, defined: Mapping[str, str], escape: str) -> list[str]:
    """Names ``word`` references plainly that ``defined`` lacks, in order of appearance."""
    try:
        unmatched = expand_word_tracked(word, defined, escape=escape).unmatched
    except DockerfileError:
        return []  # the planner reports malformed words with their location
    plain = [a or b for a, b in _PLAIN_REF.findall(word)]
    return list(dict.fromkeys(n for n in plain if n in unmatched))


def undefined_arg_in_from(df: ins.Dockerfile) -> list[Finding]:
    defined = {n: "x" for a in df.global_args for n, _ in a.args} | dict(host_platform_args())
    found: list[Finding] = []
    for stage in df.stages:
        words = [stage.base.image, stage.base.platform or ""]
        for name in dict.fromkeys(n for w in words for n in _unmatched(w, defined, df.escape)):
            message = f"FROM argument '{name}' is not declared by an ARG before the first FROM"
            found.append(Finding("UndefinedArgInFrom", stage.base.location.line, message))
    return found


def _valid_base(image: str) -> bool:
    if not image:
        return False
    if image == "scratch" or "@" in image:
        return True  # digests are checked when the image is resolved
    try:
        parse_reference(image)
    except InvalidReference:
        return False
    return True


def invalid_default_arg_in_from(df: ins.Dockerfile) -> list[Finding]:
    defaults: dict[str, str] = dict(host_platform_args())
    for arg in df.global_args:
        for name, default in arg.args:
            if default is not None:
                try:
                    defaults[name] = expand_word_tracked(default, defaults, escape=df.escape).text
                except DockerfileError:
                    continue
            else:
                defaults.pop(name, None)
    found: list[Finding] = []
    for stage in df.stages:
        image = stage.base.image
        if "$" not in image:
            continue
        try:
            expanded = expand_word_tracked(image, defaults, escape=df.escape).text
        except DockerfileError:
            continue
        if not _valid_base(expanded):
            message = (
                f"ARG defaults make the base image name '{image}' empty or invalid "
                f"('{expanded}') unless --build-arg supplies a value"
            )
            found.append(Finding("InvalidDefaultArgInFrom", stage.base.location.line, message))
    return found


def platform_flag_rules(df: ins.Dockerfile) -> list[Finding]:
    found: list[Finding] = []
    for stage in df.stages:
        platform, line = stage.base.platform, stage.base.location.line
        if platform is None:
            continue
        if platform in ("$TARGETPLATFORM", "${TARGETPLATFORM}"):
            message = (
                "FROM --platform=$TARGETPLATFORM is redundant: the target platform is the default"
            )
            found.append(Finding("RedundantTargetPlatform", line, message))
        elif "$" not in platform:
            # A stage named after its platform (``AS build-arm64``) is meant to be fixed.
            parts = [p for p in platform.lower().split("/") if p]
            if stage.name and any(p in stage.name for p in parts):
                continue
            message = (
                f"FROM --platform should not be the constant '{platform}'; "
                "use a build ARG such as $BUILDPLATFORM"
            )
            found.append(Finding("FromPlatformFlagConstDisallowed", line, message))
    return found


def _is_secret_name(name: str) -> bool:
    return bool(_SECRET_PART.search(name)) and not _PUBLIC_PART.search(name)


def secrets_used_in_arg_or_env(df: ins.Dockerfile) -> list[Finding]:
    instructions: list[ins.Instruction] = list(df.global_args)
    for stage in df.stages:
        instructions.extend(stage.instructions)
    found: list[Finding] = []
    for i in instructions:
        if isinstance(i, ins.Arg):
            names, keyword = [n for n, _ in i.args], "ARG"
        elif isinstance(i, ins.Env):
            names, keyword = [k for k, _ in i.pairs], "ENV"
        else:
            continue
        for name in names:
            if _is_secret_name(name):
                message = (
                    f'{keyword} "{name}" looks like sensitive data, which ARG and ENV keep in '
                    "the image; use a secret mount (RUN --mount=type=secret)"
                )
                found.append(Finding("SecretsUsedInArgOrEnv", i.location.line, message))
    return found


def _expanded_words(i: ins.Instruction) -> tuple[list[str], list[str]]:
    """(words the builder expands, names the instruction defines afterwards)."""
    if isinstance(i, ins.Env):
        return [v for _, v in i.pairs], [k for k, _ in i.pairs]
    if isinstance(i, ins.Arg):
        return [d for _, d in i.args if d is not None], [n for n, _ in i.args]
    if isinstance(i, ins.Label):
        return [w for pair in i.pairs for w in pair], []
    if isinstance(i, ins.Copy):
        flags = [f for f in (i.chown, i.chmod) if f is not None]
        return [*i.sources, i.dest, *flags], []
    if isinstance(i, ins.Workdir):
        return [i.path], []
    if isinstance(i, ins.User):
        return [i.user], []
    if isinstance(i, ins.StopSignal):
        return [i.signal], []
    if isinstance(i, ins.Expose):
        return list(i.ports), []
    if isinstance(i, ins.Volume):
        return list(i.paths), []
    return [], []  # RUN/CMD/ENTRYPOINT/SHELL: the shell expands them, at run time


def _env_names(stage: ins.Stage) -> list[str]:
    return [k for i in stage.instructions if isinstance(i, ins.Env) for k, _ in i.pairs]


def _base_names(stage: ins.Stage, base_env: Mapping[int, Collection[str]]) -> set[str] | None:
    """ENV names a stage based on an image starts with; None when they are unknown."""
    if stage.base.image.lower() == "scratch":
        return {_SCRATCH_PATH}
    known = base_env.get(stage.index)
    return None if known is None else {_SCRATCH_PATH, *known}


def _roots(parents: tuple[int | None, ...]) -> list[int]:
    return [i for i, parent in enumerate(parents) if parent is None]


def undefined_var(
    df: ins.Dockerfile, base_env: Mapping[int, Collection[str]] | None = None
) -> list[Finding]:
    """``$NAME`` that no ENV or ARG before it, in the stage or the stages it derives from,
    and not its base image's ENV, defines. ``base_env``: the ENV names of the base image
    of each stage based on an image whose config is known (the planner's); stages rooted
    in another image are not checked. One walk over the stage forest keeps the names
    the ancestors define in ``defined``, each added on entering its stage and removed
    on leaving it, so the cost is linear in the Dockerfile's size."""
    tree = stage_tree(df)
    known = {i: _base_names(df.stages[i], base_env or {}) for i in _roots(tree.parents)}
    roots = tree.root()
    defined: dict[str, str] = {}
    added: dict[int, list[str]] = {}
    found: list[Finding] = []
    for index, entering in tree.walk():
        if known.get(roots[index]) is None:
            continue  # the base image's environment is unknown
        if not entering:
            for name in added.pop(index):
                del defined[name]
            continue
        stage = df.stages[index]
        fresh = [n for n in dict.fromkeys(known.get(index) or ()) if n not in defined]
        defined.update(dict.fromkeys(fresh, "x"))
        found += _undefined_in_stage(stage, ChainMap({}, defined), df.escape)
        passed = [n for n in dict.fromkeys(_env_names(stage)) if n not in defined]
        defined.update(dict.fromkeys(passed, "x"))
        added[index] = fresh + passed
    return found


def _undefined_in_stage(
    stage: ins.Stage, defined: ChainMap[str, str], escape: str
) -> list[Finding]:
    """Findings in one stage; what it defines goes into ``defined``'s first map only."""
    found: list[Finding] = []
    for i in stage.instructions:
        words, defines = _expanded_words(i)
        names = dict.fromkeys(n for w in words for n in _unmatched(w, defined, escape))
        for name in names:
            message = f"Usage of undefined variable '${name}'"
            found.append(Finding("UndefinedVar", i.location.line, message))
        defined.maps[0].update(dict.fromkeys(defines, "x"))
    return found


VAR_RULES: tuple[Rule, ...] = (
    undefined_arg_in_from,
    invalid_default_arg_in_from,
    platform_flag_rules,
    secrets_used_in_arg_or_env,
)
