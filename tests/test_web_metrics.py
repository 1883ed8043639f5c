"""/metrics in-process: the series the daemon has always served, now written by prometheus-client.

``SERIES`` is what the hand-written exposition served after one published job, taken from
a real daemon's page (tests/test_web.py) before the change to the library.
"""

from __future__ import annotations

import re

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from nstd.web.metrics import BUCKETS, Metrics, Scrape, iteration_timer

pytestmark = pytest.mark.unit

SERIES = {("nstd_jobs_total", (("outcome", "done"),)), ("nstd_jobs_total", (("outcome", "failed"),)),
          ("nstd_queue_depth", ()), ("nstd_queue_oldest_age_seconds", ()), ("nstd_seconds_per_iteration", ()),
          *(("nstd_job_duration_seconds_bucket", (("le", le),)) for le in
            ("1", "5", "15", "30", "60", "120", "300", "600", "1800", "3600", "7200", "21600", "+Inf")),
          ("nstd_job_duration_seconds_sum", ()), ("nstd_job_duration_seconds_count", ()),
          ("nstd_last_success_timestamp_seconds", ()), ("nstd_failed_claims_total", ()),
          ("nstd_resident_memory_bytes", ()), ("nstd_job_eta_seconds", ()), ("nstd_clip_frame", ()),
          ("nstd_clip_frames", ())}
TYPES = {"nstd_jobs_total": "counter", "nstd_queue_depth": "gauge", "nstd_queue_oldest_age_seconds": "gauge",
         "nstd_seconds_per_iteration": "gauge", "nstd_job_duration_seconds": "histogram",
         "nstd_last_success_timestamp_seconds": "gauge", "nstd_failed_claims_total": "counter",
         "nstd_resident_memory_bytes": "gauge", "nstd_job_eta_seconds": "gauge", "nstd_clip_frame": "gauge",
         "nstd_clip_frames": "gauge"}


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """Each sample line as ((name, ((label, value), …)), value), read as plainly as a scraper does."""
    out = {}
    for line in text.splitlines():
        if line.startswith("#") or not line:
            continue
        head, value = line.rsplit(" ", 1)
        name = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", head).group(0)
        out[(name, tuple(re.findall(r'(\w+)="([^"]*)"', head[len(name):])))] = float(value)
    return out


def types(text: str) -> dict[str, str]:
    return dict(line.split()[2:4] for line in text.splitlines() if line.startswith("# TYPE "))


def test_the_same_series_and_types_as_the_hand_written_page():
    m = Metrics()
    m.job_ended("done", 7.0)
    text = m.render()
    assert set(samples(text)) == SERIES  # nothing lost, nothing added (no _created series)
    assert types(text) == TYPES
    assert all(f"# HELP {name} " in text for name in TYPES)


def test_a_running_clip_shows_its_frame_and_eta_until_it_ends():
    m = Metrics()
    m.job_progress(312.5, frame=7, frames=40)
    s = samples(m.render())
    assert (s[("nstd_clip_frame", ())], s[("nstd_clip_frames", ())], s[("nstd_job_eta_seconds", ())]) == (7, 40, 312.5)
    m.job_progress(None)  # a still, before its first timed step
    s = samples(m.render())
    assert (s[("nstd_clip_frame", ())], s[("nstd_clip_frames", ())], s[("nstd_job_eta_seconds", ())]) == (0, 0, 0)
    m.job_progress(12.0, frame=2, frames=3)
    m.job_ended("done", 30.0)
    s = samples(m.render())
    assert (s[("nstd_clip_frame", ())], s[("nstd_clip_frames", ())], s[("nstd_job_eta_seconds", ())]) == (0, 0, 0)


def test_values_buckets_and_the_scrape_time_gauges():
    m = Metrics()
    m.read_scrape_from(lambda: Scrape(queue_depth=3, oldest_age=14.25, rss=123_456_789))
    m.job_ended("done", 7.0)
    m.job_ended("done", 400.0)
    m.job_ended("failed", 2.0)  # a failure counts, but has no duration
    m.claim_failed()
    m.iteration_took(0.47)
    s = samples(m.render())
    assert s[("nstd_jobs_total", (("outcome", "done"),))] == 2
    assert s[("nstd_jobs_total", (("outcome", "failed"),))] == 1
    bucket = {le: s[("nstd_job_duration_seconds_bucket", (("le", le),))] for le in [*map(str, BUCKETS), "+Inf"]}
    assert (bucket["5"], bucket["15"], bucket["300"], bucket["600"], bucket["+Inf"]) == (0, 1, 1, 2, 2)
    assert s[("nstd_job_duration_seconds_sum", ())] == 407.0 and s[("nstd_job_duration_seconds_count", ())] == 2
    assert s[("nstd_queue_depth", ())] == 3 and s[("nstd_queue_oldest_age_seconds", ())] == 14.25
    assert s[("nstd_resident_memory_bytes", ())] == 123_456_789 and s[("nstd_failed_claims_total", ())] == 1
    assert s[("nstd_seconds_per_iteration", ())] == 0.47 and s[("nstd_last_success_timestamp_seconds", ())] > 1e9


def test_before_any_job_every_series_is_there_at_zero():
    s = samples(Metrics().render())
    assert set(s) == SERIES and not any(s.values())


def test_the_official_parser_reads_it_back_and_label_values_are_escaped():
    m = Metrics()
    odd = 'say "hi"\\ then\na new line'
    m.job_ended(odd, 1.0)
    families = {f.name: f for f in text_string_to_metric_families(m.render())}
    outcomes = {s.labels["outcome"]: s.value for s in families["nstd_jobs"].samples if s.name == "nstd_jobs_total"}
    assert outcomes == {"done": 0, "failed": 0, odd: 1}
    assert families["nstd_job_duration_seconds"].type == "histogram"


def test_each_daemon_has_its_own_registry_and_none_uses_the_global_one():
    a, b = Metrics(), Metrics()  # a second registration in one registry would raise: duplicated timeseries
    a.job_ended("done", 1.0)
    assert samples(a.render())[("nstd_jobs_total", (("outcome", "done"),))] == 1
    assert samples(b.render())[("nstd_jobs_total", (("outcome", "done"),))] == 0
    assert a.registry is not b.registry and a.registry is not REGISTRY
    assert REGISTRY.get_sample_value("nstd_jobs_total", {"outcome": "done"}) is None


def test_iteration_timer_divides_by_the_iterations_between_calls():
    m, now = Metrics(), [100.0]
    tick = iteration_timer(m, lambda: now[0])
    tick(10)
    assert m.seconds_per_iteration is None  # one call: nothing to divide yet
    now[0] += 3.0
    tick(16)
    assert m.seconds_per_iteration == pytest.approx(0.5)
    now[0] += 1.0
    tick(16)  # the same iteration again (a resumed job): no new figure
    assert m.seconds_per_iteration == pytest.approx(0.5)
