"""Before a run: its device (--device) or devices (--devices), and its output folders, each checked
with a one-line error for a bad value."""

from __future__ import annotations

import os
from pathlib import Path

from ..common import UsageError, get_timestamp, log


def resolve_device(text: str):
    import torch

    text = text.strip().lower()
    if text == "auto":
        if torch.cuda.is_available():
            log("INFO", f"Using CUDA device: {torch.cuda.get_device_name(0)}")
            return torch.device("cuda:0")
        log("WARNING", "CUDA not available, falling back to CPU. Performance will be significantly slower.")
        return torch.device("cpu")
    if text == "cpu":
        return torch.device("cpu")
    if text == "cuda" or text.startswith("cuda:"):
        # The format first, whether or not CUDA is here: only plain ASCII digits without a
        # leading zero (str.isdigit() accepts "٣", and torch rejects "01" later with a traceback).
        index_text = text.partition(":")[2] if ":" in text else "0"
        if not (index_text.isascii() and index_text.isdigit() and (index_text == "0" or index_text[0] != "0")):
            raise UsageError(
                f"--device {text!r}: expected cuda or cuda:N with N a GPU index written in "
                "ASCII digits without leading zeros (cuda:0, cuda:1, ...)"
            )
        index = int(index_text)
        if not torch.cuda.is_available():
            raise UsageError(
                f"--device {text}: CUDA is not available on this machine (torch {torch.__version__}); "
                "use --device cpu or auto"
            )
        count = torch.cuda.device_count()
        if index >= count:
            raise UsageError(f"--device {text}: this machine has {count} GPU(s), indices 0 to {count - 1}")
        return torch.device("cuda", index)
    raise UsageError(f"--device {text!r}: expected auto, cpu, cuda or cuda:N")


def parse_devices(text: str) -> list:
    """--devices: each a --device value; a GPU may appear once (two models on one GPU would
    compete for it), the CPU several times (its workers share the cores: timings are meaningless)."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise UsageError("--devices: the list is empty; e.g. --devices cuda:0,cuda:1")
    devices = []
    for name in names:
        if name.lower() == "auto":
            raise UsageError("--devices: name each device (cpu, cuda:N); auto is for --device")
        try:
            devices.append(resolve_device(name))
        except UsageError as exc:
            raise UsageError(str(exc).replace("--device ", "--devices: ", 1)) from None
    gpus = [str(d) for d in devices if d.type == "cuda"]
    repeated = sorted({g for g in gpus if gpus.count(g) > 1})
    if repeated:
        raise UsageError(f"--devices: {', '.join(repeated)} listed twice; one model at a time per GPU")
    if sum(d.type == "cpu" for d in devices) > 1:
        log("WARNING", "--devices: several workers on the CPU share its cores; their timings are not meaningful")
    return devices


def prepare_output(output_dir: Path) -> tuple[str, tuple[Path, Path, Path]]:
    """Create results/ and a run folder that no other run shares (mkdir is atomic), and
    prove the folders are writable, all before any model loads."""
    output_dir = output_dir.expanduser()
    if output_dir.exists() and not output_dir.is_dir():
        raise UsageError(f"--output-dir: {output_dir} is a file, not a folder; choose another path")
    results_dir, viz_root = output_dir / "results", output_dir / "viz"
    try:
        for folder in (results_dir, viz_root):
            if folder.exists() and not folder.is_dir():
                raise UsageError(
                    f"--output-dir: {folder} is a file where a folder is needed; move it or choose another --output-dir"
                )
            folder.mkdir(parents=True, exist_ok=True)
        stamp = get_timestamp()
        for attempt in range(1, 1000):
            run_id = stamp if attempt == 1 else f"{stamp}_{attempt}"
            try:
                (viz_root / run_id).mkdir()
                break
            except FileExistsError:
                continue
        assets = results_dir / f"report_{run_id}"
        assets.mkdir(exist_ok=True)
        probe = results_dir / f".write_test_{os.getpid()}"
        probe.write_text("ok")
        probe.unlink()
    except PermissionError as exc:
        raise UsageError(
            f"--output-dir: cannot write to {exc.filename or output_dir} (permission denied); "
            "choose a writable --output-dir"
        ) from None
    except OSError as exc:
        raise UsageError(f"--output-dir: cannot create folders under {output_dir}: {exc.strerror or exc}") from None
    return run_id, (results_dir, viz_root / run_id, assets)
