"""FID, KID, precision and recall (sagan/evaluate.py) with a tiny injected feature network: the CLI, cached reference
statistics, and one-line errors."""
import io
import json
import math
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from sagan import evaluate as evaluate_module
from sagan import inception, metrics, sample
from sagan.attention_metrics import generator_report
from sagan.checkpoint import export_generator, load_generator, read_export_metadata
from sagan.config import TrainConfig, preset
from sagan.data import load_images
from sagan.evaluate import evaluate, generated_features, main
from sagan.explore import render
from sagan.sampling import generate, latent, latents
from tests.factories import make_read_only, write_faces

from conftest import ROOT

# Inception exists only as TorchScript, so the stand-in is TorchScript too, deprecated or not.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")


class TinyFeatureNet(nn.Module):
    """Inception's interface in miniature: float (B, 3, 299, 299) in [-1, 1) -> (B, 8) pooled features."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, kernel_size=13, stride=13)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (299, 299):
            raise ValueError("input must be 299x299")
        return torch.relu(self.conv(x)).mean(dim=(2, 3))


@pytest.fixture(scope="module")
def tiny_network(tmp_path_factory) -> tuple[Path, str]:
    """A randomly initialised TorchScript feature network on disk, and its sha256."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = torch.jit.script(TinyFeatureNet().eval())
    path = tmp_path_factory.mktemp("net") / "tiny.pt"
    net.save(str(path))
    return path, inception.file_sha256(path)


@pytest.fixture
def faces(tmp_path) -> Path:
    write_faces(tmp_path / "faces", count=12, size=40)
    return tmp_path / "faces"


def training_run(folder: Path, checkpoint: Path) -> Path:
    """A run directory as train.py leaves one for ``checkpoint``'s network: its config.json is what --run checks."""
    folder.mkdir()
    (folder / "config.json").write_text(TrainConfig(model=load_generator(checkpoint).cfg).to_json())
    return folder


def cli(checkpoint, reference, network, tmp_path, *extra) -> int:
    path, sha = network
    return main(["--checkpoint", str(checkpoint), "--reference", str(reference), "--num-samples", "8",
                 "--batch-size", "4", "--inception", str(path), "--inception-sha256", sha,
                 "--cache-dir", str(tmp_path / "cache"), "--device", "cpu", *map(str, extra)])


def test_cli_appends_fid_and_kid_of_seeds_against_the_holdout_split(tiny_checkpoint, faces, tiny_network, tmp_path,
                                                                    monkeypatch, capsys):
    run = training_run(tmp_path / "run", tiny_checkpoint)
    assert cli(tiny_checkpoint, f"{faces}/", tiny_network, tmp_path, "--holdout", 6, "--run", run) == 0
    out = capsys.readouterr().out
    assert "FID" in out and "precision" in out and "recall" in out
    (record,) = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert record["num_samples"] == 8 and record["num_reference"] == 6 and record["network"] == tiny_network[1]
    assert (record["reference"], record["holdout"], record["step"]) == (f"{faces}/", 6, None)  # as given

    extract = inception.load(tiny_network[0], expected_sha256=tiny_network[1])
    g = load_generator(tiny_checkpoint)
    fake = extract(torch.from_numpy(generate(g, latents(range(8), g.cfg.z_dim))).permute(0, 3, 1, 2))
    real = extract(load_images(faces, 32, holdout=6, split="holdout"))
    assert record["fid"] == pytest.approx(metrics.fid(fake, real), rel=1e-6) and record["fid"] > 0
    assert record["kid"] == pytest.approx(metrics.kid(fake, real), rel=1e-6)
    assert (record["precision"], record["recall"]) == pytest.approx(metrics.precision_recall(real, fake))
    # How much attention depends on the query, per layer, over the faces of seeds 0..63 (issue 20).
    expected = generator_report(g)
    assert set(record["attention"]) == set(expected) == {"attn.8", "attn.16"}
    for layer, measures in expected.items():
        assert record["attention"][layer] == pytest.approx(measures)
    assert {"mi_bits", "mi_normalised", "row_entropy_bits", "pairwise_distance", "mean_distance_px"} == \
        set(record["attention"]["attn.16"])
    assert f"attn.16: I(Q;K) {record['attention']['attn.16']['mi_bits']:.2f} bits" in out

    # Second run: the reference comes from the cache, the images are never decoded again.
    monkeypatch.setattr(evaluate_module, "load_images", lambda *a, **k: pytest.fail("reference decoded twice"))
    assert cli(tiny_checkpoint, faces, tiny_network, tmp_path, "--holdout", 6, "--run", run) == 0
    # Third run: the cached .npz passed as the reference.
    assert cli(tiny_checkpoint, record["reference_cache"], tiny_network, tmp_path, "--run", run) == 0
    again = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()][1:]
    for other in again:
        assert other["fid"] == pytest.approx(record["fid"], rel=1e-12)
        assert other["kid"] == pytest.approx(record["kid"], rel=1e-12)


