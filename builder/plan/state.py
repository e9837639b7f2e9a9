"""What a stage knows between two instructions: its config, its ARGs, its shell.

Planning threads one ``StageState`` through a stage's instructions; every handler in
``builder.plan.handlers`` returns a new one (frozen, so a step's view can never change later).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence, Set
from dataclasses import dataclass, field, replace

from builder.plan.argscope import ArgScope
from cache.oci import ContainerConfig

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_SHELL = ("/bin/sh", "-c")


def env_to_dict(env: tuple[str, ...]) -> dict[str, str]:
    """``("K=V", ...)`` to a dict; later entries win, as for a process environment."""
    out: dict[str, str] = {}
    for item in env:
        key, _, value = item.partition("=")
        out[key] = value
    return out


def set_env(env: tuple[str, ...], key: str, value: str) -> tuple[str, ...]:
    """Replace ``key`` in place if present, else append it (docker keeps the order)."""
    entry = f"{key}={value}"
    out = list(env)
    for i, item in enumerate(out):
        if item.partition("=")[0] == key:
            out[i] = entry
            return tuple(out)
    out.append(entry)
    return tuple(out)


@dataclass(frozen=True)
class EnvIndex:
    """An env tuple (``("K=V", ...)``) looked up in O(1): ``scope`` holds each name's
    value and, as its rank, its position in ``env`` (when ``exact``: no name twice)."""

    env: tuple[str, ...]
    scope: ArgScope
    exact: bool

    @staticmethod
    def of(env: tuple[str, ...]) -> EnvIndex:
        scope = ArgScope()
        names: set[str] = set()
        for item in env:
            key, _, value = item.partition("=")
            scope = scope.declare(key, value)
            names.add(key)
        return EnvIndex(env, scope, len(names) == len(env))


class _ScopeView(Mapping[str, str]):
    """An ``ArgScope`` whose names all have values, as a read-only mapping."""

    def __init__(self, scope: ArgScope) -> None:
        self._scope = scope

    def __getitem__(self, key: str) -> str:
        value = self._scope.value(key)
        if value is None:
            raise KeyError(key)
        return value

    def __contains__(self, key: object) -> bool:
        return key in self._scope

    def __iter__(self) -> Iterator[str]:
        return self._scope.first_order()

    def __len__(self) -> int:
        return sum(1 for _ in self._scope.first_order())


@dataclass(frozen=True)
class StageState:
    """The state of a stage after some instructions.

    ``args`` holds the stage's declared ARGs with their values (None: declared, unset):
    an ``ArgScope``, so declaring one costs O(1) however many came before.
    ``cmd_set`` records whether this stage set CMD itself (a new ENTRYPOINT clears an
    inherited CMD but not one set in the same stage).
    """

    config: ContainerConfig
    args: ArgScope = field(default_factory=ArgScope)
    cmd_set: bool = False
    author: str = ""  # the image config's ``author`` (MAINTAINER sets it, as BuildKit does)
    # ARGs given a value after an ENV of the same name: BuildKit's dispatchArg adds the
    # value to the build environment (d.state.AddEnv), so it wins over that ENV in RUN
    # and in expansion until the next ENV of the name; the image config keeps the ENV.
    args_over_env: frozenset[str] = frozenset()
    # ``config.env`` indexed (valid while ``env_index.env is config.env``), carried from
    # state to state so an ENV or a lookup costs O(1), not a pass over every variable.
    env_index: EnvIndex | None = field(default=None, compare=False, repr=False)

    def _env_index(self) -> EnvIndex:
        index = self.env_index
        if index is None or index.env is not self.config.env:
            index = EnvIndex.of(self.config.env)
            object.__setattr__(self, "env_index", index)  # a cache of config.env alone
        return index

    @property
    def env(self) -> Mapping[str, str]:
        """The config's env by name (a later duplicate wins, as in a process env)."""
        return _ScopeView(self._env_index().scope)

    def with_env_values(self, pairs: Sequence[tuple[str, str]]) -> StageState:
        """ENV ``pairs`` set in order: a name already set is replaced in place, a new
        one appended (docker keeps the order); ENV wins again over their ARGs."""
        index = self._env_index()
        names = {k for k, _ in pairs}
        if not index.exact:  # a name twice in the base image's env: the plain way
            env = self.config.env
            for key, value in pairs:
                env = set_env(env, key, value)
            return self.with_env(env, names)
        scope, changes = index.scope, dict[int, str]()
        for key, value in pairs:
            scope = scope.declare(key, value)
            changes[scope.rank(key) or 0] = f"{key}={value}"  # declared: never None
        old = self.config.env
        added = tuple(changes[r] for r in range(len(old), len(old) + len(changes)) if r in changes)
        if len(added) == len(changes):  # only new names: one copy of the tuple, not two
            env = old + added
        else:
            out = list(old)
            for at, entry in changes.items():
                if at < len(old):
                    out[at] = entry
            env = (*out, *added)
        state = self.with_env(env, names)
        return replace(state, env_index=EnvIndex(env, scope, True))

    @property
    def arg_values(self) -> dict[str, str]:
        return {k: v for k, v in self.args.items() if v is not None}

    def expansion_env(self) -> Mapping[str, str]:
        """What ``$VAR`` sees: ARGs, overridden by ENV of the same name declared after
        them; an ARG given a value after the ENV wins (``args_over_env``). A view: a
        lookup costs O(1), not a copy of every ARG."""
        return ExpansionEnv(self.args, self.env, self.args_over_env)

    def shell(self) -> tuple[str, ...]:
        return self.config.shell or DEFAULT_SHELL

    def with_arg(self, name: str, value: str | None) -> StageState:
        over = self.args_over_env
        if value is not None and name not in over and name in self.env:
            over = over | {name}
        return replace(self, args=self.args.declare(name, value), args_over_env=over)

    def with_env(self, env: tuple[str, ...], names: Set[str]) -> StageState:
        """The config's env replaced; ENV of ``names`` wins again over their ARGs."""
        over = self.args_over_env
        if not over.isdisjoint(names):
            over = over - names
        return replace(self, args_over_env=over).with_config(env=env)

    def history_args(self) -> tuple[str, ...]:
        """``NAME=value`` for BuildKit's RUN history prefix: each declared ARG once, at
        its first declaration, with its latest value (an ENV of the same name wins; an
        unset ARG shows as ``NAME=``)."""
        env = self.expansion_env()
        return tuple(f"{k}={env.get(k, self.args.value(k) or '')}" for k in self.args.first_order())

    def with_config(self, **changes: object) -> StageState:
        return replace(self, config=replace(self.config, **changes))  # type: ignore[arg-type]


