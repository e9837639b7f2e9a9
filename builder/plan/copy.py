"""COPY and ADD at plan time: expand words, check flags, make the CopySpec.

Expanded (BuildKit): sources, destination, ``--from``, ``--chown``, ``--chmod``,
``--exclude``, and heredoc bodies whose delimiter was not quoted (quotes in the body are
literal, as BuildKit's ExpandRaw does). ``--from`` is taken as written: a value the
lexer would change is refused, as BuildKit does. ``--link`` gives the same filesystem as a plain
copy here; ``--from`` names a stage, a stage index, or else a local image.
"""

from __future__ import annotations

import json
import posixpath

from builder.errors import BuildError
from builder.frontend import instructions as ins
from builder.frontend.expand import ShellLexer
from builder.plan.chmod import Chmod, parse_chmod
from builder.plan.handler_base import Outcome, PlanContext, expand_in, fail
from builder.plan.remote import RemoteSource, check_checksum, redact, remote_source
from builder.plan.specs import CopySpec
from builder.plan.state import StageState


def _chmod(instr: ins.Copy, value: str | None) -> Chmod | None:
    if value is None:
        return None
    try:
        return parse_chmod(value)
    except BuildError as exc:
        raise exc.located(instr.location.file, instr.location.line) from None


def _dest(state: StageState, dest: str) -> str:
    if not dest.startswith("/"):
        base = state.config.working_dir or "/"
        trailing = dest.endswith("/") or dest in (".", "./")
        dest = posixpath.join(base, dest)
        dest = posixpath.normpath(dest) + ("/" if trailing else "")
    return dest


def _heredocs(state: StageState, instr: ins.Copy, ctx: PlanContext) -> tuple[tuple[str, str], ...]:
    # BuildKit ExpandRaw (dockerfile2llb/convert.go dispatch): a fresh lexer with the
    # escape "\\" and SkipProcessQuotes, so quotes in the body are literal text and
    # `Hello '${name}'!` still expands; only a quoted delimiter turns expansion off.
    lexer = ShellLexer(skip_quotes=True)
    out = []
    for doc in instr.heredocs:
        content = doc.content
        if doc.expand:
            try:
                content = lexer.process(content, state.expansion_env()).text
            except BuildError as exc:
                raise exc.located(instr.location.file, instr.location.line) from None
        out.append((doc.name, content))
    return tuple(out)


def _add_sources(
    instr: ins.Add, sources: tuple[str, ...], checksum: str | None
) -> tuple[tuple[str, ...], tuple[RemoteSource, ...]]:
    """Split ADD sources into context paths and URL/git sources (``builder.plan.remote``)."""
    remotes = [remote_source(s, checksum, instr.keep_git_dir) for s in sources]
    found = tuple(r for r in remotes if r is not None)
    if checksum is not None:
        if len(sources) != 1 or not found or found[0].git is not None:
            raise fail(
                instr,
                "--checksum applies to a single http(s) URL source",
                "ADD --checksum=sha256:<hex> https://host/file /dest",
            )
        try:
            check_checksum(checksum)
        except BuildError as exc:
            raise exc.located(instr.location.file, instr.location.line) from None
    local = tuple(s for s, r in zip(sources, remotes, strict=True) if r is None)
    return local, found


def _from_ref(instr: ins.Copy, ctx: PlanContext) -> str | None:
    """``--from`` as written: BuildKit (dockerfile2llb/convert.go toCommand) lexes it with
    an empty environment and refuses any value that this changes."""
    if instr.from_ is None:
        return None
    try:
        unchanged = ShellLexer(escape=ctx.escape).process(instr.from_, {}).text == instr.from_
    except BuildError as exc:
        raise exc.located(instr.location.file, instr.location.line) from None
    if not unchanged:
        raise fail(
            instr,
            "variable expansion is not supported for --from, define a new stage with FROM "
            "using ARG from global scope as a workaround",
            f"ARG the value before the first FROM, add `FROM {instr.from_} AS src` and "
            "use --from=src",
        )
    return instr.from_


