"""The container image: built and run with one job where a container tool works here."""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest

from tests.conftest import make_image
from tests.daemon_harness import REPO, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(1800)]


def container_tool() -> str:
    """podman or docker, whichever can actually run containers here; else skip with why."""
    reasons = []
    for tool in ("podman", "docker"):
        if shutil.which(tool) is None:
            reasons.append(f"no {tool}")
            continue
        info = subprocess.run([tool, "info"], capture_output=True, text=True, timeout=60)
        if info.returncode == 0:
            return tool
        reasons.append(f"{tool} cannot run containers here ({(info.stderr.strip().splitlines() or ['?'])[-1]})")
    pytest.skip("; ".join(reasons))


def test_the_image_builds_and_runs_one_job_as_a_non_root_user(tmp_path, thin_mat):
    tool = container_tool()
    tag = "localhost/nstd-test:latest"
    build = subprocess.run([tool, "build", "-t", tag, "-f", "Containerfile", "."], cwd=REPO, capture_output=True,
                           text=True, timeout=1500)
    assert build.returncode == 0, build.stderr[-3000:]
    share, weights = tmp_path / "share", tmp_path / "weights"
    (share / "inbox").mkdir(parents=True)
    weights.mkdir()
    shutil.copy(thin_mat, weights / "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5.mat")
    (share / "config.yaml").write_text(
        "paths: {inbox: /srv/nstd/inbox, outbox: /srv/nstd/outbox, failed: /srv/nstd/failed, "
        "archive: /srv/nstd/archive, state: /srv/nstd/state}\n"
        "weights: /weights/vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5.mat\n"
        "defaults: {size: 32, iterations: 3, coarse_iterations: 2}\nwatch: {mode: polling}\n")
    share.chmod(0o777)
    (share / "inbox").chmod(0o777)
    make_image(share / "inbox" / "c.style.png", seed=2)
    make_image(share / "inbox" / "c.content.png", seed=1)
    name = f"nstd-test-{int(time.time())}"
    run = subprocess.Popen([tool, "run", "--rm", "--name", name, "-v", f"{share}:/srv/nstd", "-v", f"{weights}:/weights:ro",
                            tag, "run", "--config", "/srv/nstd/config.yaml"])
    try:
        wait_until(lambda: (share / "outbox" / "c.report.yaml").exists(), 600, "the job's report from the container")
        user = subprocess.run([tool, "exec", name, "id", "-u"], capture_output=True, text=True)
        assert user.stdout.strip() == "10001"  # not root
    finally:
        subprocess.run([tool, "stop", name], capture_output=True, timeout=60)
        run.wait(timeout=60)
