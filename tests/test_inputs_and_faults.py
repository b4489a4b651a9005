"""Bad inputs and faults: arguments, image files, output folders, weight files, interrupts,
run ids, and NaN/Inf activations (signals during report writing: test_signals_in_writer.py).
Every CLI run is a real subprocess on the CPU with --weights random (or a local models dir
for the weight-file cases); the only model that runs is yolo11n-detect (plus yolo11n-segment
for --keep-going and depth-anything-v2-small in the SIGINT test), with one or two runs on tiny
images."""

import csv
import json
import math
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import SCRIPT, load_run, run_cli
from PIL import Image

import vision_bench.cli
import vision_bench.run.preparation
from vision_bench.cli import prepare_output
from vision_bench.common import UsageError, atomic_write_json
from vision_bench.images import discover_images, load_rgb
from vision_bench.inspect.dissection import LayerDissector
from vision_bench.inspect.layer_stats import tensor_stats
from vision_bench.reports.write import csv_columns

ALL_MODEL_NAMES = [
    "depthpro",
    "depth-anything-v2-small",
    "depth-anything-v2-base",
    "depth-anything-v2-large",
    "yolo11n-detect",
    "yolo11n-segment",
    "yolo11n-pose",
    "mobilesam",
]
MODEL_RUN_TIMEOUT = 300  # seconds for a CLI run that benchmarks a model
FAST_TIMEOUT = 120  # seconds for a run that must stop before or at the first model load


# =========================================================================================
# Helpers
# =========================================================================================
def _reject_constant(name):
    raise ValueError(f"non-strict JSON constant {name!r}")


def strict_loads(text: str):
    """json.loads that refuses NaN, Infinity and -Infinity (which Python's json accepts)."""
    return json.loads(text, parse_constant=_reject_constant)


def strict_run(output_dir: Path) -> dict:
    """load_run, plus: the JSON is strict, the CSV parses with the documented header, the
    Markdown is a report."""
    run = load_run(output_dir)
    json_path = run["results_dir"] / f"benchmark_results_{run['run_id']}.json"
    run["json"] = strict_loads(json_path.read_text())
    with open(run["csv_path"], newline="") as f:
        reader = csv.DictReader(f)
        run["csv_header"] = reader.fieldnames
        run["csv_rows"] = list(reader)
    for row in run["csv_rows"]:
        assert None not in row, f"CSV row has more fields than the header: {row}"
        assert all(v is not None for v in row.values()), f"CSV row has fewer fields than the header: {row}"
    run["md"] = run["md_path"].read_text()
    assert run["md"].startswith("# Vision model benchmark report")
    return run


def nothing_written(output_dir: Path) -> bool:
    """True when the run left nothing under output_dir/results (the folder may be absent)."""
    results = Path(output_dir) / "results"
    return not results.exists() or not any(results.iterdir())


def one_line_error(proc) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected a one-line error on stderr, got:\n{proc.stderr}"
    assert lines[0].startswith("[ERROR]"), lines[0]
    return lines[0]


def assert_usage_exit(proc, output_dir: Path | None = None) -> str:
    """Exit code 2, one [ERROR] line on stderr, no model loaded, nothing under results/."""
    assert proc.returncode == 2, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert "[LOAD]" not in proc.stdout, proc.stdout
    line = one_line_error(proc)
    if output_dir is not None:
        assert nothing_written(output_dir), (
            f"a rejected run wrote under {output_dir}/results: {sorted(p.name for p in (output_dir / 'results').rglob('*'))}"
        )
    return line


def save_noise(path: Path, size=(160, 120), fmt=None, seed=0) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path, format=fmt, quality=90)
    return path


# Bad image files: each writer makes the file and returns its path.
def make_corrupt_png(folder: Path) -> Path:
    """A real PNG whose compressed pixel data (IDAT) is overwritten: zlib fails on decode."""
    good = save_noise(folder / "_tmp_good.png", fmt="PNG")
    data = bytearray(good.read_bytes())
    good.unlink()
    i = data.find(b"IDAT")
    data[i + 20 : i + 400] = bytes(np.random.default_rng(1).integers(0, 256, 380, dtype=np.uint8))
    path = folder / "corrupt.png"
    path.write_bytes(bytes(data))
    return path


