"""Step keys worked out ahead: while a stage's step runs, the keys of the steps after it.

A step's key depends on its parent's key and on its own inputs, never on what an
earlier step made, so the keys of a run of steps can be chained in a background
thread while the sandbox runs (e.g. hashing the context for ``COPY . /app`` while the
``RUN pip install`` before it runs). A chain stops before a step that reads another
stage (its key needs that stage's result) or fetches remote sources (keying them goes
to the network, which only a step that is reached should do); the solver starts a new
chain after such a step. An error computing a key is raised when the step that owns
it is reached, never before, so errors come in step order as they did.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import CancelledError, Executor, Future

from builder.plan.specs import CopySpec
from builder.plan.stages import PlannedStep
from cache.keys import KeyInputs, step_key

# (step, parent key) -> the step's key inputs; may raise (BuildError, CacheError, ...)
KeyInputsOf = Callable[[PlannedStep, str], KeyInputs]


def can_key_ahead(step: PlannedStep) -> bool:
    """Whether the step's key can be computed before the steps above it have run."""
    if step.reads:
        return False
    return not (isinstance(step.spec, CopySpec) and step.spec.remote)


class KeysAhead:
    """The keys one stage's steps will need, computed in ``pool`` ahead of use."""

    def __init__(self, pool: Executor, inputs_of: KeyInputsOf, stop: threading.Event) -> None:
        self._pool = pool
        self._inputs_of = inputs_of
        self._stop = stop
        self._futures: dict[str, Future[KeyInputs]] = {}

    def start(self, steps: Sequence[PlannedStep], parent: str) -> None:
        """Chain the keys of ``steps`` (from the first one) off ``parent``, as far as
        :func:`can_key_ahead` allows; steps already chained are left as they are."""
        chain: list[PlannedStep] = []
        for step in steps:
            if step.spec is None:
                continue  # metadata: no key, the parent passes through
            if step.id in self._futures or not can_key_ahead(step):
                break
            chain.append(step)
        if not chain:
            return
        futures = {step.id: Future[KeyInputs]() for step in chain}
        self._futures.update(futures)
        self._pool.submit(self._run, chain, parent, futures)

    def take(self, step: PlannedStep, parent: str) -> KeyInputs | None:
        """The step's key inputs if they were chained off ``parent``, else None (compute
        them now). Waits for them; raises what computing them raised."""
        future = self._futures.pop(step.id, None)
        if future is None:
            return None
        try:
            inputs = future.result()
        except CancelledError:
            return None
        return inputs if inputs.parent == parent else None

    def _run(
        self, chain: list[PlannedStep], parent: str, futures: dict[str, Future[KeyInputs]]
    ) -> None:
        for i, step in enumerate(chain):
            future = futures[step.id]
            if self._stop.is_set():
                _cancel(futures[s.id] for s in chain[i:])
                return
            try:
                inputs = self._inputs_of(step, parent)
            except BaseException as exc:  # raised again by take, for the step it belongs to
                future.set_exception(exc)
                _cancel(futures[s.id] for s in chain[i + 1 :])
                return
            future.set_result(inputs)
            parent = step_key(inputs)


def _cancel(futures: Iterable[Future[KeyInputs]]) -> None:
    for future in futures:
        future.cancel()
