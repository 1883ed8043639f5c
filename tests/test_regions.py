"""Spatial control: masks in every job form, resized to the content; bad masks refused clearly."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from PIL import Image

from nstd.engine.regions import Region, check_regions, layer_masks, mask_from_image
from nstd.errors import ImageError
from nstd.images import load_image
from nstd.spool.jobs import JobError, discover, load_spec
from tests.conftest import make_image


def write_mask(path, size=(48, 36), mode="L", left=True):
    arr = np.zeros((size[1], size[0]), np.uint8)
    arr[:, : size[0] // 2] = 255 if left else 0
    arr[:, size[0] // 2:] = 0 if left else 255
    Image.fromarray(arr, "L").convert(mode).save(path)
    return path


def regions_job(inbox, name):
    """A YAML job in ``inbox``: the sky half gets a style, the ground half none."""
    inbox.mkdir(parents=True, exist_ok=True)
    make_image(inbox / "photo.png", seed=1)
    make_image(inbox / "starry.png", seed=2)
    write_mask(inbox / "sky.png")
    write_mask(inbox / "ground.png", left=False)
    (inbox / f"{name}.yaml").write_text(yaml.safe_dump({"content": "photo.png", "regions": [
        {"mask": "sky.png", "style": "starry.png"}, {"mask": "ground.png"}]}))
    return inbox


@pytest.mark.parametrize("mode", ["L", "RGB", "1", "LA", "P"])
def test_masks_in_any_mode_mean_their_white_part(tmp_path, mode):
    mask = mask_from_image(load_image(write_mask(tmp_path / "m.png", mode=mode)))
    assert mask.shape == (36, 48) and mask[:, :20].min() > 0.9 and mask[:, 28:].max() < 0.1


def test_masks_are_resized_to_each_layers_grid():
    m = np.zeros((40, 64), np.float32)
    m[:, :32] = 1
    (grid,) = layer_masks([Region(m)], [(10, 16)])
    assert grid.shape == (1, 160) and grid.reshape(10, 16)[:, :8].min() == 1 and grid.reshape(10, 16)[:, 8:].max() == 0


def test_bad_masks_get_clear_errors(tmp_path):
    style = load_image(make_image(tmp_path / "s.png", seed=2))
    with pytest.raises(ImageError, match="empty"):
        check_regions([Region(np.zeros((8, 8), np.float32), [(style, 1.0)], "black.png")])
    with pytest.raises(ImageError, match="at least one region needs a style"):
        check_regions([Region(np.ones((8, 8), np.float32), [], "m.png")])


def test_yaml_and_folder_jobs_name_their_masks(tmp_path):
    inbox = regions_job(tmp_path / "inbox", "two")
    (c,) = discover(inbox)
    assert c.waiting_for is None and {p.name for p in c.files} == {"two.yaml", "photo.png", "starry.png", "sky.png",
                                                                   "ground.png"}
    spec = load_spec("two", "yaml", inbox, 65536)
    assert [(m.name, [p.name for p, _ in s]) for m, s in spec.regions] == [("sky.png", ["starry.png"]),
                                                                           ("ground.png", [])]
    folder = tmp_path / "f" / "job"
    folder.mkdir(parents=True)
    make_image(folder / "content.png", seed=1)
    make_image(folder / "style1.png", seed=2)
    write_mask(folder / "mask1.png")
    write_mask(folder / "mask2.png", left=False)
    spec = load_spec("job", "folder", tmp_path / "f", 65536)
    assert [(m.name, [p.name for p, _ in s]) for m, s in spec.regions] == [("mask1.png", ["style1.png"]),
                                                                           ("mask2.png", [])]
    (inbox / "bad.yaml").write_text(yaml.safe_dump({"content": "photo.png", "regions": [{"style": "starry.png"}]}))
    with pytest.raises(JobError, match="each region is"):
        load_spec("bad", "yaml", inbox, 65536)


def test_a_cut_out_mask_means_its_opaque_part(tmp_path):
    rgba = np.zeros((36, 48, 4), np.uint8)
    rgba[..., :3] = 80  # a dark colour: luminance alone would say "nothing"
    rgba[:, :24, 3] = 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "cut.png")
    mask = mask_from_image(load_image(tmp_path / "cut.png"))
    assert mask[:, :20].min() == 1.0 and mask[:, 28:].max() == 0.0


def test_cli_region_end_to_end(tmp_path, thin_mat):
    import subprocess
    import sys

    content = make_image(tmp_path / "c.png", seed=1)
    style = make_image(tmp_path / "s.png", seed=2)
    write_mask(tmp_path / "sky.png")
    write_mask(tmp_path / "ground.png", left=False)
    run = subprocess.run([sys.executable, "-m", "nstd", "stylize", str(content), "-o", str(tmp_path / "o.png"),
                          "--region", f"{tmp_path / 'sky.png'}={style}", "--region", f"{tmp_path / 'ground.png'}=",
                          "--weights", str(thin_mat), "--size", "48", "--iterations", "3"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    report = yaml.safe_load((tmp_path / "o.report.yaml").read_text())
    assert [r["mask"] for r in report["regions"]] == ["sky.png", "ground.png"]
    assert report["regions"][1]["styles"] == [] and report["regions"][0]["coverage"] == pytest.approx(0.5, abs=0.05)
    black = tmp_path / "black.png"
    Image.new("L", (48, 36), 0).save(black)
    bad = subprocess.run([sys.executable, "-m", "nstd", "stylize", str(content), "-o", str(tmp_path / "b.png"),
                          "--region", f"{black}={style}", "--weights", str(thin_mat)],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "black.png: the mask is empty" in bad.stderr


def test_daemon_runs_a_regions_job(tmp_path, thin_mat):
    from tests.daemon_harness import Daemon, wait_until, write_config

    root = tmp_path / "nstd"
    cfg = write_config(root, thin_mat)
    regions_job(root / "inbox", "masked")
    with Daemon(cfg) as d:
        wait_until(lambda: (root / "outbox" / "masked.report.yaml").is_file(), 60, "the regions job")
        assert d.stop() == 0
    report = yaml.safe_load((root / "outbox" / "masked.report.yaml").read_text())
    assert [r["mask"] for r in report["regions"]] == ["sky.png", "ground.png"]
