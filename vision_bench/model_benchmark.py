"""TODO docstring model_benchmark"""
from __future__ import annotations

import os
import time
from abc import ABC, abstractmethod
from pathlib import Path

from PIL import Image

from .common import (
    WeightsError,
    atomic_write_json,
    exception_line,
    first_tensor,
    leaf_modules,
    log,
)
from .dissection import LayerDissector
from .progress import pass_progress
from .time_breakdown import TimeBreakdown


class ModelBenchmark(ABC):
    """Everything shared by the models: timing, memory, FLOPs, dissection, cleanup.

    A subclass sets the class constants and implements how to load (pretrained or random),
    preprocess, run the network and postprocess, and which nn.Module is the network.
    """

    MODEL_NAME = "Model"          # folder and report name
    CLI_NAME = "model"            # name for --models
    DESCRIPTION = ""              # one line for --list-models
    TASK = ""                     # depth, detect, segment, pose, sam
    INPUT_SIZE = None             # nominal input size; the report shows the real input shape
    LIBRARY = ""
    TIME_BLOCKS: tuple = ()       # module paths for "where the time goes"; empty: the first level that branches

    def __init__(self, device, weights: str = "pretrained", models_dir: Path | str = "models",
                 sam_prompt: str | None = None):
        self.device = device
        self.weights = weights
        self.models_dir = Path(models_dir)
        self.sam_prompt = sam_prompt
        self.weights_source = None
        self.input_shape = None

    # -- what a subclass provides ----------------------------------------------------------
    @abstractmethod
    def load_pretrained(self) -> str:
        """Load released weights; return where they came from."""

    @abstractmethod
    def load_random(self) -> str:
        """Build the released architecture with random weights, offline; return a description."""

    @abstractmethod
    def network(self):
        """The nn.Module that runs: hooked for dissection, counted for parameters."""

    def preprocess(self, image: Image.Image):
        raise NotImplementedError

    def forward(self, inputs):
        raise NotImplementedError

    def postprocess(self, outputs, image: Image.Image):
        raise NotImplementedError

    def input_module(self):
        """The module whose first tensor argument is the network's real input."""
        return self.network()

    def summarize_prediction(self, prediction) -> dict:
        return {}

    def render_prediction(self, image: Image.Image, prediction, path: Path) -> None:
        """Picture of what the model produced on `image` (report section 'What each model saw')."""

    def run_config(self) -> dict:
        return {}

    # -- shared machinery ------------------------------------------------------------------
    def sync(self) -> None:
        if self.device.type == "cuda":
            import torch
            torch.cuda.synchronize(self.device)

    def load(self) -> str:
        import torch
        torch.set_grad_enabled(False)
        self.weights_source = self.load_pretrained() if self.weights == "pretrained" else self.load_random()
        return self.weights_source

    def run_pipeline(self, image: Image.Image):
        """One image through preprocess, forward and postprocess; returns (prediction, phase seconds)."""
        import torch
        t0 = time.perf_counter()
        inputs = self.preprocess(image)
        self.sync()
        t1 = time.perf_counter()
        with torch.inference_mode():
            outputs = self.forward(inputs)
        self.sync()
        t2 = time.perf_counter()
        prediction = self.postprocess(outputs, image)
        self.sync()
        t3 = time.perf_counter()
        return prediction, {"preprocess": t1 - t0, "forward": t2 - t1, "postprocess": t3 - t2}

    def timed_run(self, image: Image.Image):
        """End-to-end time of one pipeline call, as a pipeline pays it, plus its phases."""
        self.sync()
        start = time.perf_counter()
        prediction, phases = self.run_pipeline(image)
        self.sync()
        return prediction, time.perf_counter() - start, phases

    def count_parameters(self) -> int:
        return sum(p.numel() for p in self.network().parameters())

    def compute_dtype(self) -> str | None:
        """The dtype the network computes in: that of its first floating-point parameter."""
        for p in self.network().parameters():
            if p.is_floating_point():
                return str(p.dtype).replace("torch.", "")
        return None

    def progress(self, what: str, through_network: bool = True, detail=None) -> pass_progress:
        """Progress lines of one long pass of this model (see pass_progress); through_network
        hooks the leaves to say how far the pass is, so never on a timed run."""
        if not through_network:
            return pass_progress(None, f"{self.MODEL_NAME} {what}", detail=detail)
        return pass_progress(self.network(), f"{self.MODEL_NAME} {what}", blocks=self.top_level_blocks(),
                             detail=detail)

    def count_flops_and_input(self, image: Image.Image) -> tuple[int, list[int] | None]:
        """FLOPs of one pipeline call (torch's counter: 2 per multiply-add; only the network's
        matmuls, convolutions and attention count) and the shape of the tensor the network received."""
        from torch.nn.attention import SDPBackend, sdpa_kernel
        from torch.utils.flop_counter import FlopCounterMode
        seen = {}

        def capture(module, args, kwargs):
            if "shape" not in seen:
                tensor, _ = first_tensor((list(args), kwargs))
                if tensor is not None:
                    seen["shape"] = list(tensor.shape)

        handle = self.input_module().register_forward_pre_hook(capture, with_kwargs=True)
        try:
            # The math attention backend, so that the count does not depend on the kernel the
            # device picks: torch's counter has no formula for the CPU flash kernel (attention
            # would count zero there, 36% of Depth Anything V2 Small). A public API, unlike a
            # formula registered for a private op; the extra memory of the N x N scores is
            # paid by this one counting pass only, never by the timed runs.
            with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter, \
                    self.progress("FLOPs pass"):
                self.run_pipeline(image)
        finally:
            handle.remove()
        self.input_shape = seen.get("shape")
        return int(counter.get_total_flops()), self.input_shape

    def dissect_layers(self, image: Image.Image, out_dir: Path, write_files: bool = True) -> dict:
        """Every call of every leaf module in one pass of the same pipeline the timed runs use."""
        hw = tuple(self.input_shape[-2:]) if self.input_shape and len(self.input_shape) == 4 else None
        dissector = LayerDissector(out_dir, input_hw=hw, write_files=write_files)
        log("DISSECT", f"Hooking {len(leaf_modules(self.network()))} leaf modules, one forward pass")
        summary = dissector.run(self.network(), lambda: self.run_pipeline(image),
                                label=f"{self.MODEL_NAME} dissection", blocks=self.top_level_blocks())
        atomic_write_json(out_dir / "layers_metadata.json", dissector.metadata(
            model=self.MODEL_NAME, weights=self.weights_source, input_shape=self.input_shape, **summary))
        summary["records_list"] = dissector.records
        return summary

    def top_level_blocks(self) -> list[tuple[str, object]]:
        """TIME_BLOCKS if set, else the network's first level with more than one child
        (descending through single-child wrappers)."""
        if self.TIME_BLOCKS:
            network = self.network()
            return [(f"{path} ({type(network.get_submodule(path)).__name__})", network.get_submodule(path))
                    for path in self.TIME_BLOCKS]
        prefix, module = "", self.network()
        while True:
            children = list(module.named_children())
            if len(children) != 1:
                break
            prefix, module = f"{prefix}{children[0][0]}.", children[0][1]
        return [(f"{prefix}{name} ({type(child).__name__})", child) for name, child in children] \
            or [(type(module).__name__, module)]

    def profile_time(self, image: Image.Image) -> dict:
        with self.progress("profiled pass (where the time goes)"):
            return TimeBreakdown(self.device).run(self.top_level_blocks(), leaf_modules(self.network()),
                                                  lambda: self.run_pipeline(image))

    def release(self) -> None:
        """Drop every reference to the model so that gc can free it."""
        for attr in list(vars(self)):
            if attr not in ("device", "weights", "models_dir", "sam_prompt", "weights_source", "input_shape"):
                setattr(self, attr, None)