@pytest.mark.parametrize("value, threshold", [(0.5, 0.5), (3, None)])
def test_truncation_scores_the_faces_the_app_draws_at_that_slider_value(value, threshold, tiny_checkpoint, faces,
                                                                        tiny_network, tmp_path, capsys):
    run = training_run(tmp_path / "run", tiny_checkpoint)
    assert cli(tiny_checkpoint, faces, tiny_network, tmp_path, "--holdout", 6, "--run", run, "--truncation", value) == 0
    out = capsys.readouterr().out
    assert ("at truncation 0.5" in out) == (threshold is not None)
    (record,) = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert record["truncation"] == threshold
    extract = inception.load(tiny_network[0], expected_sha256=tiny_network[1])
    g = load_generator(tiny_checkpoint)
    real = extract(load_images(faces, 32, holdout=6, split="holdout"))
    for truncation in (threshold, 0.5 if threshold is None else None):
        fake = extract(torch.from_numpy(generate(g, latents(range(8), g.cfg.z_dim, truncation))).permute(0, 3, 1, 2))
        assert (record["fid"] == pytest.approx(metrics.fid(fake, real), rel=1e-6)) == (truncation == threshold)


def test_reference_statistics_are_cached_per_holdout_and_network(tiny_checkpoint, faces, tiny_network, tmp_path):
    from sagan.evaluate import reference_cache_path
    keys = {reference_cache_path(faces, holdout, 32, network, tmp_path)
            for holdout, network in ((6, "a"), (4, "a"), (6, "b"))}
    assert len(keys) == 3
    records = []
    for holdout in (6, 4):  # the same cache folder: the second must not reuse the first's statistics
        run = training_run(tmp_path / f"run{holdout}", tiny_checkpoint)
        assert cli(tiny_checkpoint, faces, tiny_network, tmp_path, "--holdout", holdout, "--run", run) == 0
        records.append(json.loads((run / "metrics.jsonl").read_text()))
    assert [r["num_reference"] for r in records] == [6, 4] and records[0]["fid"] != records[1]["fid"]


def test_fid_of_the_generator_against_its_own_faces_is_zero(tiny_checkpoint, faces, tmp_path):
    own = tmp_path / "own"
    assert sample.main(["--checkpoint", str(tiny_checkpoint), "--seeds", "0-7", "--outdir", str(own)]) == 0
    extract = inception.InceptionFeatures(torch.jit.script(TinyFeatureNet()))
    against_own = evaluate(tiny_checkpoint, own, extract, "tiny", num_samples=8, cache_dir=tmp_path / "cache")
    against_others = evaluate(tiny_checkpoint, faces, extract, "tiny", num_samples=8, cache_dir=tmp_path / "cache")
    assert against_own["fid"] == pytest.approx(0.0, abs=1e-6)
    assert against_others["fid"] > 1e-3


def test_reference_stats_are_refused_for_another_network_or_size(tiny_checkpoint, faces, tiny_network, tmp_path):
    assert cli(tiny_checkpoint, faces, tiny_network, tmp_path) == 0
    (cached,) = (tmp_path / "cache").glob("reference-*.npz")
    with pytest.raises(evaluate_module.EvaluationError, match="feature network"):
        evaluate_module.load_reference(cached, 32, "another network")
    with pytest.raises(evaluate_module.EvaluationError, match="64 px"):
        evaluate_module.load_reference(cached, 64, tiny_network[1])


