"""The contract a model implements (ModelBenchmark) and what it inherits: the pipeline and its
timing, FLOPs, dissection, the time breakdown, what the variants change, cleanup. The bases for
transformers depth models and ultralytics models are in library_bases."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from ..common import atomic_write_json, first_tensor, leaf_modules, log
from ..inspect.dissection import LayerDissector
from ..inspect.time_breakdown import TimeBreakdown
from ..inspect.trace import record_trace
from ..progress import pass_progress
from ..records.inspection import DissectionSummary, TimeBreakdownRecord, TraceSummary
from ..variants.parity import FP32_TOLERANCE, HALF_TOLERANCE, INT8_LIMITS, to_numpy
from ..variants.quantisation_scope import QuantisationScope
from . import default_paths


def as_numpy(parts: dict) -> dict:
    """Tensors (any dtype, any device) as float64 numpy copies; other values kept as they are."""
    return {k: (v if v is None or isinstance(v, (str, int, float)) else to_numpy(v)) for k, v in parts.items()}


@dataclass(frozen=True)
class ModelOption:
    """An option of a model's run that the model declares (ModelBenchmark.RUN_OPTIONS): the command
    line gets --<name with dashes>, the instance gets the value given (ModelBenchmark.option), and
    the model's run_config() records the value it used, which the reports show."""

    name: str  # the key in options= and in run_config(); "prompt_mode" is the option --prompt-mode
    choices: tuple[str, ...]
    default_constant: str  # the class constant holding the default, e.g. "SAM_PROMPT"
    help: str  # the option's help, without its default (the command line adds it)

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


def declared_options(classes) -> list[ModelOption]:
    """The options the model classes declare (RUN_OPTIONS), each once, in the classes' order."""
    found: dict[str, ModelOption] = {}
    for cls in classes:
        for option in cls.RUN_OPTIONS:
            found.setdefault(option.name, option)
    return list(found.values())


