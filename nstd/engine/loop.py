"""The iteration loop of one solver run, and the job's state that outlives it.

:class:`Run` holds what a job accumulates over its scales and tiles (history, counts, the
ETA's rate, timings, notes, the precisions used) and runs a solver: progress, previews,
checkpoints and stop requests happen here, between iterations.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from nstd.engine import plan
from nstd.engine.checkpoint import Checkpoint, TileState
from nstd.engine.hooks import Hooks, Interrupted, Plan, Progress
from nstd.engine.precision import Precision
from nstd.engine.solvers import Solver


@dataclass(frozen=True)
class Best:
    """The lowest-loss image of one solver run so far: what a run returns, however it ends."""

    loss: float
    x: np.ndarray
    parts: dict[str, float]


@dataclass
class Eta:
    """Seconds per pixel-iteration, of full steps and of a detail pass's cheaper ones: as this
    job's steps that traced nothing took (a first step includes compiling, 100x too slow),
    else as timed before the job; a kind not run yet is priced from the other by
    :data:`plan.DETAIL_COST`."""

    seconds: dict[bool, float] = field(default_factory=lambda: {False: 0.0, True: 0.0})  # by detail
    work: dict[bool, float] = field(default_factory=lambda: {False: 0.0, True: 0.0})  # pixel-iterations
    prior: float | None = None  # seconds per pixel of a full step, measured before the job

    def add(self, detail: bool, seconds: float, work: float) -> None:
        self.seconds[detail] += seconds
        self.work[detail] += work

    def rate(self, detail: bool) -> float | None:
        """Seconds per pixel-iteration of this kind of step (None: nothing timed yet)."""
        if self.work[detail]:
            return self.seconds[detail] / self.work[detail]
        if self.work[not detail]:
            other = self.seconds[not detail] / self.work[not detail]
            return other * plan.DETAIL_COST if detail else other / plan.DETAIL_COST
        if self.prior is None:
            return None
        return self.prior * plan.DETAIL_COST if detail else self.prior

    def left(self, work: list[tuple[bool, float]]) -> float | None:
        """Seconds for ``work``, (detail, pixel-iterations) pairs; None before anything was timed."""
        rates = [self.rate(detail) for detail, _ in work]
        if any(r is None for r in rates):
            return None
        return sum(r * w for r, (_, w) in zip(rates, work))


class Run:
    """One job's state over its scales, and the loop that runs each solver."""

    def __init__(self, params, seed: int, scales: list[plan.Scale], hooks: Hooks, resume: Checkpoint | None,
                 rate: float | None = None) -> None:
        self.params, self.seed, self.scales, self.hooks = params, seed, scales, hooks
        self.t_start = time.monotonic()
        self.elapsed_before = resume.elapsed if resume is not None else 0.0
        self.resumed_scale = resume.scale if resume is not None else 0
        self.history: list[dict[str, float]] = list(resume.history) if resume is not None else []
        self.iterations_done = resume.iterations_done if resume is not None else 0
        self.evaluations = resume.evaluations if resume is not None else 0
        self.initial: dict[str, float] = dict(resume.initial) if resume is not None else {}
        self.stopped_by = "iterations"
        self.notes: list[str] = []
        self.eta = Eta(prior=rate)
        self.timings = {"targets": 0.0, "first_step": 0.0, "optimize": 0.0}
        self.precision = ""  # of the steps running now, e.g. bf16/graph
        self.precisions: list[str] = []  # every one used, in order
        self.base: np.ndarray | None = None  # the picture the running detail pass holds
        self._detail_params = plan.detail_params(params)

    def params_for(self, si: int):
        """The parameters scale ``si`` optimises with: a detail pass has its own (:func:`plan.detail_params`)."""
        return self._detail_params if self.scales[si].detail else self.params

    def announce(self) -> None:
        """The plan and its estimated time, before the first step (a resumed job: what is left)."""
        first = self.resumed_scale
        estimate = self.eta.left([(s.detail, s.work) for s in self.scales[first:]])
        if estimate is not None:
            self.timings["estimate"] = round(estimate, 1)
        if self.hooks.plan is not None:
            self.hooks.plan(Plan([(s.width, s.height, s.iterations, s.detail) for s in self.scales], estimate))

    def elapsed(self) -> float:
        return self.elapsed_before + time.monotonic() - self.t_start

    def out_of_time(self) -> bool:
        """Whether the job's time limit is spent."""
        return self.params.time_limit is not None and self.elapsed() >= self.params.time_limit

    def budget(self, si: int) -> float | None:
        """Seconds for scale ``si`` (:func:`plan.scale_budget`)."""
        return plan.scale_budget(self.params.time_limit, self.elapsed(), si == len(self.scales) - 1)

    def use(self, how: Precision) -> None:
        """The precision the steps from here on run with (reported, and kept in checkpoints)."""
        self.precision = str(how)
        if self.precision not in self.precisions:
            self.precisions.append(self.precision)

    def begin(self, solver: Solver, x0: np.ndarray, restored: Checkpoint | None) -> tuple[Best, int]:
        """(best, first iteration) for a fresh or restored solver."""
        if restored is None:
            return Best(float("inf"), np.asarray(x0, np.float64), {}), 0
        made_on = restored.precision
        if made_on and made_on != self.precision:
            self.notes.append(f"resumed on {self.precision}; the checkpoint was made on {made_on}, so the run "
                              "continues, but not bit for bit as it would have")
        solver.load_state(restored.solver)
        return Best(restored.best_loss, restored.best_x, dict(restored.best_parts)), restored.iteration

    def snapshot(self, si: int, it: int, solver: Solver, best: Best, at: TileState | None) -> Checkpoint:
        """Everything needed to continue exactly here (``evaluations``: finished solvers only)."""
        return Checkpoint(si, it, self.seed, solver.state(), best.loss, best.x, best.parts, self.initial,
                          self.iterations_done, self.evaluations, self.elapsed(), list(self.history), self.precision,
                          at, self.base if self.scales[si].detail else None)

    def loop(self, si: int, solver: Solver, best: Best, start: int, n: int, budget: float | None,
             at: TileState | None = None, tiles: int = 0) -> Best:
        """Iterate ``solver`` from iteration ``start`` up to ``n``, within ``budget`` seconds.
        ``at``: the tile being refined, one of ``tiles`` visits."""
        t_loop = time.monotonic()
        tile = at.tile + 1 if at is not None else 0
        it = start
        while it < n:
            self._stop_if_asked(si, it, solver, best, at, tiles)
            t_step = time.monotonic()
            self.timings.setdefault("first_iteration_start", t_step - self.t_start + self.elapsed_before)
            f, parts, xe = solver.step()
            if it != start:
                self.eta.add(self.scales[si].detail, time.monotonic() - t_step,
                             self.scales[si].work / (n * max(tiles, 1)))
            else:
                best = self._first_step(si, solver, best, t_step)
            it += 1
            self.iterations_done += 1
            if f < best.loss:
                best = Best(f, xe.copy(), parts)
            self._report(si, it, n, parts, tile, tiles)
            self._keep(si, it, solver, best, at)
            if solver.converged:
                self.stopped_by = "converged"
                break
            if budget is not None and time.monotonic() - t_loop >= budget:
                self.stopped_by = "time_limit"
                break
        self.evaluations += solver.evaluations
        self.timings["optimize"] += time.monotonic() - t_loop
        return best

    def _stop_if_asked(self, si: int, it: int, solver: Solver, best: Best, at: TileState | None, tiles: int) -> None:
        if self.hooks.should_stop is None or not self.hooks.should_stop():
            return
        if self.hooks.checkpoint is not None:
            self.hooks.checkpoint(self.snapshot(si, it, solver, best, at))
        where = f", tile {at.tile + 1}/{tiles}" if at is not None and tiles else ""
        raise Interrupted(f"stopped at scale {si + 1}/{len(self.scales)}{where}, iteration {it}")

    def _first_step(self, si: int, solver: Solver, best: Best, t_step: float) -> Best:
        """After a solver's first step (which includes tracing a new shape): its starting loss."""
        self.timings["first_step"] += time.monotonic() - t_step
        if solver.first is not None and solver.first["loss"] < best.loss:
            best = Best(solver.first["loss"], best.x, solver.first)
        if si == 0 and not self.initial and solver.first is not None:
            self.initial = solver.first
        return best

    def _report(self, si: int, it: int, n: int, parts: dict[str, float], tile: int, tiles: int) -> None:
        """The history's line and the progress callback, with the ETA."""
        elapsed = self.elapsed()
        self.history.append({"scale": si + 1, **({"tile": tile} if tiles else {}), "iteration": it,
                             "elapsed": round(elapsed, 3), **parts})
        if self.hooks.progress is None:
            return
        fraction = ((tile - 1) * n + it) / (tiles * n) if tiles else it / n
        now = self.scales[si]
        left = [(now.detail, now.work * (1 - fraction))] + [(s.detail, s.work) for s in self.scales[si + 1:]]
        eta = self.eta.left(left)
        if self.params.time_limit is not None and eta is not None:
            eta = min(eta, max(0.0, self.params.time_limit - elapsed))
        self.hooks.progress(Progress(si + 1, len(self.scales), it, n, parts["loss"], parts["content"],
                                     parts["style"], parts["tv"], elapsed, eta, tile if tiles else 0, tiles))

    def _keep(self, si: int, it: int, solver: Solver, best: Best, at: TileState | None) -> None:
        """A preview and a checkpoint, when their intervals say so."""
        if self.hooks.preview is not None and self.params.preview_every and it % self.params.preview_every == 0:
            self.hooks.preview(np.asarray(at.image if at is not None else best.x, np.float32), it)
        every = self.hooks.checkpoint_every
        if self.hooks.checkpoint is not None and every and it % every == 0:
            self.hooks.checkpoint(self.snapshot(si, it, solver, best, at))
