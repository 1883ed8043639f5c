"""Unit tests of the watch-mode decision (the e2e test covers a real FUSE mount)."""

from __future__ import annotations

from pathlib import Path

import pytest

from nstd.daemon.watch import choose_mode, mount_of

pytestmark = pytest.mark.unit

MOUNTINFO = """\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
40 22 0:40 / /mnt/nas rw,relatime shared:20 - nfs4 nas:/export rw,vers=4.2
41 22 0:41 / /mnt/smb rw,relatime shared:21 - cifs //nas/share rw
42 22 0:42 / /mnt/view rw,nosuid shared:22 - fuse.bindfs /srv/real rw,user_id=0
43 22 0:43 / /mnt/with\\040space rw shared:23 - xfs /dev/sdb1 rw
"""


def test_mount_of_picks_the_longest_mount_point(tmp_path):
    info = tmp_path / "mountinfo"
    info.write_text(MOUNTINFO)
    assert mount_of(Path("/mnt/nas/inbox/x"), str(info))[:2] == ("/mnt/nas", "nfs4")
    assert mount_of(Path("/mnt/nasty"), str(info))[:2] == ("/", "ext4")
    assert mount_of(Path("/mnt/view/in"), str(info)) == ("/mnt/view", "fuse.bindfs", "/srv/real")
    assert mount_of(Path("/mnt/with space/in"), str(info))[:2] == ("/mnt/with space", "xfs")


def test_auto_polls_on_network_and_fuse_and_obeys_explicit_modes(tmp_path, monkeypatch):
    info = tmp_path / "mountinfo"
    info.write_text(MOUNTINFO)
    import nstd.daemon.watch as watch

    monkeypatch.setattr(watch, "mount_of", lambda p: mount_of(p, str(info)))
    assert choose_mode(Path("/mnt/nas/in"), "auto")[0] == "polling"
    assert choose_mode(Path("/mnt/smb/in"), "auto")[0] == "polling"
    assert choose_mode(Path("/mnt/view/in"), "auto")[0] == "polling"
    assert choose_mode(Path("/home/u/in"), "auto")[0] == "events"
    assert choose_mode(Path("/mnt/nas/in"), "events")[0] == "events"
    assert choose_mode(Path("/home/u/in"), "polling")[0] == "polling"