def handle_copy(state: StageState, instr: ins.Copy, ctx: PlanContext) -> Outcome:
    """COPY/ADD: the spec and its history text (``COPY [flags] src... dest # buildkit``)."""
    is_add = isinstance(instr, ins.Add)
    name = "ADD" if is_add else "COPY"
    sources = tuple(expand_in(s, state, ctx, instr) for s in instr.sources)
    checksum: str | None = None
    remote: tuple[RemoteSource, ...] = ()
    local = sources
    if isinstance(instr, ins.Add):
        checksum = expand_in(instr.checksum, state, ctx, instr) if instr.checksum else None
        local, remote = _add_sources(instr, sources, checksum)
    written_dest = expand_in(instr.dest, state, ctx, instr)
    dest = _dest(state, written_dest)
    from_ref = _from_ref(instr, ctx)
    from_stage = stage_index(from_ref, ctx, instr) if from_ref is not None else None
    chown = expand_in(instr.chown, state, ctx, instr) if instr.chown else None
    chmod_text = expand_in(instr.chmod, state, ctx, instr) if instr.chmod else None
    unpack = instr.unpack if isinstance(instr, ins.Add) else False
    heredocs = _heredocs(state, instr, ctx)
    spec = CopySpec(
        sources=local,
        dest=dest,
        from_stage=from_stage,
        chown=chown,
        chmod=_chmod(instr, chmod_text),
        excludes=tuple(expand_in(e, state, ctx, instr) for e in instr.excludes),
        heredocs=heredocs,
        parents=instr.parents,
        unpack=is_add if unpack is None else unpack,
        remote=remote,
    )
    shown_flags: list[tuple[str, str | None]] = [
        ("from", from_ref),
        ("chown", chown),
        ("chmod", chmod_text),
        ("checksum", checksum),
    ]
    flags = "".join(f"--{k}={v} " for k, v in shown_flags if v)
    flags += "".join(f"--exclude={e} " for e in spec.excludes)
    flags += "--link " * instr.link + "--parents " * instr.parents
    if isinstance(instr, ins.Add) and instr.unpack is not None:
        flags += f"--unpack={str(instr.unpack).lower()} "
    if isinstance(instr, ins.Add) and instr.keep_git_dir and remote:
        flags += "--keep-git-dir=true "
    shown = [redact(s) for s in sources]  # no password in the history or the index
    history_flags = ["--parents"] * instr.parents
    history_flags += [f"--{k}={v}" for k, v in (("chown", chown), ("chmod", chmod_text)) if v]
    created_by = _history_text(name, history_flags, shown, heredocs, written_dest)
    key_text = f"{name} {json.dumps([flags, *shown, [list(h) for h in heredocs], dest])}"
    return Outcome(state, spec, created_by, key_text)


def _history_text(
    name: str,
    flags: list[str],
    sources: list[str],
    heredocs: tuple[tuple[str, str], ...],
    dest: str,
) -> str:
    """The history ``created_by`` BuildKit writes for COPY/ADD (dockerfile2llb
    dispatchCopy, v0.13+): only ``--parents``, ``--chown`` and ``--chmod`` among the
    flags, then the sources, heredocs as ``<<name``, and the destination as written
    (not resolved against WORKDIR)."""
    words = [name, *flags, *sources, *(f"<<{n}" for n, _ in heredocs), dest]
    return " ".join(words) + " # buildkit"


def stage_index(ref: str, ctx: PlanContext, instr: ins.Instruction) -> int:
    """A ``--from`` value as a stage index: a previous stage (name or number) or an image."""
    if ref.isascii() and ref.isdigit():
        index = int(ref) if len(ref) < 10 else ctx.current_stage  # int() stops at 4300 digits
        if index >= ctx.current_stage:
            raise fail(instr, f"--from={ref}: stage {index} is not a previous stage")
        return index
    index_by_name = ctx.stage_names.get(ref.lower())
    if index_by_name is not None and index_by_name < ctx.current_stage:
        return index_by_name
    if index_by_name is None and ctx.image_stage is not None:
        return ctx.image_stage(ref, instr)
    raise fail(
        instr,
        f"--from={ref}: no previous stage named {ref!r}",
        "COPY --from takes the name (FROM ... AS name) or index of an earlier stage, "
        "or the name of a local image",
    )