# -- Hugging Face depth models ------------------------------------------------------------
class HFDepthBenchmark(ModelBenchmark):
    """A transformers depth-estimation model with its image processor."""

    TASK = "depth"
    LIBRARY = "transformers"
    HF_REPO = ""                 # hub id of the released checkpoint
    PRETRAINED_KWARGS: dict = {}

    @classmethod
    def model_class(cls):
        raise NotImplementedError

    @classmethod
    def random_config(cls):
        raise NotImplementedError

    @classmethod
    def random_processor(cls):
        raise NotImplementedError

    @classmethod
    def build_random_network(cls):
        return cls.model_class()(cls.random_config())

    def local_folder(self) -> Path:
        """A save_pretrained folder in models/ wins over the hub (machines without a hub)."""
        return self.models_dir / self.HF_REPO.split("/")[-1]

    def _from_pretrained(self, source: str, local_only: bool) -> None:
        from transformers import AutoImageProcessor
        self.processor = AutoImageProcessor.from_pretrained(source, local_files_only=local_only)
        # transformers 5 loads in the checkpoint's dtype by default ("auto"), and DepthPro does
        # not cast its inputs to it: state float32, the dtype every model here is measured in.
        import torch
        self.model = self.model_class().from_pretrained(source, local_files_only=local_only, dtype=torch.float32,
                                                        **self.PRETRAINED_KWARGS)

    def load_pretrained(self) -> str:
        folder = self.local_folder()
        source = str(folder) if folder.is_dir() else self.HF_REPO
        fix = (f"Fix: put a save_pretrained() folder at {folder}, or run with --weights random")
        try:  # the local folder or the Hugging Face cache: no network at all
            self._from_pretrained(source, local_only=True)
            where = "local folder" if folder.is_dir() else "Hugging Face cache"
        except (OSError, ValueError) as exc:
            if folder.is_dir():
                raise WeightsError(f"could not load the model folder {folder}: {exception_line(exc)}. Fix: re-save "
                                   "it with save_pretrained(), or remove it to use the hub, or run with --weights random"
                                   ) from exc
            if os.environ.get("HF_HUB_OFFLINE") == "1":
                raise WeightsError(f"'{self.HF_REPO}' is not in the Hugging Face cache and HF_HUB_OFFLINE=1 forbids "
                                   f"the download. {fix}") from exc
            self._check_hub_reachable(fix)
            try:  # downloads into the cache, with the library's progress bars
                self._from_pretrained(self.HF_REPO, local_only=False)
            except (OSError, ValueError) as exc2:
                raise WeightsError(f"could not download '{self.HF_REPO}': {exception_line(exc2)}. {fix}") from exc2
            where = "downloaded from the Hugging Face hub"
        self.model.to(self.device).eval()
        return f"pretrained ({source}, {where})"

    def _check_hub_reachable(self, fix: str) -> None:
        """One bounded request, so that a machine without network fails in seconds rather than
        after the libraries' minute or more of retries."""
        from huggingface_hub import model_info
        try:
            model_info(self.HF_REPO, timeout=15)
        except Exception as exc:
            raise WeightsError(f"'{self.HF_REPO}' is not cached and the hub cannot be reached "
                               f"({exception_line(exc)}). {fix}") from exc

    def load_random(self) -> str:
        self.processor = self.random_processor()
        self.model = self.build_random_network().to(self.device).eval()
        return f"random (released {self.HF_REPO} architecture, seed-initialised)"

    def network(self):
        return self.model

    def preprocess(self, image):
        return self.processor(images=image, return_tensors="pt").to(self.device)

    def forward(self, inputs):
        return self.model(**inputs)

    def postprocess(self, outputs, image):
        return self.processor.post_process_depth_estimation(outputs, target_sizes=[(image.height, image.width)])[0]

    def summarize_prediction(self, prediction) -> dict:
        depth = prediction["predicted_depth"].float()
        out = {"depth_" + k: v for k, v in zip(
            ("min", "max", "mean", "median", "std"),
            [float(depth.min()), float(depth.max()), float(depth.mean()), float(depth.median()), float(depth.std())])}
        if prediction.get("field_of_view") is not None:
            out["field_of_view_deg"] = float(prediction["field_of_view"])
        return out

    def render_prediction(self, image, prediction, path):
        import matplotlib.pyplot as plt
        summary = self.summarize_prediction(prediction)
        depth = prediction["predicted_depth"].float().cpu().numpy()
        fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), constrained_layout=True)
        axes[0].imshow(image)
        axes[0].set_title("input")
        shown = axes[1].imshow(depth, cmap="Spectral_r")
        axes[1].set_title("predicted depth (" + ("metres" if "field_of_view_deg" in summary else "relative") + ")")
        for ax in axes:
            ax.axis("off")
        fig.colorbar(shown, ax=axes[1], shrink=0.85)
        text = "  ".join(f"{k.replace('depth_', '')}={v:.4g}" for k, v in summary.items())
        fig.suptitle(f"{self.MODEL_NAME}: {text}", fontsize=9)
        fig.savefig(path, dpi=80)
        plt.close(fig)


