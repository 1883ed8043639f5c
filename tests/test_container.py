"""The container image, built and run for real with podman: one job dropped into a running
container comes out in the outbox, made by a non-root user.

No image registry or package index is reachable from inside a build here, so the base is
a Debian image made with mmdebstrap and nstd's wheels are downloaded on the host into the
build context (the same Containerfile builds from python:3.11-slim where a registry is
reachable). Where containers cannot run at all, the test skips with each attempt's error.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
import yaml

from tests.conftest import make_image
from tests.daemon_harness import REPO, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(1800)]

BASE = "localhost/nstd-base:bookworm"
TAG = "localhost/nstd-test:latest"
#: Some kernels' sandboxes refuse crun (cgroups in hybrid mode) or a raised RLIMIT_NPROC
#: (podman's default as root): these are tried in turn, and the first that runs is used.
RUNTIMES = [[], ["--runtime", "runc"]]
ULIMITS = [[], ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096"]]


def podman(*args: str, timeout: float = 600, check: bool = False) -> subprocess.CompletedProcess:
    run = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout)
    if check:
        assert run.returncode == 0, f"podman {' '.join(args[:3])} …: {run.stderr[-3000:]}"
    return run


def base_image(tmp: Path) -> None:
    """A Debian bookworm image with Python 3 and venv, made with mmdebstrap once per machine."""
    if podman("image", "exists", BASE).returncode == 0:
        return
    if shutil.which("mmdebstrap") is None:
        pytest.skip("no base image and no mmdebstrap to make one (.ci/run installs it)")
    tar = tmp / "base.tar"
    made = subprocess.run(["mmdebstrap", "--variant=apt", "--include=python3,python3-venv", "bookworm", str(tar)],
                          capture_output=True, text=True, timeout=900)
    if made.returncode != 0:
        pytest.skip(f"mmdebstrap could not make a base image here: {made.stderr.strip().splitlines()[-1:]}")
    podman("import", str(tar), BASE, check=True)
    tar.unlink()


def runnable_flags() -> tuple[list[str], list[str]]:
    """(podman's global flags, run/build flags) with which a container runs here; else skip with why."""
    errors = []
    for runtime in RUNTIMES:
        for ulimits in ULIMITS:
            tried = podman(*runtime, "run", "--rm", *ulimits, BASE, "true", timeout=120)
            if tried.returncode == 0:
                return runtime, ulimits
            errors.append(f"{' '.join(runtime + ulimits) or 'defaults'}: "
                          f"{(tried.stderr.strip().splitlines() or ['?'])[-1]}")
    pytest.skip("podman cannot run a container here: " + "; ".join(errors))


def build_context(tmp: Path, python_version: str) -> Path:
    """The files the image installs, and every wheel it needs for the base's Python."""
    ctx = tmp / "context"
    ctx.mkdir()
    for name in ("pyproject.toml", "README.md", "Containerfile", ".containerignore"):
        shutil.copy(REPO / name, ctx / name)
    for name in ("nstd", "container"):
        shutil.copytree(REPO / name, ctx / name, ignore=shutil.ignore_patterns("__pycache__"))
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    # async-timeout: redis needs it on Pythons before 3.11.3, which pip's --python-version does not tell it
    wanted = [*project["dependencies"], *project["optional-dependencies"]["fleet"], "setuptools>=64", "wheel",
              "async-timeout"]
    got = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "-d", str(ctx / "wheels"),
                          "--only-binary=:all:", "--python-version", python_version, *wanted],
                         capture_output=True, text=True, timeout=900)
    assert got.returncode == 0, got.stderr[-3000:]
    return ctx


def test_the_image_builds_and_runs_one_job_as_a_non_root_user(tmp_path, thin_mat):
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed (.ci/run installs it)")
    base_image(tmp_path)
    runtime, ulimits = runnable_flags()
    version = podman(*runtime, "run", "--rm", *ulimits, BASE, "python3", "-c",
                     "import platform; print(platform.python_version())", check=True).stdout.strip()
    ctx = build_context(tmp_path, version)
    try:
        build_and_run(runtime, ulimits, ctx, tmp_path, thin_mat)
    finally:
        forget_images()


def forget_images() -> None:
    """Remove the test's image and every layer its build left, kept or failed.

    Each image is 3 GB; left behind, one per run, they filled the disk until a build failed.
    """
    podman("rmi", "--force", TAG, timeout=300)
    podman("image", "prune", "--force", "--filter", "label=nstd-test-build=1", timeout=300)


def build_and_run(runtime: list[str], ulimits: list[str], ctx: Path, tmp_path: Path, thin_mat: Path) -> None:
    podman(*runtime, "build", "--format", "docker", *ulimits, "--layers=false", "--force-rm",
           "--label", "nstd-test-build=1", "--build-arg", f"BASE={BASE}",
           "--build-arg", "PIP_ARGS=--no-index --find-links /tmp/src/wheels", "-t", TAG, str(ctx),
           timeout=1500, check=True)
    health = podman("image", "inspect", TAG, "--format", "{{json .Config.Healthcheck}}", check=True).stdout
    assert "/healthz" in health, health

    share, weights = tmp_path / "share", tmp_path / "weights"
    (share / "inbox").mkdir(parents=True)
    weights.mkdir()
    shutil.copy(thin_mat, weights / "thin.mat")
    (share / "config.yaml").write_text(yaml.safe_dump({
        "paths": {k: f"/srv/nstd/{k}" for k in ("inbox", "outbox", "failed", "archive", "state")},
        "weights": "/weights/thin.mat", "defaults": {"size": 32, "iterations": 3, "coarse_iterations": 2},
        "watch": {"mode": "polling"}}))
    for folder in (share, share / "inbox"):
        folder.chmod(0o777)  # the container's user (uid 10001) writes there
    name = f"nstd-test-{int(time.time())}"
    podman(*runtime, "run", "-d", "--rm", "--name", name, *ulimits, "-v", f"{share}:/srv/nstd",
           "-v", f"{weights}:/weights:ro", TAG, "run", "--config", "/srv/nstd/config.yaml", check=True)
    try:
        wait_until(lambda: "ready:" in podman("logs", name).stderr + podman("logs", name).stdout, 300,
                   "the daemon in the container to be ready")
        make_image(share / "inbox" / "c.style.png", seed=2)  # dropped into the running container's inbox
        make_image(share / "inbox" / "c.content.png", seed=1)
        wait_until(lambda: (share / "outbox" / "c.report.yaml").exists(), 300, "the job's report from the container")
        assert yaml.safe_load((share / "outbox" / "c.report.yaml").read_text())["status"] == "done"
        assert (share / "outbox" / "c.png").stat().st_uid == 10001  # made by the image's own user, not root
        assert podman("exec", name, "id", "-u", check=True).stdout.strip() == "10001"
    finally:
        podman("stop", "-t", "20", name, timeout=120)
