"""The library bases a model class extends: transformers depth models (with their image
processor) and ultralytics models (driven through their own predict()). Each knows how its
library loads pretrained or random weights, runs a pipeline, and reports a prediction."""

from __future__ import annotations

import os
from pathlib import Path

from PIL import Image

from ..common import WeightsError, exception_line, first_tensor, log
from ..variants.onnxruntime import export_with_torch
from ..variants.parity import split_yolo_output
from ..variants.quantisation_scope import QuantisationScope
from .base import ModelBenchmark, as_numpy


# -- Hugging Face depth models ------------------------------------------------------------
class HFDepthBenchmark(ModelBenchmark):
    """A transformers depth-estimation model with its image processor."""

    TASK = "depth"
    LIBRARY = "transformers"
    HF_REPO = ""  # hub id of the released checkpoint
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

        self.model = self.model_class().from_pretrained(
            source, local_files_only=local_only, dtype=torch.float32, **self.PRETRAINED_KWARGS
        )

    def load_pretrained(self) -> str:
        folder = self.local_folder()
        source = str(folder) if folder.is_dir() else self.HF_REPO
        fix = f"Fix: put a save_pretrained() folder at {folder}, or run with --weights random"
        try:  # the local folder or the Hugging Face cache: no network at all
            self._from_pretrained(source, local_only=True)
            where = "local folder" if folder.is_dir() else "Hugging Face cache"
        except (OSError, ValueError) as exc:
            if folder.is_dir():
                raise WeightsError(
                    f"could not load the model folder {folder}: {exception_line(exc)}. Fix: re-save "
                    "it with save_pretrained(), or remove it to use the hub, or run with --weights random"
                ) from exc
            if os.environ.get("HF_HUB_OFFLINE") == "1":
                raise WeightsError(
                    f"'{self.HF_REPO}' is not in the Hugging Face cache and HF_HUB_OFFLINE=1 forbids "
                    f"the download. {fix}"
                ) from exc
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
            raise WeightsError(
                f"'{self.HF_REPO}' is not cached and the hub cannot be reached ({exception_line(exc)}). {fix}"
            ) from exc

    def load_random(self) -> str:
        self.processor = self.random_processor()
        self.model = self.build_random_network().to(self.device).eval()
        return f"random (released {self.HF_REPO} architecture, seed-initialised)"

    def network(self):
        return self.model

    # Sweeps: the processor takes a list of images and a size (the shorter side kept at the size,
    # a multiple of the patch size, for Depth Anything); the network a batch.
    SWEEP_UNSUPPORTED: dict = {}
    SIZE_STEP = 14

    def preprocess(self, image):
        return self.preprocess_batch([image], None)

    def preprocess_batch(self, images: list, size: int | None):
        resize = {} if size is None else {"size": {"height": size, "width": size}}
        inputs = self.processor(images=images, return_tensors="pt", **resize).to(self.device)
        if self.channels_last:
            import torch

            inputs["pixel_values"] = inputs["pixel_values"].contiguous(memory_format=torch.channels_last)
        return inputs

    def forward(self, inputs):
        if getattr(self, "onnx_sessions", None):
            return self.onnx_forward(inputs)
        return self.model(**inputs)

    # -- variants: torch.compile and ONNX Runtime, pre- and postprocessing shared with PyTorch --
    ONNX_OUTPUTS: tuple[str, ...] = ("predicted_depth",)  # DepthPro adds field_of_view

    def compile_network(self) -> None:
        import torch

        self.model = torch.compile(self.model)

    def onnx_targets(self, images: list) -> dict:
        """One export per input shape the processor gives these images: the models compute their
        patch grid and resize targets from the input size in Python, so a traced graph keeps the
        size it was traced at (measured: "dynamic" axes gave Depth Anything 518x518 outputs for a
        686x518 input)."""
        samples: dict = {}
        for image in images:
            pixels = self.preprocess(image)["pixel_values"]
            samples.setdefault("x".join(map(str, pixels.shape)), pixels)
        return samples

    def export_onnx(self, path: Path, sample) -> None:
        """torch.onnx.export of the network alone, its outputs as plain tensors, at `sample`'s shape."""
        import torch

        names = self.ONNX_OUTPUTS

        class Tensors(torch.nn.Module):
            def __init__(self, model):
                super().__init__()
                self.model = model  # a submodule: its weights are exported as weights, not traced constants

            def forward(self, pixel_values):
                out = self.model(pixel_values=pixel_values)
                return tuple(getattr(out, name) for name in names)

        export_with_torch(Tensors(self.model).eval(), (sample,), path, ["pixel_values"], list(names))

    def use_sessions(self, sessions: dict, what: str) -> None:
        """The exported copies, one per input shape (their names are the shapes), run in forward()."""
        self.onnx_sessions = {tuple(int(n) for n in name.split("x")): session for name, session in sessions.items()}
        self.exported_kind = what

    def onnx_forward(self, inputs):
        import torch
        from transformers.modeling_outputs import DepthEstimatorOutput

        pixels = inputs["pixel_values"].detach().cpu().numpy()
        session = self.onnx_sessions.get(tuple(pixels.shape))
        if session is None:
            raise RuntimeError(
                f"no {self.exported_kind} export for input shape {list(pixels.shape)} "
                f"(exported: {sorted(self.onnx_sessions)})"
            )
        arrays = session.run(None, {"pixel_values": pixels})
        tensors = {name: torch.from_numpy(a).to(self.device) for name, a in zip(self.ONNX_OUTPUTS, arrays)}
        if "field_of_view" in tensors:  # DepthPro's output type carries it
            from transformers.models.depth_pro.modeling_depth_pro import DepthProDepthEstimatorOutput

            return DepthProDepthEstimatorOutput(**tensors)
        return DepthEstimatorOutput(**tensors)

    def raw_parts(self, output) -> dict:
        return {name: getattr(output, name) for name in self.ONNX_OUTPUTS if getattr(output, name, None) is not None}

    def task_outputs(self, prediction) -> dict:
        return {"depth": prediction["predicted_depth"]}

    def postprocess(self, outputs, image):
        return self.postprocess_batch(outputs, [image])[0]

    def postprocess_batch(self, outputs, images: list):
        return self.processor.post_process_depth_estimation(outputs, target_sizes=[(i.height, i.width) for i in images])

    def summarize_prediction(self, prediction) -> dict:
        depth = prediction["predicted_depth"].float()
        out = {
            "depth_" + k: v
            for k, v in zip(
                ("min", "max", "mean", "median", "std"),
                [
                    float(depth.min()),
                    float(depth.max()),
                    float(depth.mean()),
                    float(depth.median()),
                    float(depth.std()),
                ],
            )
        }
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
    WEIGHTS_FILE = ""  # file in models/; ultralytics downloads it there if missing
    INPUT_SIZE = 640

    def weights_path(self) -> Path:
        return self.models_dir / self.WEIGHTS_FILE

    def load_pretrained(self) -> str:
        path = self.weights_path()
        if not path.exists() and os.environ.get("YOLO_OFFLINE") == "1":
            raise WeightsError(
                f"weight file {path} is missing and YOLO_OFFLINE=1 forbids the download. "
                f"Fix: put {self.WEIGHTS_FILE} there, or run with --weights random"
            )
        if not path.exists():
            log("LOAD", f"{path} not found; ultralytics will download it")
            path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.ul_model = self.ultralytics_class()(str(path))
        except Exception as exc:
            broken = path.exists()
            fix = (
                f"delete {path} to re-download it, or run with --weights random"
                if broken
                else f"put {self.WEIGHTS_FILE} at {path}, or run with --weights random"
            )
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
        pending = self.ul_model.predict(
            blank, stream=True, verbose=False, device=str(self.device), **self.predict_kwargs(blank)
        )
        pending.close()
        predictor = self.ul_model.predictor
        if not predictor.done_warmup:  # the library warms up on its first image; a dummy of the nominal size here
            predictor.model.warmup(imgsz=(1, 3, self.INPUT_SIZE, self.INPUT_SIZE))
            predictor.done_warmup = True

    def predict_kwargs(self, image) -> dict:
        return {"imgsz": self.INPUT_SIZE}

    # Sweeps: predict() takes a list of images (one batch) and imgsz, a multiple of the stride.
    SWEEP_UNSUPPORTED: dict = {}
    SIZE_STEP = 32

    def run_pipeline(self, image):
        results, phases = self.run_batch([image])
        return results[0], phases

    def run_batch(self, images: list, size: int | None = None):
        kwargs = self.predict_kwargs(images[0]) | ({"imgsz": size} if size else {})
        with self.variant_context():
            results = self.ul_model.predict(
                images if len(images) > 1 else images[0], verbose=False, device=str(self.device), **kwargs
            )
        # milliseconds per image, measured by ultralytics with CUDA synchronisation: times the batch
        speed, n = results[0].speed, len(images)
        return results, {
            "preprocess": speed["preprocess"] * n / 1000,
            "forward": speed["inference"] * n / 1000,
            "postprocess": speed["postprocess"] * n / 1000,
        }

    def phase_methods(self) -> dict:
        """The predictor's own phases, the ones its speed figures (run_pipeline) time."""
        predictor = self.ul_model.predictor
        return {
            "preprocess": (predictor, "preprocess"),
            "forward": (predictor, "inference"),
            "postprocess": (predictor, "postprocess"),
        }

    # -- variants: the library's own export and predictor, so pre- and postprocessing are its own --
    ONNX_DYNAMIC = True  # dynamic axes: the exported model gets the same letterboxed shape as PyTorch

    def raw_output_module(self):
        """The module whose output parity compares: ultralytics' AutoBackend, the same module
        for a PyTorch and an ONNX model (its output is the network's, as tensors)."""
        return self.ul_model.predictor.model

    def parity_outputs(self, image) -> tuple[dict, dict]:
        seen: list = []

        def keep_first(module, args, output):
            if not seen:
                seen.append(first_tensor(output)[0])

        handle = self.raw_output_module().register_forward_hook(keep_first)
        try:
            prediction, _ = self.run_pipeline(image)
        finally:
            handle.remove()
        return as_numpy(self.raw_parts(seen[0]) if seen else {}), as_numpy(self.task_outputs(prediction))

    def task_outputs(self, prediction) -> dict:
        out = {}
        if prediction.boxes is not None:
            out["boxes"], out["classes"] = prediction.boxes.xyxy, prediction.boxes.cls
        if prediction.keypoints is not None:
            out["keypoints"] = prediction.keypoints.xy
        if prediction.masks is not None:
            out["masks"] = prediction.masks.data > 0.5
        return out

    def onnx_targets(self, images: list) -> dict:
        return {f"{'dynamic' if self.ONNX_DYNAMIC else 'fixed'}-{self.INPUT_SIZE}": None}

    def export_onnx(self, path: Path, sample) -> None:
        """ultralytics writes the file into the working directory (a model built from a yaml has no
        folder of its own), so the export runs in a temporary one. simplify=False: the simplifier
        would be installed at run time when missing."""
        import contextlib
        import shutil
        import tempfile

        with tempfile.TemporaryDirectory() as scratch, contextlib.chdir(scratch):
            written = self.ul_model.export(
                format="onnx",
                dynamic=self.ONNX_DYNAMIC,
                imgsz=self.INPUT_SIZE,
                device=str(self.device),
                simplify=False,
                verbose=False,
            )
            shutil.move(str(Path(scratch) / written), path)

    def use_onnx(self, paths: dict) -> str:
        [path] = paths.values()
        self.ul_model = self.ultralytics_class()(str(path), task=self.TASK)
        self.prepare_predictor()
        session = getattr(getattr(self.ul_model.predictor.model, "backend", None), "session", None) or getattr(
            self.ul_model.predictor.model, "session", None
        )
        return session.get_providers()[0] if session is not None else "unknown"

    def use_openvino(self, paths: dict, config: dict, sources: dict) -> str:
        """ultralytics' own OpenVINO backend on the IR folder (its metadata.yaml copied from the ONNX
        export's), its compilations given the variant's configuration over the backend's own hints."""
        import onnx
        import yaml

        from ..variants.openvino_runtime import compiled_with, describe

        [(name, path)] = paths.items()
        metadata = {p.key: p.value for p in onnx.load(str(sources[name]), load_external_data=False).metadata_props}
        (path.parent / "metadata.yaml").write_text(yaml.safe_dump(metadata))
        with compiled_with(config):
            self.ul_model = self.ultralytics_class()(str(path.parent), task=self.TASK)
            self.prepare_predictor()
        compiled = getattr(getattr(self.ul_model.predictor.model, "backend", None), "ov_compiled_model", None)
        return describe(compiled) if compiled is not None else "OpenVINO (ultralytics backend)"

    def summarize_prediction(self, prediction) -> dict:
        out: dict = {}
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
    ARCH_YAML = ""  # the yaml shipped with ultralytics: the random architecture
    # INT8: the head's box decoding stays in float (the distribution focal loss head and the
    # arithmetic right under the head's module turn distances into pixel coordinates: rounded to
    # INT8 a box moves by whole strides), as ultralytics' own INT8 export keeps it.
    INT8_IGNORED_SCOPE = QuantisationScope(
        patterns=(r".*/dfl/.*", r"/model\.\d+/(Add|Sub|Mul|Div|Sigmoid|Concat)(_\d+)?"),
        reason="the detection head's box decoding (DFL and coordinate arithmetic)",
    )

    @classmethod
    def build_random_network(cls):
        from ultralytics import YOLO

        return YOLO(cls.ARCH_YAML, verbose=False).model.fuse()

    def load_random(self) -> str:
        from ultralytics import YOLO

        self.ul_model = YOLO(self.ARCH_YAML, verbose=False)
        return f"random ({self.ARCH_YAML} from ultralytics, seed-initialised)"

    def raw_parts(self, output) -> dict:
        names = getattr(self.ul_model, "names", None) or {}
        return split_yolo_output(output, self.TASK, num_classes=len(names))

    def compile_network(self) -> None:
        import torch

        backend = self.ul_model.predictor.model
        backend.model = torch.compile(backend.model)

    def network(self):
        # The predictor (set up in load()) runs a fused copy of the model: hook and count that one.
        predictor = getattr(self.ul_model, "predictor", None)
        return predictor.model.model if predictor is not None and predictor.model is not None else self.ul_model.model
