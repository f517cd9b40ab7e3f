"""The sampling CLI (sagan/sample.py): seed syntax, the app's faces as PNGs, truncation, and one-line errors."""
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from sagan.checkpoint import load_generator
from sagan.explore import render
from sagan.sample import main, parse_seeds
from sagan.sampling import latent
from tests.factories import make_read_only

from conftest import ROOT


def test_seed_syntax_ranges_and_lists():
    assert parse_seeds("0-9,20,30-32") == list(range(10)) + [20, 30, 31, 32]
    assert parse_seeds(" 7 ") == [7]


@pytest.mark.parametrize("text, message", [("5-3", "backwards: write it as 3-5"), ("a", "cannot read 'a'"),
                                           ("1,,2", "cannot read ''"), ("-1", "cannot read"),
                                           ("0-2147483648", "seed must be a whole number")])
def test_bad_seeds_are_refused_with_the_fix(text, message):
    with pytest.raises(ValueError, match=message):
        parse_seeds(text)


def test_pngs_are_the_apps_faces(tiny_checkpoint, tmp_path, capsys):
    seeds = [0, 1, 2, 7, 11]
    assert main(["--checkpoint", str(tiny_checkpoint), "--seeds", "0-2,7,11", "--outdir", str(tmp_path / "out"),
                 "--grid", str(tmp_path / "grid.png")]) == 0
    assert "wrote 5 faces" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [f"seed{s:04d}.png" for s in seeds]
    g = load_generator(tiny_checkpoint)
    for seed in seeds:
        png = np.asarray(Image.open(tmp_path / "out" / f"seed{seed:04d}.png"))
        assert png.shape == (32, 32, 3)
        assert np.array_equal(png, render(g, latent(seed, g.cfg.z_dim)).face)
    grid = np.asarray(Image.open(tmp_path / "grid.png"))
    assert grid.shape == (2 * 32 + 2, 3 * 32 + 2 * 2, 3)  # 5 faces: 3 columns, 2 rows, 2 px gaps
    assert np.array_equal(grid[34:66, 0:32], np.asarray(Image.open(tmp_path / "out" / "seed0007.png")))


def test_batched_faces_are_the_apps_to_one_colour_level(tiny_checkpoint, tmp_path):
    """--batch-size 3 splits the seeds unevenly; another batch size may round a few values the other way."""
    assert main(["--checkpoint", str(tiny_checkpoint), "--seeds", "0-2,7,11", "--outdir", str(tmp_path),
                 "--batch-size", "3"]) == 0
    g = load_generator(tiny_checkpoint)
    for seed in (0, 1, 2, 7, 11):
        png = np.asarray(Image.open(tmp_path / f"seed{seed:04d}.png")).astype(int)
        app = render(g, latent(seed, g.cfg.z_dim)).face.astype(int)
        assert np.abs(png - app).max() <= 1 and (png != app).mean() < 0.01


def test_truncation_means_what_the_app_slider_means(tiny_checkpoint, tmp_path):
    g = load_generator(tiny_checkpoint)
    for value, threshold in (("0.5", 0.5), ("3", None)):
        out = tmp_path / value
        assert main(["--checkpoint", str(tiny_checkpoint), "--seeds", "4", "--outdir", str(out),
                     "--truncation", value]) == 0
        expected = render(g, latent(4, g.cfg.z_dim, threshold)).face
        assert np.array_equal(np.asarray(Image.open(out / "seed0004.png")), expected)


@pytest.mark.parametrize("args, message", [
    (["--seeds", "0", "--outdir", "o", "--checkpoint", "missing.safetensors"], "no generator weights"),
    (["--seeds", "0", "--checkpoint", "x"], "nothing to write"),
    (["--seeds", "0", "--outdir", "o", "--truncation", "0.1", "--checkpoint", "x"], "truncation must be between"),
    (["--seeds", "0-2147483647", "--outdir", "o", "--checkpoint", "x"], "asks for 2,147,483,648 faces"),
    (["--seeds", "0-4096", "--grid", "g.png", "--checkpoint", "x"], "at most 4,096 of them, not 4,097"),
    (["--seeds", "0-3", "--grid", "o", "--checkpoint", "x"], "--grid 'o' is not an image file name"),
])
def test_user_errors_print_one_line(args, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists()


def test_outputs_inside_a_file_are_refused_before_sampling(tiny_checkpoint, tmp_path, capsys):
    (tmp_path / "taken").write_text("a file, not a folder")
    assert main(["--checkpoint", str(tiny_checkpoint), "--seeds", "0-3", "--outdir", str(tmp_path / "taken")]) == 2
    assert f"'{tmp_path / 'taken'}' is a file, not a folder" in capsys.readouterr().err
    inside_a_file = tmp_path / "taken" / "sheets" / "grid.png"
    assert main(["--checkpoint", str(tiny_checkpoint), "--seeds", "0-3", "--grid", str(inside_a_file)]) == 2
    err = capsys.readouterr().err
    assert err == (f"error: cannot write --grid '{inside_a_file}': '{tmp_path / 'taken'}' is a file, not a folder. "
                   "Choose another --grid.\n")


def test_a_grid_in_a_read_only_folder_is_refused_before_any_face_is_written(tiny_checkpoint, tmp_path, monkeypatch,
                                                                            capsys):
    read_only = tmp_path / "ro"
    read_only.mkdir()
    make_read_only(monkeypatch, read_only)
    out = tmp_path / "out"
    assert main(["--checkpoint", str(tiny_checkpoint), "--seeds", "0-3", "--outdir", str(out),
                 "--grid", str(read_only / "grid.png")]) == 2
    grid = read_only / "grid.png"
    assert capsys.readouterr().err == (f"error: cannot write --grid '{grid}': '{read_only}' is a read-only folder. "
                                       "Choose another --grid.\n")
    assert not out.exists()


@pytest.mark.parametrize("suffix", [".psd", ".fits", ".xbm", ".h5"])
def test_grid_formats_pillow_cannot_write_are_refused_before_sampling(suffix, tiny_checkpoint, tmp_path, capsys):
    # Pillow reads .psd and .fits but has no writer; it lists writers for .xbm (1-bit only) and .h5 (a plugin
    # that is not installed) that fail on a colour sheet. Each used to fail after every face was rendered.
    grid = tmp_path / f"grid{suffix}"
    assert main(["--checkpoint", str(tiny_checkpoint), "--seeds", "0-3", "--outdir", str(tmp_path / "out"),
                 "--grid", str(grid)]) == 2
    err = capsys.readouterr().err
    assert err == (f"error: --grid '{grid}': Pillow cannot write a colour sheet as a {suffix} file: end it in "
                   ".png (or .jpg, .webp).\n")
    assert not (tmp_path / "out").exists() and not grid.exists()


def test_module_entry_point_exits_2_without_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "sagan.sample", "--checkpoint", str(tmp_path / "none.safetensors"),
                             "--seeds", "0-3", "--outdir", str(tmp_path / "out")],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.startswith("error: no generator weights") and "Traceback" not in result.stderr