# -- Ultralytics models -------------------------------------------------------------------
class UltralyticsBenchmark(ModelBenchmark):
    """An ultralytics model driven through its own predict(), which reports the phases."""

    LIBRARY = "ultralytics"
    WEIGHTS_FILE = ""             # file in models/; ultralytics downloads it there if missing
    INPUT_SIZE = 640

    def weights_path(self) -> Path:
        return self.models_dir / self.WEIGHTS_FILE

    def load_pretrained(self) -> str:
        path = self.weights_path()
        if not path.exists() and os.environ.get("YOLO_OFFLINE") == "1":
            raise WeightsError(f"weight file {path} is missing and YOLO_OFFLINE=1 forbids the download. "
                               f"Fix: put {self.WEIGHTS_FILE} there, or run with --weights random")
        if not path.exists():
            log("LOAD", f"{path} not found; ultralytics will download it")
            path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.ul_model = self.ultralytics_class()(str(path))
        except Exception as exc:
            broken = path.exists()
            fix = (f"delete {path} to re-download it, or run with --weights random" if broken else
                   f"put {self.WEIGHTS_FILE} at {path}, or run with --weights random")
            what = "could not be read (truncated or corrupt?)" if broken else "is missing and could not be downloaded"
            raise WeightsError(f"weight file {path} {what}: {exception_line(exc)}. Fix: {fix}") from exc
        return f"pretrained ({path})"

    @staticmethod
    def ultralytics_class():
        from ultralytics import YOLO
        return YOLO

    def load(self) -> str:
        source = super().load()
        self.prepare_predictor()
        return source

    def prepare_predictor(self) -> None:
        """Set ultralytics' predictor up in the load phase, as its first predict() would: deep
        copy, fuse and upload the weights (SAM: upload), and on a GPU AutoBackend's warm-up
        forward and NMS. Left to the first predict(), all of it would fall in the cold start of
        the ultralytics models only, while the transformers models upload in load()."""
        blank = Image.new("RGB", (self.INPUT_SIZE, self.INPUT_SIZE))
        # predict(stream=True) builds the predictor exactly as the timed predict() calls will
        # (same arguments, so they reuse it) and returns a generator: never iterated, no image runs.
        pending = self.ul_model.predict(blank, stream=True, verbose=False, device=str(self.device),
                                        **self.predict_kwargs(blank))
        pending.close()
        predictor = self.ul_model.predictor
        if not predictor.done_warmup:  # the library warms up on its first image; a dummy of the nominal size here
            predictor.model.warmup(imgsz=(1, 3, self.INPUT_SIZE, self.INPUT_SIZE))
            predictor.done_warmup = True

    def predict_kwargs(self, image) -> dict:
        return {"imgsz": self.INPUT_SIZE}

    def run_pipeline(self, image):
        results = self.ul_model.predict(image, verbose=False, device=str(self.device), **self.predict_kwargs(image))
        speed = results[0].speed  # milliseconds, measured by ultralytics with CUDA synchronisation
        return results[0], {"preprocess": speed["preprocess"] / 1000, "forward": speed["inference"] / 1000,
                            "postprocess": speed["postprocess"] / 1000}

    def summarize_prediction(self, prediction) -> dict:
        out = {}
        if prediction.boxes is not None:
            out["detections"] = len(prediction.boxes)
            if len(prediction.boxes):
                names = prediction.names
                classes = [names[int(c)] for c in prediction.boxes.cls.tolist()]
                out["classes"] = {c: classes.count(c) for c in sorted(set(classes))}
        if prediction.masks is not None:
            out["masks"] = len(prediction.masks)
        if prediction.keypoints is not None:
            out["people_with_keypoints"] = len(prediction.keypoints)
        return out

    def render_prediction(self, image, prediction, path):
        # pil=False draws labels with OpenCV: no font file, so nothing is fetched from the network.
        plotted = prediction.plot(pil=False)
        Image.fromarray(plotted[..., ::-1]).save(path)


class YOLOBenchmark(UltralyticsBenchmark):
    ARCH_YAML = ""                # the yaml shipped with ultralytics: the random architecture

    @classmethod
    def build_random_network(cls):
        from ultralytics import YOLO
        return YOLO(cls.ARCH_YAML, verbose=False).model.fuse()

    def load_random(self) -> str:
        from ultralytics import YOLO
        self.ul_model = YOLO(self.ARCH_YAML, verbose=False)
        return f"random ({self.ARCH_YAML} from ultralytics, seed-initialised)"

    def network(self):
        # The predictor (set up in load()) runs a fused copy of the model: hook and count that one.
        predictor = getattr(self.ul_model, "predictor", None)
        return predictor.model.model if predictor is not None and predictor.model is not None else self.ul_model.model
