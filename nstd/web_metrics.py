"""The daemon's counters and gauges, in Prometheus's text format (``/metrics``).

A handful of series, written by hand: the exposition format is a few lines of text, and
the daemon needs no registry, no collectors and no extra dependency for that.
"""

from __future__ import annotations

import threading
import time
from typing import Callable

#: Job duration buckets, seconds: a 64 px test job to a multi-hour print.
BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600)


class Metrics:
    """Written by the worker's thread, read by the web server's: one lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.outcomes: dict[str, int] = {}
        self.failed_claims = 0
        self.seconds_per_iteration: float | None = None
        self.last_success: float | None = None
        self.durations = [0] * len(BUCKETS)
        self.duration_sum, self.duration_count = 0.0, 0

    def job_ended(self, outcome: str, seconds: float) -> None:
        with self._lock:
            self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
            if outcome == "done":
                self.last_success = time.time()
                self.duration_sum += seconds
                self.duration_count += 1
                for i, bound in enumerate(BUCKETS):
                    if seconds <= bound:
                        self.durations[i] += 1

    def claim_failed(self) -> None:
        with self._lock:
            self.failed_claims += 1

    def iteration_took(self, seconds: float) -> None:
        with self._lock:
            self.seconds_per_iteration = seconds

    def render(self, queue_depth: int, oldest_age: float | None, rss: int) -> str:
        """The text exposition format, version 0.0.4."""
        with self._lock:
            jobs = [(f'{{outcome="{o}"}}', self.outcomes.get(o, 0)) for o in sorted(set(self.outcomes) | {"done",
                                                                                                          "failed"})]
            buckets = [(f'_bucket{{le="{b}"}}', n) for b, n in zip(BUCKETS, self.durations)]
            buckets += [('_bucket{le="+Inf"}', self.duration_count), ("_sum", round(self.duration_sum, 3)),
                        ("_count", self.duration_count)]
            families = [
                ("nstd_jobs_total", "counter", "Jobs ended, by outcome.", jobs),
                ("nstd_queue_depth", "gauge", "Jobs ready in the inbox, not yet claimed.", [("", queue_depth)]),
                ("nstd_queue_oldest_age_seconds", "gauge", "Age of the oldest ready job (0: none).",
                 [("", round(oldest_age or 0, 3))]),
                ("nstd_seconds_per_iteration", "gauge", "Duration of the latest optimiser iteration.",
                 [("", round(self.seconds_per_iteration or 0, 6))]),
                ("nstd_job_duration_seconds", "histogram", "Wall time of published jobs.", buckets),
                ("nstd_last_success_timestamp_seconds", "gauge", "When a job last published (0: never).",
                 [("", round(self.last_success or 0, 3))]),
                ("nstd_failed_claims_total", "counter", "Jobs that could not be claimed.", [("", self.failed_claims)]),
                ("nstd_resident_memory_bytes", "gauge", "Resident memory of the daemon.", [("", rss)]),
            ]
        lines = []
        for name, kind, help_text, samples in families:
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
            lines += [f"{name}{suffix} {value}" for suffix, value in samples]
        return "\n".join(lines) + "\n"


def iteration_timer(metrics: Metrics, clock: Callable[[], float] = time.monotonic) -> Callable[[int], None]:
    """Called with each progress record's iteration: the time per iteration since the last call."""
    last: list = [None, None]

    def tick(iteration: int) -> None:
        now = clock()
        if last[0] is not None and iteration > last[1]:
            metrics.iteration_took((now - last[0]) / (iteration - last[1]))
        last[0], last[1] = now, iteration

    return tick