def test_stats_without_features_give_fid_only(tiny_checkpoint, tmp_path, tiny_network, capsys):
    np.savez(tmp_path / "stats.npz", mu=np.zeros(8), sigma=np.eye(8))
    run = training_run(tmp_path / "run", tiny_checkpoint)
    assert cli(tiny_checkpoint, tmp_path / "stats.npz", tiny_network, tmp_path, "--run", run) == 0
    record = json.loads((run / "metrics.jsonl").read_text())
    assert math.isfinite(record["fid"]) and record["kid"] is record["precision"] is record["recall"] is None
    assert "KID, precision, recall n/a (no reference features)" in capsys.readouterr().out


def test_too_few_faces_for_precision_and_recall_still_give_fid_and_kid(tiny_checkpoint, faces, tiny_network, tmp_path,
                                                                        capsys):
    run = training_run(tmp_path / "run", tiny_checkpoint)
    assert cli(tiny_checkpoint, faces, tiny_network, tmp_path, "--num-samples", 3, "--run", run) == 0
    assert "precision, recall n/a (more than 3 faces needed)" in capsys.readouterr().out
    record = json.loads((run / "metrics.jsonl").read_text())
    assert math.isfinite(record["fid"]) and math.isfinite(record["kid"])
    assert record["precision"] is record["recall"] is None


