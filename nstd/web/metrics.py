"""The daemon's counters and gauges for ``/metrics``, exposed by ``prometheus-client``.

Each daemon has its own :class:`~prometheus_client.CollectorRegistry` (never the global
one), so tests and several daemons in one process never share or collide on a series.
:class:`Metrics` is that registry's one collector: the worker records into it under a lock,
and each scrape turns what was recorded, plus the queue and memory read at that moment, into
metric families. The library writes the text format, its escaping included.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Iterator, NamedTuple

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

#: Job duration buckets, seconds: a 64 px test job to a multi-hour print.
BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600)
#: The Content-Type of :meth:`Metrics.render`'s text.
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4


class Scrape(NamedTuple):
    """What is read anew at each scrape, from outside the worker."""

    queue_depth: int = 0
    oldest_age: float | None = None  # seconds; None: no job waiting
    rss: int = 0  # bytes


class Metrics:
    """Written by the worker's thread, read by the web server's: one lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.outcomes: dict[str, int] = {}
        self.failed_claims = 0
        self.seconds_per_iteration: float | None = None
        self.running: tuple[float, int, int] | None = None  # the running job's ETA (s), frame and frames (clips)
        self.last_success: float | None = None
        self.durations = [0] * len(BUCKETS)  # cumulative: each counts the jobs at or under its bound
        self.duration_sum, self.duration_count = 0.0, 0
        self.scrape: Callable[[], Scrape] = Scrape
        self.registry = CollectorRegistry()
        self.registry.register(self)

    def job_progress(self, eta: float | None, frame: int = 0, frames: int = 0) -> None:
        """The running job's time left and, for a clip, the frame it is on (1-based) of how many."""
        with self._lock:
            self.running = (eta or 0.0, frame, frames)

    def job_ended(self, outcome: str, seconds: float) -> None:
        with self._lock:
            self.running = None
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

    def read_scrape_from(self, scrape: Callable[[], Scrape]) -> None:
        """Where each scrape reads the queue and the memory (the web server, which sees both)."""
        self.scrape = scrape

    def collect(self) -> Iterator[Metric]:
        """The registry's view: one family per series, as the text format names them."""
        now = self.scrape()
        with self._lock:
            jobs = CounterMetricFamily("nstd_jobs", "Jobs ended, by outcome.", labels=["outcome"])
            for outcome in sorted(set(self.outcomes) | {"done", "failed"}):
                jobs.add_metric([outcome], self.outcomes.get(outcome, 0))
            eta, frame, frames = self.running or (0.0, 0, 0)
            buckets = [(str(b), n) for b, n in zip(BUCKETS, self.durations)] + [("+Inf", self.duration_count)]
            families = [
                jobs,
                GaugeMetricFamily("nstd_queue_depth", "Jobs ready in the inbox, not yet claimed.",
                                  value=now.queue_depth),
                GaugeMetricFamily("nstd_queue_oldest_age_seconds", "Age of the oldest ready job (0: none).",
                                  value=round(now.oldest_age or 0, 3)),
                GaugeMetricFamily("nstd_job_eta_seconds", "Estimated time left of the running job (0: none running "
                                  "or not known yet).", value=round(eta, 1)),
                GaugeMetricFamily("nstd_clip_frame", "The frame the running clip job is on, 1-based (0: no clip).",
                                  value=frame),
                GaugeMetricFamily("nstd_clip_frames", "Frames of the running clip job (0: no clip).", value=frames),
                GaugeMetricFamily("nstd_seconds_per_iteration", "Duration of the latest optimiser iteration.",
                                  value=round(self.seconds_per_iteration or 0, 6)),
                HistogramMetricFamily("nstd_job_duration_seconds", "Wall time of published jobs.", buckets=buckets,
                                      sum_value=round(self.duration_sum, 3)),
                GaugeMetricFamily("nstd_last_success_timestamp_seconds", "When a job last published (0: never).",
                                  value=round(self.last_success or 0, 3)),
                CounterMetricFamily("nstd_failed_claims", "Jobs that could not be claimed.",
                                    value=self.failed_claims),
                GaugeMetricFamily("nstd_resident_memory_bytes", "Resident memory of the daemon.", value=now.rss),
            ]
        yield from families

    def render(self) -> str:
        """The text exposition format, version 0.0.4 (:data:`CONTENT_TYPE`)."""
        return generate_latest(self.registry).decode()


def iteration_timer(metrics: Metrics, clock: Callable[[], float] = time.monotonic) -> Callable[[int], None]:
    """Called with each progress record's iteration: the time per iteration since the last call."""
    last: list = [None, None]

    def tick(iteration: int) -> None:
        now = clock()
        if last[0] is not None and iteration > last[1]:
            metrics.iteration_took((now - last[0]) / (iteration - last[1]))
        last[0], last[1] = now, iteration

    return tick