class ExpansionEnv(Mapping[str, str]):
    """The names ``$VAR`` sees in a stage (``StageState.expansion_env``), looked up
    without copying: an ARG in ``over`` with a value, else ENV, else an ARG's value."""

    def __init__(self, args: ArgScope, env: Mapping[str, str], over: Set[str]) -> None:
        self._args, self._env, self._over = args, env, over

    def __getitem__(self, key: str) -> str:
        if key in self._over and (value := self._args.value(key)) is not None:
            return value
        if key in self._env:
            return self._env[key]
        value = self._args.value(key)
        if value is None:
            raise KeyError(key)
        return value

    def _whole(self) -> dict[str, str]:
        values = {k: v for k, v in self._args.items() if v is not None}
        over = {k: values[k] for k in self._over if k in values}
        return {**values, **self._env, **over}

    def __iter__(self) -> Iterator[str]:
        return iter(self._whole())

    def __len__(self) -> int:
        return len(self._whole())


def proxy_env(build_args: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """The proxy variables a RUN gets from the build args, as BuildKit sets them
    (dockerfile2llb proxyEnvFromBuildArgs, solver/llbsolver/ops/exec.go proxyEnvList):
    a build arg named ``http_proxy`` in any case sets both ``HTTP_PROXY`` and
    ``http_proxy`` (the same for https, ftp, no and all); names are read in sorted
    order, so ``http_proxy`` wins over ``HTTP_PROXY``; an empty value sets nothing."""
    chosen: dict[str, str] = {}
    for key in sorted(build_args):
        if key.lower() in _PROXY_KINDS:
            chosen[key.lower()] = build_args[key]
    out: list[tuple[str, str]] = []
    for kind in _PROXY_KINDS:
        if chosen.get(kind):
            out += [(kind.upper(), chosen[kind]), (kind, chosen[kind])]
    return tuple(out)


_PROXY_KINDS = ("http_proxy", "https_proxy", "ftp_proxy", "no_proxy", "all_proxy")


def run_env(state: StageState, proxies: Sequence[tuple[str, str]]) -> tuple[str, ...]:
    """The environment of a RUN: ENV, plus ARGs not shadowed by ENV, then the proxy
    variables, which replace a variable of the same name (BuildKit appends them last)."""
    values = state.arg_values
    env = [
        f"{k}={values[k]}" if k in state.args_over_env and k in values else e
        for e in state.config.env
        for k in (e.partition("=")[0],)
    ]
    names = set(state.env)
    for key, value in values.items():
        if key not in names:
            env.append(f"{key}={value}")
            names.add(key)
    for key, value in proxies:
        env = [e for e in env if e.partition("=")[0] != key]
        env.append(f"{key}={value}")
    return tuple(env)