@pytest.mark.parametrize("case, message", [
    ("missing checkpoint", "no generator weights"),
    ("wrong hash", "has sha256"),
    ("empty folder", "no images"),
    ("missing npz", "no reference statistics"),
    ("holdout with npz", "leave --holdout out"),
    ("missing run", "--run '{tmp}/no-such-run' does not exist"),
    ("another run", "trained another network than"),
])
def test_user_errors_print_one_line(case, message, tiny_checkpoint, faces, tiny_network, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    np.savez(tmp_path / "stats.npz", mu=np.zeros(8), sigma=np.eye(8))
    checkpoint, reference, network, extra = tiny_checkpoint, faces, tiny_network, []
    if case == "missing checkpoint":
        checkpoint = tmp_path / "none.safetensors"
    elif case == "wrong hash":
        network = (tiny_network[0], inception.INCEPTION_SHA256)
    elif case == "empty folder":
        reference = tmp_path / "empty"
    elif case == "missing npz":
        reference = tmp_path / "none.npz"
    elif case == "holdout with npz":
        reference, extra = tmp_path / "stats.npz", ["--holdout", 2]
    elif case == "missing run":
        extra = ["--run", tmp_path / "no-such-run"]
    else:  # a run of a wider network: its metrics.jsonl must not get this checkpoint's FID
        (tmp_path / "other").mkdir()
        (tmp_path / "other" / "config.json").write_text(TrainConfig(model=preset("sagan", 32)).to_json())
        extra = ["--run", tmp_path / "other"]
    assert cli(checkpoint, reference, network, tmp_path, *extra) == 2
    assert not (tmp_path / "other" / "metrics.jsonl").exists()
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message.format(tmp=tmp_path) in err and err.count("\n") == 1


UNUSABLE_INPUTS = [
    ("one image", "error: --reference '{faces}' holds 1 image and a FID needs at least 2: pass a folder or .zip of "
                  "more images.\n"),
    ("holdout 1", "error: --holdout 1 selects 1 reference image and a FID needs at least 2: pass --holdout 2 or "
                  "more.\n"),
    ("holdout -1", "error: --holdout -1 is not between 0 and 11, one less than the 12 image files in '{faces}': pass "
                   "a --holdout in that range (0: all of them).\n"),
    ("holdout of every file", "error: --holdout 12 is not between 0 and 11, one less than the 12 image files in "
                              "'{faces}': pass a --holdout in that range (0: all of them).\n"),
    ("truncation 0.1", "error: truncation must be between 0.2 and 3.0 (3.0 = off), got 0.1.\n"),
    ("cache-dir is a file", "error: cannot write --cache-dir '{taken}': '{taken}' is a file, not a folder. Choose "
                            "another --cache-dir.\n"),
    ("cache-dir inside a file", "error: cannot write --cache-dir '{taken}/sub': '{taken}' is a file, not a folder. "
                                "Choose another --cache-dir.\n"),
    ("read-only cache-dir", "error: cannot write --cache-dir '{read_only}/sub': '{read_only}' is a read-only folder. "
                            "Choose another --cache-dir.\n"),
    ("default cache-dir in a read-only folder", "error: cannot write --cache-dir '.cache': '{read_only}' is a "
                                                "read-only folder. Choose another --cache-dir.\n"),
    ("run is a file", "error: --run '{taken}' is a file, not a directory: pass the --out of a training run.\n"),
    ("run without config.json", "error: --run '{run}' is not a training run's --out: it has no config.json. Pass the "
                                "run the checkpoint was exported from, or leave --run out.\n"),
    ("metrics.jsonl is a folder", "error: --run '{run}': cannot append to '{run}/metrics.jsonl' (Is a directory): "
                                  "pass a run you can write to, or leave --run out.\n"),
    ("metrics.jsonl inside a file", "error: --run '{run}': cannot append to '{run}/metrics.jsonl' (Not a "
                                    "directory): pass a run you can write to, or leave --run out.\n"),
]


@pytest.mark.parametrize("case, message", UNUSABLE_INPUTS, ids=[case for case, _ in UNUSABLE_INPUTS])
def test_unusable_input_is_refused_before_inception_loads(case, message, tiny_checkpoint, faces, tiny_network,
                                                          tmp_path, monkeypatch, capsys):
    taken, read_only, run, extra = tmp_path / "taken", tmp_path / "read-only", tmp_path / "run", []
    taken.write_text("a file, not a folder")
    read_only.mkdir()
    if case == "one image":
        for extra_face in sorted(faces.iterdir())[1:]:
            extra_face.unlink()
    elif case == "truncation 0.1":
        extra = ["--truncation", 0.1]
    elif case.startswith("holdout"):
        extra = ["--holdout", {"holdout 1": 1, "holdout -1": -1, "holdout of every file": 12}[case]]
    elif case.startswith("run"):
        if case == "run without config.json":
            run.mkdir()
        extra = ["--run", taken if case == "run is a file" else run]
    elif case.startswith("metrics.jsonl"):
        training_run(run, tiny_checkpoint)
        if case == "metrics.jsonl is a folder":
            (run / "metrics.jsonl").mkdir()
        else:
            (run / "metrics.jsonl").symlink_to(taken / "metrics.jsonl")
        extra = ["--run", run]
    else:  # the last --cache-dir wins over the one cli() passes
        make_read_only(monkeypatch, read_only)
        if case == "default cache-dir in a read-only folder":
            monkeypatch.chdir(read_only)
        extra = ["--cache-dir", {"cache-dir is a file": taken, "cache-dir inside a file": taken / "sub",
                                 "read-only cache-dir": read_only / "sub"}.get(case, ".cache")]
    monkeypatch.setattr(inception, "load", lambda *a, **k: pytest.fail("Inception loaded for a doomed evaluation"))
    assert cli(tiny_checkpoint, faces, tiny_network, tmp_path, *extra) == 2
    assert capsys.readouterr().err == message.format(faces=faces, taken=taken, read_only=read_only, run=run)
    assert not (tmp_path / "cache").exists() and not (run / "metrics.jsonl").is_file()


def test_read_only_cache_dir_that_holds_the_statistics_serves_them(tiny_checkpoint, faces, tiny_network, tmp_path,
                                                                   monkeypatch):
    assert cli(tiny_checkpoint, faces, tiny_network, tmp_path) == 0
    make_read_only(monkeypatch, tmp_path / "cache")
    monkeypatch.setattr(evaluate_module, "load_images", lambda *a, **k: pytest.fail("reference decoded twice"))
    assert cli(tiny_checkpoint, faces, tiny_network, tmp_path) == 0


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full, the device every write to fails")
def test_result_that_cannot_be_appended_is_printed_then_reported_in_one_line(tiny_checkpoint, faces, tiny_network,
                                                                             tmp_path, capsys):
    run = training_run(tmp_path / "run", tiny_checkpoint)
    (run / "metrics.jsonl").symlink_to("/dev/full")  # it opens for appending, then writes fail as on a full disk
    assert cli(tiny_checkpoint, faces, tiny_network, tmp_path, "--run", run) == 2
    out, err = capsys.readouterr()
    assert out.startswith("FID ") and "Traceback" not in err  # (err holds the progress bars first)
    assert err.endswith(f"\nerror: --run '{run}': the result printed above could not be appended to "
                        f"'{run}/metrics.jsonl' (No space left on device): record it by hand, or evaluate again once "
                        "the file can be written.\n")


def npy_bytes(array: np.ndarray) -> bytes:
    with io.BytesIO() as buffer:
        np.save(buffer, array)
        return buffer.getvalue()


def write_junk_npz(case: str, path: Path) -> None:
    if case == "text":
        path.write_text("mu, sigma = 0, 1\n")
    elif case == "empty":
        path.write_bytes(b"")
    elif case == "an .npy":
        path.write_bytes(npy_bytes(np.zeros(8)))
    elif case == "a member that is no .npy":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("mu.npy", b"not an array")
            archive.writestr("sigma.npy", npy_bytes(np.eye(8)))
    elif case == "object arrays":
        np.savez(path, mu=np.array([None] * 8), sigma=np.eye(8))
    elif case == "no sigma":
        np.savez(path, mu=np.zeros(8))
    elif case == "sigma of another size":
        np.savez(path, mu=np.zeros(8), sigma=np.eye(4))
    else:  # features of another size
        np.savez(path, mu=np.zeros(8), sigma=np.eye(8), features=np.zeros((4, 3)))


@pytest.mark.parametrize("case", ["text", "empty", "an .npy", "a member that is no .npy", "object arrays", "no sigma",
                                  "sigma of another size", "features of another size"])
def test_junk_npz_reference_is_refused_without_advising_unsafe_loading(case, tiny_checkpoint, tiny_network,
                                                                       tmp_path, capsys):
    junk = tmp_path / "junk.npz"
    write_junk_npz(case, junk)
    assert cli(tiny_checkpoint, junk, tiny_network, tmp_path) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: '{junk}' is not reference statistics written by sagan.evaluate (")
    assert err.endswith("): pass the .npz it wrote, or the image folder or .zip to compute them from.\n")
    assert err.count("\n") == 1 and "pickle" not in err


def test_reference_with_fewer_than_two_decodable_images_is_refused_before_encoding(faces, tmp_path):
    for damaged in sorted(faces.iterdir())[1:]:
        damaged.write_bytes(b"not a jpeg")
    decoded_one = "only 1 of the selected reference images in .* could be decoded and a FID needs at least 2: replace"
    with pytest.warns(UserWarning, match="skipped 11 of 12"), pytest.raises(evaluate_module.EvaluationError,
                                                                            match=decoded_one):
        evaluate_module.reference_statistics(faces, 32, lambda x: pytest.fail("reference encoded"), "tiny",
                                             cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_module_entry_point_exits_2_without_traceback(tiny_checkpoint, faces, tmp_path):
    result = subprocess.run([sys.executable, "-m", "sagan.evaluate", "--checkpoint", str(tiny_checkpoint),
                             "--reference", str(faces), "--inception", str(tmp_path / "none.pt")],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.startswith("error: no Inception network") and "Traceback" not in result.stderr


def test_the_faces_scored_are_the_faces_the_app_draws_for_those_seeds(tiny_checkpoint, tmp_path):
    """From an export with standing statistics (exported as train.py does), each seed's face in
    evaluation's batches is the app's one-face render of that seed: BatchNorm samples in eval mode. (Up to one
    colour level in a rare value: a batch of 4 runs other convolution kernels than a batch of 1, whose float
    results differ by about 1e-6, which can round across a level; per-batch statistics would move every pixel.)"""
    exported = tmp_path / "standing.safetensors"
    export_generator(load_generator(tiny_checkpoint), exported)
    assert read_export_metadata(exported)["standing_stats_batches"] == "40"
    g = load_generator(exported)
    scored = []

    def extractor(images):
        scored.append(images)
        return images.float().flatten(1)[:, :8]
    generated_features(g, 7, extractor, batch_size=4, progress=False)  # batches of 4 and 3
    faces = torch.cat(scored).permute(0, 2, 3, 1).numpy()
    for seed in range(7):
        apart = np.abs(faces[seed].astype(int) - render(g, latent(seed, g.cfg.z_dim)).face.astype(int))
        assert apart.max() <= 1 and (apart > 0).mean() < 0.001