class ModelBenchmark(ABC):
    """Everything shared by the models: timing, memory, FLOPs, dissection, cleanup.

    A subclass sets the class constants and implements how to load (pretrained or random),
    preprocess, run the network and postprocess, and which nn.Module is the network.
    """

    MODEL_NAME = "Model"  # folder and report name
    CLI_NAME = "model"  # name for --models
    DESCRIPTION = ""  # one line for --list-models
    TASK = ""  # depth, detect, segment, pose, sam
    INPUT_SIZE: int | None = None  # nominal input size; the report shows the real input shape
    LIBRARY = ""
    TIME_BLOCKS: tuple = ()  # module paths for "where the time goes"; empty: the first level that branches
    # Expected cost of one run of this model relative to the others (YOLO11n-Detect = 1; roughly its
    # forward FLOPs and run time): --shard I/N balances the shards of a job array by it.
    RELATIVE_COST = 1.0
    # Output parity of a variant against torch-fp32 (--variants): one set of limits for fp32
    # backends, looser ones for half precision. See parity.verdict for what each limit checks.
    PARITY_TOLERANCE = FP32_TOLERANCE
    HALF_PRECISION_TOLERANCE = HALF_TOLERANCE
    # --divergence: a layer diverges when the relative L2 error it adds itself (fed the reference's
    # input) passes this, by the precision the variant computes in. Half precision: twice the dtype's
    # epsilon (rounding a layer's inputs alone gives about 0.36 eps: measured 0.0028 on bf16 convolutions
    # and linears); float32 backends reorder sums (about 1e-7) and should stay far below 1e-4.
    DIVERGENCE_TOLERANCE = {"float32": 1e-4, "float16": 2 * 2**-10, "bfloat16": 2 * 2**-7, "int8": 2**-6}
    # The INT8 variants (openvino-int8, onnxruntime-int8): their parity limits, the size of the
    # calibration set (the run's images, then deterministic flips and crops of them), and the parts of
    # the exported graph left in floating point (QuantisationScope: regular expressions on node names).
    INT8_TOLERANCE = INT8_LIMITS
    CALIBRATION_SIZE = 8
    INT8_IGNORED_SCOPE = QuantisationScope()
    # How the model batches and resizes (--batch-sizes, --input-sizes): a dimension named here, with
    # the reason, is reported `unsupported` and the model is swept along the other only. By default a
    # batch is the preprocessed inputs stacked, resized to the point's size (models.default_paths).
    SWEEP_UNSUPPORTED: dict = {}
    SIZE_STEP = 1  # input sizes come in multiples of this (a sweep bisects to one step)
    # Options of this model's run (ModelOption), each a command-line option; self.option(name) reads one.
    RUN_OPTIONS: tuple[ModelOption, ...] = ()

    def __init__(
        self, device, weights: str = "pretrained", models_dir: Path | str = "models", options: dict | None = None
    ):
        self.device = device
        self.weights = weights
        self.models_dir = Path(models_dir)
        declared = {o.name: o for o in self.RUN_OPTIONS}
        unknown = [name for name in options or {} if name not in declared]
        if unknown:
            raise TypeError(f"{type(self).__name__} declares no option {', '.join(unknown)}")
        self.options = dict(options or {})
        self.weights_source: str | None = None
        self.input_shape: list[int] | None = None
        self.autocast_dtype = None  # set by the half-precision variants
        self.channels_last = False  # set by the channels-last variant
        self.exported_output = None  # how the default export's flat outputs rebuild the network's (a pytree spec)

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

    def phase_methods(self) -> dict:
        """Where each pipeline phase runs, as {phase: (object, method name)}: the methods run_pipeline
        times. The profiler trace (--trace) wraps them in ranges named after the phases."""
        return {"preprocess": (self, "preprocess"), "forward": (self, "forward"), "postprocess": (self, "postprocess")}

    def input_module(self):
        """The module whose first tensor argument is the network's real input."""
        return self.network()

    def summarize_prediction(self, prediction) -> dict:
        return {}

    def render_prediction(self, image: Image.Image, prediction, path: Path) -> None:  # noqa: B027 (optional: a model without a picture draws none)
        """Picture of what the model produced on `image` (report section 'What each model saw')."""

    def run_config(self) -> dict:
        """What this run of the model used that a reader needs (its options' values, ...): the reports show it."""
        return {}

    def option(self, name: str) -> str:
        """The value of a declared option: the one given (options=), else its class constant."""
        declared = next(o for o in self.RUN_OPTIONS if o.name == name)
        return self.options.get(name) or getattr(self, declared.default_constant)

    @classmethod
    def for_run(cls, device, settings) -> ModelBenchmark:
        """An instance with a run's settings (settings.RunSettings): weights, folder, its options."""
        return cls(device, weights=settings.weights, models_dir=settings.models_dir, options=settings.options_for(cls))

    # -- shared machinery ------------------------------------------------------------------
    def sync(self) -> None:
        if self.device.type == "cuda":
            import torch

            torch.cuda.synchronize(self.device)

    def load(self) -> str:
        import torch

        torch.set_grad_enabled(False)
        source = self.load_pretrained() if self.weights == "pretrained" else self.load_random()
        self.weights_source = source
        return source

    def run_pipeline(self, image: Image.Image):
        """One image through preprocess, forward and postprocess; returns (prediction, phase seconds)."""
        return self.three_phases(lambda: self.preprocess(image), lambda outputs: self.postprocess(outputs, image))

    def run_batch(self, images: list, size: int | None = None):
        """One pipeline call over a batch of images at input size `size` (None: the nominal one);
        returns (predictions, phase seconds of the whole call). Used by the sweeps."""
        return self.three_phases(
            lambda: self.preprocess_batch(images, size), lambda outputs: self.postprocess_batch(outputs, images)
        )

    def preprocess_batch(self, images: list, size: int | None):
        """The images preprocessed one by one and stacked, resized to size x size when given."""
        return default_paths.stack_preprocessed(self, images, size)

    def postprocess_batch(self, outputs, images: list):
        """The batch's outputs sliced per image, each postprocessed as one call's."""
        return default_paths.postprocess_each(self, outputs, images)

    def three_phases(self, preprocess, postprocess):
        import torch

        t0 = time.perf_counter()
        inputs = preprocess()
        self.sync()
        t1 = time.perf_counter()
        with torch.inference_mode(), self.variant_context():
            outputs = self.forward(inputs)
        self.sync()
        t2 = time.perf_counter()
        prediction = postprocess(outputs)
        self.sync()
        t3 = time.perf_counter()
        return prediction, {"preprocess": t1 - t0, "forward": t2 - t1, "postprocess": t3 - t2}

    def timed_run(self, image: Image.Image):
        """End-to-end time of one pipeline call, as a pipeline pays it, plus its phases."""
        return self.timed_call(lambda: self.run_pipeline(image))

    def timed_call(self, call):
        """`call()` -> (prediction, phases), timed end to end: (prediction, seconds, phases)."""
        self.sync()
        start = time.perf_counter()
        prediction, phases = call()
        self.sync()
        return prediction, time.perf_counter() - start, phases

    # -- variants (--variants): what a deployment changes, and the outputs parity compares ---
    def variant_context(self):
        """Around the network's forward: autocast for the half-precision variants. Autocast, not
        a cast of the model: weights stay float32 and the ops autocast keeps in float32
        (softmax, normalisations, reductions) stay there, as mixed precision is deployed."""
        import contextlib

        import torch

        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def use_channels_last(self) -> None:
        import torch

        self.network().to(memory_format=torch.channels_last)
        self.channels_last = True

    def compile_network(self) -> None:
        """torch.compile the module that runs, in place (the library bases know where it sits)."""
        self.network().compile()

    def network_input(self, image: Image.Image):
        """The tensor the network receives on a pipeline call of `image` (an ONNX export's sample, a
        calibration set's input)."""
        return default_paths.network_io(self, image, with_output=False)[0]

    def onnx_targets(self, images: list) -> dict:
        """The ONNX files this model needs for `images`: {name: sample input or None}, one file with
        dynamic axes or one per input shape. The name keys the exported-file cache. By default one per
        shape of the network's input, traced on it."""
        return default_paths.default_onnx_targets(self, images)

    def export_onnx(self, path: Path, sample) -> None:
        """Write the network as ONNX to `path` (by default torch.onnx of network() on `sample`)."""
        default_paths.default_export_onnx(self, path, sample)

    def use_onnx(self, paths: dict) -> str:
        """Run the exported network(s) ({name: path}) with ONNX Runtime from now on; returns the provider."""
        from ..variants.onnxruntime import onnxruntime_session

        sessions, provider = {}, ""
        for name, path in paths.items():
            sessions[name], provider = onnxruntime_session(path, self.device)
        self.use_sessions(sessions, "ONNX")
        return provider

    def use_openvino(self, paths: dict, config: dict, sources: dict) -> str:
        """Run OpenVINO models ({name: .xml path}, converted from the ONNX files `sources`) compiled for
        the CPU with `config` from now on; returns what runs them ('OpenVINO CPU, f32 inference')."""
        from ..variants.openvino_runtime import compile_openvino

        sessions, runs = {}, ""
        for name, path in paths.items():
            sessions[name], runs = compile_openvino(path, config)
        self.use_sessions(sessions, "OpenVINO")
        return runs

    def use_sessions(self, sessions: dict, what: str) -> None:
        """Run exported copies of the network from now on: {name: session with ONNX Runtime's run()}."""
        default_paths.run_network_with(self, sessions, what)

    def raw_parts(self, output) -> dict:
        """The network's raw output as named parts for parity (each part normalised on its own)."""
        tensor, _ = first_tensor(output)
        return {} if tensor is None else {"output": tensor}

    def task_outputs(self, prediction) -> dict:
        """The prediction in the terms parity compares: depth map, boxes and classes, keypoints, masks."""
        return {}

    def parity_outputs(self, image: Image.Image) -> tuple[dict, dict]:
        """One pipeline call; the network's raw output parts and the task outputs, as float64 numpy."""
        import torch

        inputs = self.preprocess(image)
        with torch.inference_mode(), self.variant_context():
            outputs = self.forward(inputs)
        raw = self.raw_parts(outputs)
        prediction = self.postprocess(outputs, image)
        return as_numpy(raw), as_numpy(self.task_outputs(prediction))

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
        return pass_progress(self.network(), f"{self.MODEL_NAME} {what}", blocks=self.top_level_blocks(), detail=detail)

    def count_flops_and_input(self, image: Image.Image, run=None) -> tuple[int, list[int] | None]:
        """FLOPs of one pipeline call (torch's counter: 2 per multiply-add; only the network's
        matmuls, convolutions and attention count) and the shape of the tensor the network received.
        `run`: the call to count instead of run_pipeline(image) (a sweep point's batch)."""
        from torch.nn.attention import SDPBackend, sdpa_kernel
        from torch.utils.flop_counter import FlopCounterMode

        shapes: list[list[int]] = []  # the first input tensor's shape, once seen

        def capture(module, args, kwargs):
            if not shapes:
                tensor, _ = first_tensor((list(args), kwargs))
                if tensor is not None:
                    shapes.append(list(tensor.shape))

        handle = self.input_module().register_forward_pre_hook(capture, with_kwargs=True)
        try:
            # The math attention backend, so that the count does not depend on the kernel the
            # device picks: torch's counter has no formula for the CPU flash kernel (attention
            # would count zero there, 36% of Depth Anything V2 Small). A public API, unlike a
            # formula registered for a private op; the extra memory of the N x N scores is
            # paid by this one counting pass only, never by the timed runs.
            with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter, self.progress("FLOPs pass"):
                (run or (lambda: self.run_pipeline(image)))()
        finally:
            handle.remove()
        self.input_shape = shapes[0] if shapes else None
        return int(counter.get_total_flops()), self.input_shape

    def dissect_layers(self, image: Image.Image, out_dir: Path, write_files: bool = True) -> DissectionSummary:
        """Every call of every leaf module in one pass of the same pipeline the timed runs use: each
        call's record in out_dir/layers_metadata.json, their summary returned."""
        hw = tuple(self.input_shape[-2:]) if self.input_shape and len(self.input_shape) == 4 else None
        dissector = LayerDissector(out_dir, input_hw=hw, write_files=write_files)
        log("DISSECT", f"Hooking {len(leaf_modules(self.network()))} leaf modules, one forward pass")
        summary = dissector.run(
            self.network(),
            lambda: self.run_pipeline(image),
            label=f"{self.MODEL_NAME} dissection",
            blocks=self.top_level_blocks(),
        )
        atomic_write_json(
            out_dir / "layers_metadata.json",
            dissector.metadata(
                summary, model=self.MODEL_NAME, weights=self.weights_source, input_shape=self.input_shape
            ),
        )
        return summary

    def top_level_blocks(self) -> list[tuple[str, object]]:
        """TIME_BLOCKS if set, else the network's first level with more than one child
        (descending through single-child wrappers)."""
        if self.TIME_BLOCKS:
            network = self.network()
            return [
                (f"{path} ({type(network.get_submodule(path)).__name__})", network.get_submodule(path))
                for path in self.TIME_BLOCKS
            ]
        prefix, module = "", self.network()
        while True:
            children = list(module.named_children())
            if len(children) != 1:
                break
            prefix, module = f"{prefix}{children[0][0]}.", children[0][1]
        return [(f"{prefix}{name} ({type(child).__name__})", child) for name, child in children] or [
            (type(module).__name__, module)
        ]

    def profile_time(self, image: Image.Image) -> TimeBreakdownRecord:
        with self.progress("profiled pass (where the time goes)"):
            return TimeBreakdown(self.device).run(
                self.top_level_blocks(), leaf_modules(self.network()), lambda: self.run_pipeline(image)
            )

    def record_trace(self, image: Image.Image, path: Path, stacks: bool = False) -> TraceSummary:
        """One more warm pass of the pipeline under torch.profiler, written as a gzipped Chrome trace
        to `path`, with ranges named like the layer explorer's records; returns its summary."""
        with self.progress("profiler trace"):
            return record_trace(
                self.device,
                self.network(),
                self.top_level_blocks(),
                self.phase_methods(),
                lambda: self.run_pipeline(image),
                path,
                stacks=stacks,
            )

    def release(self) -> None:
        """Drop every reference to the model so that gc can free it."""
        for attr in list(vars(self)):
            if attr not in (
                "device",
                "weights",
                "models_dir",
                "options",
                "weights_source",
                "input_shape",
                "autocast_dtype",
                "channels_last",
            ):
                setattr(self, attr, None)