def make_truncated_jpeg(folder: Path) -> Path:
    """The first half of a valid JPEG: the header parses, the scan data stops early."""
    good = save_noise(folder / "_tmp_good.jpg")
    data = good.read_bytes()
    good.unlink()
    path = folder / "truncated.jpg"
    path.write_bytes(data[: len(data) // 2])
    return path


def make_text_as_jpeg(folder: Path) -> Path:
    path = folder / "notes.jpg"
    path.write_text("this is not an image\n")
    return path


def make_zero_byte(folder: Path) -> Path:
    path = folder / "empty.jpg"
    path.write_bytes(b"")
    return path


BAD_IMAGE_WRITERS = {
    "corrupt": make_corrupt_png,
    "truncated": make_truncated_jpeg,
    "text_named_jpg": make_text_as_jpeg,
    "zero_bytes": make_zero_byte,
}


# Unusual but valid images: name -> (writer, expected load_rgb size)
def _write_L(p):
    Image.linear_gradient("L").resize((48, 32)).save(p)


def _write_RGBA(p):
    Image.new("RGBA", (48, 32), (255, 0, 0, 0)).save(p)


def _write_P(p):
    Image.new("RGB", (48, 32), (10, 200, 30)).convert("P", palette=Image.Palette.ADAPTIVE, colors=4).save(p)


def _write_P_transparency(p):
    im = Image.new("P", (48, 32), 0)
    im.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    im.paste(1, (0, 0, 24, 32))
    im.save(p, transparency=0)


def _write_I16(p):
    arr = np.zeros((32, 48), dtype=np.uint16)
    arr[:, 24:] = 65535
    arr[:, 12:24] = 32768
    Image.fromarray(arr).save(p)


def _write_CMYK(p):
    Image.new("CMYK", (48, 32), (0, 255, 255, 0)).save(p, quality=95)  # red in CMYK


def _write_exif_rotated(p):
    """Stored 64 wide x 32 high, left half red, right half blue, with EXIF Orientation=6
    (rotate 90 degrees clockwise to display): shown 32 wide x 64 high, red on top."""
    im = Image.new("RGB", (64, 32), (0, 0, 255))
    im.paste((255, 0, 0), (0, 0, 32, 32))
    exif = im.getexif()
    exif[0x0112] = 6
    im.save(p, exif=exif, quality=95)


ODD_IMAGES = {
    "gray_L.png": (_write_L, "L", (48, 32)),
    "rgba.png": (_write_RGBA, "RGBA", (48, 32)),
    "palette_P.png": (_write_P, "P", (48, 32)),
    "palette_P_transparency.png": (_write_P_transparency, "P", (48, 32)),
    "gray16_I16.png": (_write_I16, "I;16", (48, 32)),
    "cmyk.jpg": (_write_CMYK, "CMYK", (48, 32)),
    "exif_rot6.jpg": (_write_exif_rotated, "RGB", (32, 64)),
}


def write_odd_images(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, (writer, _, _) in ODD_IMAGES.items():
        writer(folder / name)
        out[name] = folder / name
    return out


def small_image(folder: Path, sample_image: Path, name="good.jpg") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / name
    with Image.open(sample_image) as im:
        im.resize((96, 128)).save(target, quality=90)
    return target


def fast_cli(*args, timeout=FAST_TIMEOUT, env=None):
    return run_cli(*args, timeout=timeout, env=env)


def model_cli(*args, timeout=MODEL_RUN_TIMEOUT, env=None):
    return run_cli(*args, timeout=timeout, env=env)


@pytest.fixture(scope="module")
def seg_checkpoint(tmp_path_factory) -> Path:
    """A valid yolo11n-seg.pt with random weights, saved in ultralytics' own format."""
    from ultralytics import YOLO

    path = tmp_path_factory.mktemp("seg_ckpt") / "yolo11n-seg.pt"
    YOLO("yolo11n-seg.yaml").save(str(path))
    assert path.stat().st_size > 1_000_000
    return path


def corrupt_models_dir(folder: Path, seg_checkpoint: Path | None = None, kind: str = "garbage") -> Path:
    """models dir whose yolo11n.pt is garbage bytes (or a truncated real checkpoint), and
    optionally a valid yolo11n-seg.pt."""
    folder.mkdir(parents=True, exist_ok=True)
    if kind == "garbage":
        (folder / "yolo11n.pt").write_bytes(bytes(np.random.default_rng(7).integers(0, 256, 4096, dtype=np.uint8)))
    else:  # a real checkpoint cut in half: a truncated download
        data = seg_checkpoint.read_bytes()
        (folder / "yolo11n.pt").write_bytes(data[: len(data) // 2])
    if seg_checkpoint is not None:
        (folder / "yolo11n-seg.pt").write_bytes(seg_checkpoint.read_bytes())
    return folder


# =========================================================================================
# --models
# =========================================================================================
def test_unknown_model_name_exits_2_listing_valid_names(tmp_path):
    out = tmp_path / "out"
    proc = fast_cli("--models", "yolo11n-detect,not-a-model", "--weights", "random", "--output-dir", out)
    line = assert_usage_exit(proc, out)
    assert "not-a-model" in line
    for name in ALL_MODEL_NAMES:
        assert name in line, f"valid name {name} missing from: {line}"
    assert not out.exists(), "rejected before anything is created"


@pytest.mark.parametrize("value", ["", ",", " , "])
def test_empty_model_list_exits_2_listing_valid_names(tmp_path, value):
    out = tmp_path / "out"
    proc = fast_cli("--models", value, "--weights", "random", "--output-dir", out)
    line = assert_usage_exit(proc, out)
    assert "empty" in line.lower()
    for name in ALL_MODEL_NAMES:
        assert name in line
    assert not out.exists()


def test_duplicate_models_run_once(tmp_path, sample_image):
    img = small_image(tmp_path / "img", sample_image)
    out = tmp_path / "out"
    proc = model_cli(
        "--models",
        "yolo11n-detect,yolo11n-detect",
        "--weights",
        "random",
        "--device",
        "cpu",
        "--runs",
        "1",
        "--images",
        img,
        "--output-dir",
        out,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "duplicates removed" in proc.stdout
    assert "[1/1] YOLO11nDetect" in proc.stdout and "[2/" not in proc.stdout
    run = strict_run(out)
    data = run["json"]
    assert [m["cli_name"] for m in data["models"]] == ["yolo11n-detect"]
    assert data["config"]["models"] == ["yolo11n-detect"]
    assert data["models"][0]["status"] == "complete"
    assert [r["kind"] for r in data["models"][0]["runs"]] == ["cold", "warmup", "timed"]
    assert len(run["csv_rows"]) == 1


# =========================================================================================
# --runs and --device
# =========================================================================================
@pytest.mark.parametrize("value", ["0", "-3", "abc"])
def test_bad_runs_exits_2(tmp_path, sample_image, value):
    out = tmp_path / "out"
    proc = fast_cli(
        "--models",
        "yolo11n-detect",
        "--weights",
        "random",
        "--runs",
        value,
        "--images",
        sample_image,
        "--output-dir",
        out,
    )
    line = assert_usage_exit(proc, out)
    assert "--runs" in line and value in line, line
    assert not out.exists()


# A bad --device is rejected before prepare_output() creates any folder.
@pytest.mark.parametrize(
    "device, reason",
    [("cuda", "not available"), ("cuda:7", "not available"), ("tpu", "expected auto, cpu, cuda or cuda:n")],
)
def test_bad_device_exits_2_and_writes_nothing(tmp_path, sample_image, device, reason):
    import torch

    if torch.cuda.is_available() and device.startswith("cuda"):
        pytest.skip("this machine has CUDA")
    out = tmp_path / "out"
    proc = fast_cli(
        "--models",
        "yolo11n-detect",
        "--weights",
        "random",
        "--device",
        device,
        "--images",
        sample_image,
        "--output-dir",
        out,
    )
    assert proc.returncode == 2, proc.stderr
    line = one_line_error(proc)
    assert device in line and reason in line.lower(), line
    assert "[LOAD]" not in proc.stdout
    assert nothing_written(out), (
        f"rejected --device {device} left {sorted(str(p.relative_to(out)) for p in out.rglob('*'))}"
    )


# =========================================================================================
# --images
# =========================================================================================
def test_images_missing_path_exits_2(tmp_path):
    out = tmp_path / "out"
    missing = tmp_path / "no_such_folder"
    proc = fast_cli("--models", "yolo11n-detect", "--weights", "random", "--images", missing, "--output-dir", out)
    line = assert_usage_exit(proc, out)
    assert str(missing) in line and "does not exist" in line


def test_images_empty_folder_exits_2(tmp_path):
    out = tmp_path / "out"
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = fast_cli("--models", "yolo11n-detect", "--weights", "random", "--images", empty, "--output-dir", out)
    line = assert_usage_exit(proc, out)
    assert str(empty) in line


@pytest.mark.parametrize("kind", ["other_suffixes", "fake_images"])
def test_images_folder_of_non_images_exits_2(tmp_path, kind):
    out = tmp_path / "out"
    folder = tmp_path / "junk"
    folder.mkdir()
    if kind == "other_suffixes":  # no .jpg/.jpeg/.png at all
        (folder / "readme.txt").write_text("hello")
        (folder / "data.csv").write_text("a,b\n1,2\n")
    else:  # image suffixes, but none decodes
        for writer in BAD_IMAGE_WRITERS.values():
            writer(folder)
    proc = fast_cli("--models", "yolo11n-detect", "--weights", "random", "--images", folder, "--output-dir", out)
    assert_usage_exit(proc, out)
    if kind == "fake_images":
        for name in ("corrupt.png", "truncated.jpg", "notes.jpg", "empty.jpg"):
            assert f"Skipping image {folder / name}" in proc.stdout


@pytest.mark.parametrize("state", ["empty", "missing"])
def test_default_folder_falls_back_to_bundled_samples(ub, tmp_path, monkeypatch, capsys, state):
    folder = tmp_path / "test_data"
    if state == "empty":
        folder.mkdir()
    images, source = discover_images(None, folder)
    assert [p.name for p in images] == ["bus.jpg", "zidane.jpg"]
    assert all(p.is_file() for p in images)
    assert source == "ultralytics bundled samples"
    out_lines = capsys.readouterr().out.splitlines()
    info = [line for line in out_lines if line.startswith("[INFO]")]
    assert len(info) == 1, out_lines
    assert str(folder) in info[0] and "bus.jpg" in info[0] and "zidane.jpg" in info[0]
    assert not any(line.startswith("[WARNING]") for line in out_lines)


# =========================================================================================
# Unreadable image files
# =========================================================================================
@pytest.mark.parametrize("kind", list(BAD_IMAGE_WRITERS))
def test_bad_image_is_skipped_with_warning(ub, tmp_path, sample_image, capsys, kind):
    folder = tmp_path / "imgs"
    good = small_image(folder, sample_image, name="a_good.jpg")
    bad = BAD_IMAGE_WRITERS[kind](folder)
    images, source = discover_images([str(folder)], ub.DEFAULT_IMAGE_DIR)
    assert images == [good]
    assert source == "--images"
    warnings = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[WARNING]")]
    assert len(warnings) == 1, warnings
    assert str(bad) in warnings[0]


def test_only_bad_images_given_is_a_usage_error(ub, tmp_path, capsys):
    folder = tmp_path / "imgs"
    folder.mkdir()
    bad = [writer(folder) for writer in BAD_IMAGE_WRITERS.values()]
    with pytest.raises(UsageError, match="no readable image"):
        discover_images([str(folder)], ub.DEFAULT_IMAGE_DIR)
    out = capsys.readouterr().out
    for path in bad:
        assert f"Skipping image {path}" in out


def test_cli_run_continues_past_bad_images(tmp_path, sample_image):
    folder = tmp_path / "imgs"
    good = small_image(folder, sample_image, name="good.jpg")
    bad = [writer(folder) for writer in BAD_IMAGE_WRITERS.values()]
    out = tmp_path / "out"
    proc = model_cli(
        "--models",
        "yolo11n-detect",
        "--weights",
        "random",
        "--device",
        "cpu",
        "--runs",
        "1",
        "--no-dissect",
        "--images",
        folder,
        "--output-dir",
        out,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    warning_lines = [line for line in proc.stdout.splitlines() if line.startswith("[WARNING] Skipping image")]
    for path in bad:
        assert any(str(path) in line for line in warning_lines), f"no warning names {path}"
    data = strict_run(out)["json"]
    assert data["status"] == "complete"
    assert data["images"] == [str(good)]
    assert [r["image"] for r in data["models"][0]["runs"]] == ["good.jpg"] * 3  # cold start, warm-up, timed


# =========================================================================================
# Image modes
# =========================================================================================
@pytest.mark.parametrize("name", list(ODD_IMAGES))
def test_load_rgb_converts_every_mode(ub, tmp_path, name):
    writer, mode_on_disk, expected_size = ODD_IMAGES[name]
    path = tmp_path / name
    writer(path)
    with Image.open(path) as raw:
        assert raw.mode == mode_on_disk, "the test image has the mode it is meant to test"
    im = load_rgb(path)
    assert im.mode == "RGB"
    assert im.size == expected_size
    px = np.asarray(im).astype(int)
    if name == "gray_L.png":
        assert (px[..., 0] == px[..., 1]).all() and (px[..., 1] == px[..., 2]).all()
    elif name == "gray16_I16.png":  # 16-bit scaled to 8 bits: 0 -> 0, 32768 -> 127/128, 65535 -> 255
        assert px[0, 0].tolist() == [0, 0, 0]
        assert 126 <= px[0, 15, 0] <= 128
        assert px[0, 40].tolist() == [255, 255, 255]
    elif name == "cmyk.jpg":
        assert px[16, 24, 0] > 200 and px[16, 24, 1] < 50 and px[16, 24, 2] < 50
    elif name == "palette_P_transparency.png":
        assert px[16, 5].tolist() == [255, 0, 0] and px[16, 40].tolist() == [0, 0, 0]
    elif name == "exif_rot6.jpg":  # red half on top once the rotation is applied
        assert px[5, 16, 0] > 200 and px[5, 16, 2] < 50
        assert px[58, 16, 2] > 200 and px[58, 16, 0] < 50


def test_cli_run_over_every_image_mode(tmp_path):
    paths = write_odd_images(tmp_path / "imgs")
    out = tmp_path / "out"
    proc = model_cli(
        "--models",
        "yolo11n-detect",
        "--weights",
        "random",
        "--device",
        "cpu",
        "--runs",
        "1",
        "--no-dissect",
        "--images",
        tmp_path / "imgs",
        "--output-dir",
        out,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "[WARNING] Skipping image" not in proc.stdout
    data = strict_run(out)["json"]
    assert data["status"] == "complete"
    runs = [r for r in data["models"][0]["runs"] if r["kind"] == "timed"]
    assert sorted(r["image"] for r in runs) == sorted(paths)  # one timed run per image
    sizes = {r["image"]: r["image_size"] for r in runs}
    for name, (_, _, size) in ODD_IMAGES.items():
        assert sizes[name] == list(size), name  # EXIF rotation applied in the CLI too


def test_cli_tiny_and_huge_images(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.new("RGB", (1, 1), (200, 30, 30)).save(folder / "a_1x1.png")  # first: gets FLOPs, output, dissection
    Image.linear_gradient("L").resize((6000, 4000)).convert("RGB").save(folder / "b_6000x4000.jpg", quality=80)
    out = tmp_path / "out"
    proc = model_cli(
        "--models",
        "yolo11n-detect",
        "--weights",
        "random",
        "--device",
        "cpu",
        "--runs",
        "1",
        "--images",
        folder,
        "--output-dir",
        out,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run = strict_run(out)
    model = run["json"]["models"][0]
    assert model["status"] == "complete"
    assert {r["image"]: r["image_size"] for r in model["runs"]} == {
        "a_1x1.png": [1, 1],
        "b_6000x4000.jpg": [6000, 4000],
    }
    assert all(r["total_s"] > 0 for r in model["runs"])
    assert model["dissection"]["records"] > 0 and model["gflops"] > 0


# =========================================================================================
# --output-dir
# =========================================================================================
def test_output_dir_is_a_file(tmp_path, sample_image):
    target = tmp_path / "i_am_a_file"
    target.write_text("keep me")
    proc = fast_cli(
        "--models",
        "yolo11n-detect",
        "--weights",
        "random",
        "--device",
        "cpu",
        "--images",
        sample_image,
        "--output-dir",
        target,
    )
    line = assert_usage_exit(proc)
    assert str(target) in line and "file" in line
    assert target.read_text() == "keep me"


def test_output_dirs_results_is_a_file(tmp_path, sample_image):
    out = tmp_path / "out"
    out.mkdir()
    (out / "results").write_text("keep me")
    proc = fast_cli(
        "--models",
        "yolo11n-detect",
        "--weights",
        "random",
        "--device",
        "cpu",
        "--images",
        sample_image,
        "--output-dir",
        out,
    )
    line = assert_usage_exit(proc)
    assert str(out / "results") in line
    assert (out / "results").read_text() == "keep me"


def test_output_dir_cannot_be_created(tmp_path, sample_image):
    target = Path("/proc/unified_benchmark_test")  # even root cannot create folders in /proc
    assert not target.exists()
    proc = fast_cli(
        "--models",
        "yolo11n-detect",
        "--weights",
        "random",
        "--device",
        "cpu",
        "--images",
        sample_image,
        "--output-dir",
        target,
    )
    line = assert_usage_exit(proc)
    assert str(target) in line
    assert not target.exists()


# =========================================================================================
# Weight files
# =========================================================================================
@pytest.mark.parametrize("kind", ["garbage", "truncated"])
def test_corrupt_weight_file_fails_naming_file_and_fix(tmp_path, sample_image, seg_checkpoint, kind):
    models_dir = tmp_path / "models"
    corrupt_models_dir(models_dir, seg_checkpoint if kind == "truncated" else None, kind=kind)
    weight = models_dir / "yolo11n.pt"
    out = tmp_path / "out"
    started = time.monotonic()
    proc = fast_cli(
        "--models",
        "yolo11n-detect",
        "--weights",
        "pretrained",
        "--models-dir",
        models_dir,
        "--device",
        "cpu",
        "--runs",
        "1",
        "--images",
        sample_image,
        "--output-dir",
        out,
    )
    assert time.monotonic() - started < 90, "a corrupt weight file must fail, not hang"
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    error_lines = [line for line in proc.stdout.splitlines() if "YOLO11nDetect failed" in line]
    assert len(error_lines) == 1
    assert str(weight) in error_lines[0]
    assert "delete" in error_lines[0] and "--weights random" in error_lines[0]
    assert "Traceback" not in proc.stdout + proc.stderr  # a WeightsError is reported in one line
    model = strict_run(out)["json"]["models"][0]
    assert model["status"] == "failed"
    assert model["error"]["phase"] == "load" and model["error"]["type"] == "WeightsError"
    assert str(weight) in model["error"]["message"]
    assert weight.exists(), "the tool must not delete the user's file itself"


def test_missing_weight_file_offline_fails_fast(tmp_path, sample_image):
    models_dir = tmp_path / "models"
    models_dir.mkdir()
    weight = models_dir / "yolo11n.pt"
    out = tmp_path / "out"
    started = time.monotonic()
    proc = fast_cli(
        "--models",
        "yolo11n-detect",
        "--weights",
        "pretrained",
        "--models-dir",
        models_dir,
        "--device",
        "cpu",
        "--runs",
        "1",
        "--images",
        sample_image,
        "--output-dir",
        out,
        env={"YOLO_OFFLINE": "1"},
    )
    assert time.monotonic() - started < 60
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    error_lines = [line for line in proc.stdout.splitlines() if "YOLO11nDetect failed" in line]
    assert len(error_lines) == 1
    assert str(weight) in error_lines[0] and "--weights random" in error_lines[0]
    assert "will download" not in proc.stdout
    assert not weight.exists()
    model = strict_run(out)["json"]["models"][0]
    assert model["status"] == "failed" and model["error"]["phase"] == "load"


def test_keep_going_records_failure_and_runs_next_model(tmp_path, sample_image, seg_checkpoint):
    models_dir = corrupt_models_dir(tmp_path / "models", seg_checkpoint)
    img = small_image(tmp_path / "img", sample_image)
    out = tmp_path / "out"
    proc = model_cli(
        "--models",
        "yolo11n-detect,yolo11n-segment",
        "--weights",
        "pretrained",
        "--models-dir",
        models_dir,
        "--keep-going",
        "--device",
        "cpu",
        "--runs",
        "1",
        "--no-dissect",
        "--images",
        img,
        "--output-dir",
        out,
    )
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    run = strict_run(out)
    data = run["json"]
    assert data["status"] == "incomplete"
    detect, segment = data["models"]
    assert detect["model"] == "YOLO11nDetect" and detect["status"] == "failed"
    assert detect["error"]["phase"] == "load"
    assert str(models_dir / "yolo11n.pt") in detect["error"]["message"]
    assert segment["model"] == "YOLO11nSegment" and segment["status"] == "complete"
    assert segment["weights_source"] == f"pretrained ({models_dir / 'yolo11n-seg.pt'})"
    assert [r["kind"] for r in segment["runs"]] == ["cold", "warmup", "timed"]
    assert [(r["model"], r["status"]) for r in run["csv_rows"]] == [
        ("YOLO11nDetect", "failed"),
        ("YOLO11nSegment", "complete"),
    ]
    md = run["md"]
    assert "## Failed or interrupted models" in md
    section = md.split("## Failed or interrupted models", 1)[1].split("\n## ", 1)[0]
    assert "YOLO11nDetect" in section and "yolo11n.pt" in section
    assert "YOLO11nSegment" not in section
    assert "## YOLO11nSegment" in md


def test_fail_fast_stops_after_first_failure(ub, tmp_path, sample_image, seg_checkpoint):
    models_dir = corrupt_models_dir(tmp_path / "models", seg_checkpoint)
    img = small_image(tmp_path / "img", sample_image)
    out = tmp_path / "out"
    proc = fast_cli(
        "--models",
        "yolo11n-detect,yolo11n-segment",
        "--weights",
        "pretrained",
        "--models-dir",
        models_dir,
        "--device",
        "cpu",
        "--runs",
        "1",
        "--no-dissect",
        "--images",
        img,
        "--output-dir",
        out,
    )
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Loading YOLO11nSegment" not in proc.stdout
    assert "[2/2]" not in proc.stdout
    run = strict_run(out)
    data = run["json"]
    assert data["status"] == "incomplete"
    assert [(m["model"], m["status"]) for m in data["models"]] == [
        ("YOLO11nDetect", "failed"),
        ("YOLO11nSegment", "not run"),
    ]
    assert data["models"][0]["error"]["phase"] == "load"
    assert run["csv_header"] == csv_columns(["sam_prompt"])
    assert [(r["model"], r["status"]) for r in run["csv_rows"]] == [("YOLO11nDetect", "failed")]
    assert "YOLO11nSegment (not run)" in run["md"]
    assert "## Failed or interrupted models" in run["md"]


# =========================================================================================
# Signals
# =========================================================================================
class LiveProcess:
    """The tool under Popen, its stdout read line by line by a thread (no pipe deadlock)."""

    def __init__(self, *args):
        self.proc = subprocess.Popen(
            [sys.executable, str(SCRIPT), *map(str, args)],
            cwd=SCRIPT.parent,
            env=dict(os.environ),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self):
        for line in self.proc.stdout:
            self._queue.put(line)
        self._queue.put(None)

    def wait_for(self, predicate, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError("timed out waiting for output; got:\n" + "".join(self.lines[-40:]))
            try:
                line = self._queue.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(
                    f"process ended (exit {self.proc.wait()}) before the expected line:\n" + "".join(self.lines[-40:])
                )
            self.lines.append(line)
            if predicate(line):
                return line

    def finish(self, timeout: float) -> tuple[int, float]:
        started = time.monotonic()
        code = self.proc.wait(timeout=timeout)
        self._thread.join(timeout=10)
        while True:
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                break
            if line is not None:
                self.lines.append(line)
        return code, time.monotonic() - started

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)


def test_sigint_mid_run_writes_partial_results_and_exits_130(tmp_path, sample_image):
    img = small_image(tmp_path / "img", sample_image)
    out = tmp_path / "out"
    live = LiveProcess(
        "--models",
        "yolo11n-detect,depth-anything-v2-small",
        "--weights",
        "random",
        "--device",
        "cpu",
        "--runs",
        "3",
        "--no-dissect",
        "--images",
        img,
        "--output-dir",
        out,
    )
    try:
        live.wait_for(lambda line: "[2/2]" in line or "DepthAnythingV2Small" in line, timeout=240)
        # Mid-model: the second model has started its timed runs.
        live.wait_for(lambda line: line.startswith("[INFER "), timeout=240)
        live.proc.send_signal(signal.SIGINT)
        code, seconds = live.finish(timeout=60)
    finally:
        live.kill()
    assert seconds < 20, f"took {seconds:.1f}s to stop after SIGINT"
    assert code == 130, live.output[-3000:]
    assert "Traceback" not in live.output, live.output[-3000:]
    assert "BENCHMARK INTERRUPTED" in live.output
    run = strict_run(out)
    data = run["json"]
    assert data["status"] == "interrupted"
    assert [(m["model"], m["status"]) for m in data["models"]] == [
        ("YOLO11nDetect", "complete"),
        ("DepthAnythingV2Small", "interrupted"),
    ]
    assert data["models"][1]["phase_reached"] in ("cold_start", "warmup", "timed")
    assert data["models"][0]["latency_end_to_end"]["n"] == 3
    assert [(r["model"], r["status"]) for r in run["csv_rows"]] == [
        ("YOLO11nDetect", "complete"),
        ("DepthAnythingV2Small", "interrupted"),
    ]
    assert "interrupted" in run["md"].lower()
    assert "**DepthAnythingV2Small interrupted**" in run["md"]  # the verdict names the interrupted model


def test_sigterm_mid_run_exits_143(tmp_path, sample_image):
    img = small_image(tmp_path / "img", sample_image)
    out = tmp_path / "out"
    live = LiveProcess(
        "--models",
        "yolo11n-detect",
        "--weights",
        "random",
        "--device",
        "cpu",
        "--runs",
        "2",
        "--no-dissect",
        "--images",
        img,
        "--output-dir",
        out,
    )
    try:
        live.wait_for(lambda line: line.startswith("[INFER 1/"), timeout=240)
        live.proc.send_signal(signal.SIGTERM)
        code, seconds = live.finish(timeout=60)
    finally:
        live.kill()
    assert seconds < 20
    assert code == 143, live.output[-3000:]
    assert "SIGTERM" in live.output
    run = strict_run(out)
    assert run["json"]["status"] == "interrupted"
    assert [(m["model"], m["status"]) for m in run["json"]["models"]] == [("YOLO11nDetect", "interrupted")]
    assert "interrupted" in run["md"].lower()


# =========================================================================================
# Run ids
# =========================================================================================
def test_two_runs_in_the_same_second_get_distinct_ids(ub, tmp_path, monkeypatch):
    # where prepare_output looks it up
    monkeypatch.setattr(vision_bench.run.preparation, "get_timestamp", lambda: "20250101_120000")
    out = tmp_path / "out"
    id1, (results1, viz1, assets1) = prepare_output(out)
    id2, (results2, viz2, assets2) = prepare_output(out)
    assert id1 != id2
    assert id1 == "20250101_120000" and id2.startswith("20250101_120000")
    assert results1 == results2 == out / "results"
    assert viz1 != viz2 and viz1.is_dir() and viz2.is_dir()
    assert assets1 != assets2 and assets1.is_dir() and assets2.is_dir()
    assert not any(p.name.startswith(".write_test") for p in results1.iterdir())


# =========================================================================================
# NaN and Inf activations
# =========================================================================================
def test_tensor_stats_nan_inf_constant_empty(ub):
    import torch

    nan, inf = float("nan"), float("inf")

    mixed = tensor_stats(torch.tensor([1.0, nan, inf, -inf, 0.0, nan]))
    assert mixed["nan_count"] == 2 and mixed["inf_count"] == 2
    assert mixed["min"] == 0.0 and mixed["max"] == 1.0  # over the finite values only
    assert mixed["mean"] == pytest.approx(0.5) and mixed["std"] == pytest.approx(0.5)
    assert mixed["zero_fraction"] == pytest.approx(1 / 6)

    all_nan = tensor_stats(torch.full((2, 3), nan))
    assert all_nan["nan_count"] == 6 and all_nan["inf_count"] == 0
    assert all_nan["min"] is None and all_nan["max"] is None and all_nan["mean"] is None and all_nan["std"] is None
    assert all_nan["zero_fraction"] == 0

    all_inf = tensor_stats(torch.tensor([inf, -inf, inf]))
    assert all_inf["inf_count"] == 3 and all_inf["nan_count"] == 0 and all_inf["max"] is None

    const = tensor_stats(torch.full((4, 4), 2.5))
    assert const["min"] == const["max"] == const["mean"] == 2.5
    assert const["std"] == 0.0 and const["nan_count"] == 0 and const["inf_count"] == 0
    assert const["zero_fraction"] == 0

    empty = tensor_stats(torch.empty(0, 3))
    assert empty == {
        "min": None,
        "max": None,
        "mean": None,
        "std": None,
        "zero_fraction": None,
        "nan_count": 0,
        "inf_count": 0,
    }

    half = tensor_stats(torch.tensor([nan, 1.0, inf], dtype=torch.float16))
    assert half["nan_count"] == 1 and half["inf_count"] == 1 and half["max"] == 1.0

    for stats in (mixed, all_nan, all_inf, const, empty, half):
        assert all(v is None or math.isfinite(v) for v in stats.values()), stats


def test_atomic_write_json_is_strict(ub, tmp_path):
    import torch

    nan, inf = float("nan"), float("inf")
    data = {
        "stats": [tensor_stats(torch.tensor([1.0, nan, inf])), tensor_stats(torch.full((3,), nan))],
        "raw": [nan, inf, -inf, np.float32("nan"), np.float64("inf"), 1.5, np.int64(3)],
        "nested": {"t": (nan, 2.0), "path": tmp_path},
    }
    path = tmp_path / "stats.json"
    atomic_write_json(path, data)
    text = path.read_text()
    for token in ("NaN", "Infinity"):
        assert token not in text
    parsed = strict_loads(text)
    assert parsed["raw"] == [None, None, None, None, None, 1.5, 3]
    assert parsed["nested"] == {"t": [None, 2.0], "path": str(tmp_path)}
    assert parsed["stats"][0]["nan_count"] == 1 and parsed["stats"][0]["inf_count"] == 1
    assert parsed["stats"][1]["nan_count"] == 3 and parsed["stats"][1]["mean"] is None
    assert [p.name for p in tmp_path.iterdir()] == ["stats.json"], "no temporary file left behind"


def test_dissection_of_nan_inf_activations_writes_strict_json(ub, tmp_path):
    """A network whose activations contain NaN and -Inf: every layer file is written and the
    metadata is strict JSON with the right counts."""
    import torch
    from torch import nn

    class Log(nn.Module):
        def forward(self, x):
            return torch.log(x)  # log(0) = -inf, log(<0) = nan

    network = nn.Sequential(nn.Identity(), Log(), nn.ReLU())
    x = torch.linspace(-1, 1, 2 * 3 * 8 * 8).reshape(2, 3, 8, 8)
    x[0, 0, 0, 0] = 0.0
    folder = tmp_path / "dissect"
    dissector = LayerDissector(folder, input_hw=(8, 8))
    summary = dissector.run(network, lambda: network(x))
    assert summary.records == 3 and summary.writer_errors == []
    assert summary.png_files == 3 and len(list(folder.glob("*.png"))) == 3
    log_record = dissector.records[1]
    assert log_record.nan_count == int((x < 0).sum()) and log_record.inf_count == int((x == 0).sum())
    atomic_write_json(folder / "layers_metadata.json", dissector.metadata(model="toy"))
    meta = strict_loads((folder / "layers_metadata.json").read_text())
    assert meta["num_records"] == 3
    assert meta["records"]["001"]["nan_count"] == log_record.nan_count
