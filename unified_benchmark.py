#!/usr/bin/env python3
"""Unified vision model benchmark: speed, memory, FLOPs and a layer-by-layer dissection.

Benchmarks eight models one after another on every image in test_data/ and writes JSON, CSV,
Markdown and HTML reports under results/, plus one folder of layer dissections per model under
viz/<run id>/.

    python unified_benchmark.py                       # all eight models, pretrained weights
    python unified_benchmark.py --weights random      # same architectures, no download
    python unified_benchmark.py --help                # every option

This file holds what users edit: the settings below, one class per model, and the registry
(MODEL_CLASSES). To add a model, write a subclass of one of the bases (see README.md, "Adding a
model") and add it to MODEL_CLASSES. The machinery lives in the vision_bench/ package.
"""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image

from vision_bench import cli
from vision_bench.models.base import ModelBenchmark, ModelOption
from vision_bench.models.library_bases import HFDepthBenchmark, UltralyticsBenchmark, YOLOBenchmark

# -- Settings users tune (each is also a command-line option) ------------------------------
NUM_INFERENCE_RUNS = 5  # timed runs per image (--runs)
NUM_WARMUP_ROUNDS = 1  # rounds over all images after the cold start, before timing (--warmup)
RANDOM_SEED = 42  # seeds python, numpy and torch before every model (--seed)

SCRIPT_DIR = Path(__file__).resolve().parent
DEFAULT_IMAGE_DIR = SCRIPT_DIR / "test_data"  # --images
DEFAULT_MODELS_DIR = SCRIPT_DIR / "models"  # --models-dir: local weights and exported models
DEFAULT_OUTPUT_DIR = SCRIPT_DIR  # --output-dir: receives results/ and viz/


# -- The models ----------------------------------------------------------------------------
# RELATIVE_COST (each class): the expected cost of a model's run, YOLO11n-Detect = 1, roughly its
# forward FLOPs at the nominal input size. --shard I/N balances a job array's shards by it.
class DepthProBenchmark(HFDepthBenchmark):
    MODEL_NAME = "DepthPro"
    CLI_NAME = "depthpro"
    DESCRIPTION = "Apple DepthPro: metric depth and field of view, three DINOv2-L encoders (transformers)"
    HF_REPO = "apple/DepthPro-hf"
    INPUT_SIZE = 1536  # the processor resizes every image to 1536x1536
    RELATIVE_COST = 700  # --shard balancing: the costliest by far, a task of its own
    PRETRAINED_KWARGS = {"use_fov_model": True}
    SWEEP_UNSUPPORTED = {
        "input_size": "the processor resizes every image to 1536x1536, the size the encoders' patch layout is built for"
    }
    TIME_BLOCKS = (
        "depth_pro.encoder.patch_encoder",
        "depth_pro.encoder.image_encoder",
        "depth_pro.neck",
        "fusion_stage",
        "head",
        "fov_model",
    )
    ONNX_OUTPUTS = ("predicted_depth", "field_of_view")

    @classmethod
    def model_class(cls):
        from transformers import DepthProForDepthEstimation

        return DepthProForDepthEstimation

    @classmethod
    def random_config(cls):
        from transformers import DepthProConfig, Dinov2Config

        encoder = dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, patch_size=16, image_size=384)
        return DepthProConfig(
            patch_model_config=Dinov2Config(**encoder),
            image_model_config=Dinov2Config(**encoder),
            fov_model_config=Dinov2Config(**encoder),
            fusion_hidden_size=256,
            intermediate_hook_ids=[11, 5],
            intermediate_feature_dims=[256, 256],
            scaled_images_ratios=[0.25, 0.5, 1],
            scaled_images_overlap_ratios=[0.0, 0.5, 0.25],
            scaled_images_feature_dims=[1024, 1024, 512],
            use_fov_model=True,
        )

    @classmethod
    def random_processor(cls):
        from transformers import DepthProImageProcessor

        return DepthProImageProcessor(
            size={"height": 1536, "width": 1536},
            do_rescale=True,
            rescale_factor=1 / 255,
            do_normalize=True,
            image_mean=[0.5] * 3,
            image_std=[0.5] * 3,
        )


class DepthAnythingV2Benchmark(HFDepthBenchmark):
    """Depth Anything V2 (relative depth): DINOv2 backbone and DPT head, from transformers."""

    INPUT_SIZE = 518  # shorter side, aspect ratio kept, multiple of 14
    HIDDEN_SIZE = LAYERS = HEADS = FUSION_SIZE = 0
    OUT_INDICES: list = []
    NECK_SIZES: list = []

    @classmethod
    def model_class(cls):
        from transformers import DepthAnythingForDepthEstimation

        return DepthAnythingForDepthEstimation

    @classmethod
    def random_config(cls):
        from transformers import DepthAnythingConfig, Dinov2Config

        backbone = Dinov2Config(
            hidden_size=cls.HIDDEN_SIZE,
            num_hidden_layers=cls.LAYERS,
            num_attention_heads=cls.HEADS,
            patch_size=14,
            image_size=518,
            out_features=[f"stage{i}" for i in cls.OUT_INDICES],
            apply_layernorm=True,
            reshape_hidden_states=False,
        )
        return DepthAnythingConfig(
            backbone_config=backbone,
            reassemble_hidden_size=cls.HIDDEN_SIZE,
            fusion_hidden_size=cls.FUSION_SIZE,
            neck_hidden_sizes=cls.NECK_SIZES,
            depth_estimation_type="relative",
        )

    @classmethod
    def random_processor(cls):
        from transformers import DPTImageProcessor

        return DPTImageProcessor(
            size={"height": 518, "width": 518},
            keep_aspect_ratio=True,
            ensure_multiple_of=14,
            resample=Image.BICUBIC,
            do_rescale=True,
            rescale_factor=1 / 255,
            do_normalize=True,
            image_mean=[0.485, 0.456, 0.406],
            image_std=[0.229, 0.224, 0.225],
            do_pad=False,
        )


class DepthAnythingV2SmallBenchmark(DepthAnythingV2Benchmark):
    MODEL_NAME = "DepthAnythingV2Small"
    CLI_NAME = "depth-anything-v2-small"
    DESCRIPTION = "Depth Anything V2 Small: relative depth, ViT-S/14 (transformers)"
    HF_REPO = "depth-anything/Depth-Anything-V2-Small-hf"
    HIDDEN_SIZE, LAYERS, HEADS, OUT_INDICES = 384, 12, 6, [3, 6, 9, 12]
    FUSION_SIZE, NECK_SIZES = 64, [48, 96, 192, 384]
    RELATIVE_COST = 15


class DepthAnythingV2BaseBenchmark(DepthAnythingV2Benchmark):
    MODEL_NAME = "DepthAnythingV2Base"
    CLI_NAME = "depth-anything-v2-base"
    DESCRIPTION = "Depth Anything V2 Base: relative depth, ViT-B/14 (transformers)"
    HF_REPO = "depth-anything/Depth-Anything-V2-Base-hf"
    HIDDEN_SIZE, LAYERS, HEADS, OUT_INDICES = 768, 12, 12, [3, 6, 9, 12]
    FUSION_SIZE, NECK_SIZES = 128, [96, 192, 384, 768]
    RELATIVE_COST = 60


class DepthAnythingV2LargeBenchmark(DepthAnythingV2Benchmark):
    MODEL_NAME = "DepthAnythingV2Large"
    CLI_NAME = "depth-anything-v2-large"
    DESCRIPTION = "Depth Anything V2 Large: relative depth, ViT-L/14 (transformers)"
    HF_REPO = "depth-anything/Depth-Anything-V2-Large-hf"
    HIDDEN_SIZE, LAYERS, HEADS, OUT_INDICES = 1024, 24, 16, [5, 12, 18, 24]
    FUSION_SIZE, NECK_SIZES = 256, [256, 512, 1024, 1024]
    RELATIVE_COST = 200


class YOLO11nDetectBenchmark(YOLOBenchmark):
    MODEL_NAME = "YOLO11nDetect"
    CLI_NAME = "yolo11n-detect"
    DESCRIPTION = "YOLO11n object detection, 80 COCO classes (ultralytics)"
    TASK = "detect"
    WEIGHTS_FILE, ARCH_YAML = "yolo11n.pt", "yolo11n.yaml"
    RELATIVE_COST = 1  # the unit of RELATIVE_COST


class YOLO11nSegmentBenchmark(YOLOBenchmark):
    MODEL_NAME = "YOLO11nSegment"
    CLI_NAME = "yolo11n-segment"
    DESCRIPTION = "YOLO11n instance segmentation (ultralytics)"
    TASK = "segment"
    WEIGHTS_FILE, ARCH_YAML = "yolo11n-seg.pt", "yolo11n-seg.yaml"
    RELATIVE_COST = 1.6


class YOLO11nPoseBenchmark(YOLOBenchmark):
    MODEL_NAME = "YOLO11nPose"
    CLI_NAME = "yolo11n-pose"
    DESCRIPTION = "YOLO11n human pose, 17 keypoints (ultralytics)"
    TASK = "pose"
    WEIGHTS_FILE, ARCH_YAML = "yolo11n-pose.pt", "yolo11n-pose.yaml"
    RELATIVE_COST = 1.2


class MobileSAMBenchmark(UltralyticsBenchmark):
    MODEL_NAME = "MobileSAM"
    CLI_NAME = "mobilesam"
    DESCRIPTION = "MobileSAM promptable segmentation, TinyViT encoder (ultralytics SAM)"
    TASK = "sam"
    WEIGHTS_FILE = "mobile_sam.pt"
    INPUT_SIZE = 1024
    RELATIVE_COST = 100  # with SAM_PROMPT "everything"; one box prompt costs far less
    # "everything": a grid of point prompts over the whole image (minutes on a CPU);
    # "box": one box prompt, the usual interactive use (seconds). --sam-prompt overrides.
    SAM_PROMPT = "everything"
    RUN_OPTIONS = (
        ModelOption(
            "sam_prompt",
            choices=("everything", "box"),
            default_constant="SAM_PROMPT",
            help="MobileSAM workload: everything (grid of point prompts) or box (one box prompt)",
        ),
    )
    BOX_FRACTION = (0.25, 0.25, 0.75, 0.75)  # the box prompt, as fractions of width and height
    SWEEP_UNSUPPORTED = {
        "batch": "the SAM predictor prompts one image at a time",
        "input_size": "the image encoder is built for 1024x1024 inputs (fixed positional embeddings)",
    }

    @staticmethod
    def ultralytics_class():
        from ultralytics import SAM

        return SAM

    @classmethod
    def build_random_network(cls):
        from ultralytics.models.sam.build import build_mobile_sam

        return build_mobile_sam(None)

    def load_random(self) -> str:
        from ultralytics import SAM

        builder = self.build_random_network

        class RandomMobileSAM(SAM):
            def _load(self, weights, task=None):
                self.model = builder()

        self.ul_model = RandomMobileSAM(self.WEIGHTS_FILE)  # the name only selects MobileSAM; nothing is read
        return "random (ultralytics build_mobile_sam, seed-initialised)"

    def prompt(self) -> str:
        return self.option("sam_prompt")

    def network(self):
        return self.ul_model.model

    def input_module(self):
        return self.ul_model.model.image_encoder

    # Variants: the predictor calls the encoders and the decoder one by one, never the SAM module
    # itself, so parity compares the image embedding and torch.compile takes the image encoder.
    def raw_output_module(self):
        return self.ul_model.model.image_encoder

    def raw_parts(self, output) -> dict:
        return {"image_embeddings": output}

    def compile_network(self) -> None:
        import torch

        sam = self.ul_model.model
        sam.image_encoder = torch.compile(sam.image_encoder)

    def predict_kwargs(self, image) -> dict:
        if self.prompt() != "box":
            return {"imgsz": self.INPUT_SIZE}
        x0, y0, x1, y1 = self.BOX_FRACTION
        return {
            "imgsz": self.INPUT_SIZE,
            "bboxes": [[x0 * image.width, y0 * image.height, x1 * image.width, y1 * image.height]],
        }

    def render_prediction(self, image, prediction, path):
        super().render_prediction(image, prediction, path)
        if self.prompt() == "box":
            from PIL import ImageDraw

            with Image.open(path) as drawn:
                drawn = drawn.convert("RGB")
            box = self.predict_kwargs(image)["bboxes"][0]
            ImageDraw.Draw(drawn).rectangle(box, outline=(255, 255, 255), width=max(2, image.width // 200))
            drawn.save(path)

    def run_config(self) -> dict:
        config: dict = {"sam_prompt": self.prompt()}
        if self.prompt() == "box":
            config["box_fraction_xyxy"] = list(self.BOX_FRACTION)
        return config


MODEL_CLASSES: list[type[ModelBenchmark]] = [
    DepthProBenchmark,
    DepthAnythingV2SmallBenchmark,
    DepthAnythingV2BaseBenchmark,
    DepthAnythingV2LargeBenchmark,
    YOLO11nDetectBenchmark,
    YOLO11nSegmentBenchmark,
    YOLO11nPoseBenchmark,
    MobileSAMBenchmark,
]
MODELS_BY_CLI_NAME = {cls.CLI_NAME: cls for cls in MODEL_CLASSES}


def main(argv: list[str] | None = None) -> int:
    defaults = cli.RunDefaults(
        runs=NUM_INFERENCE_RUNS,
        warmup=NUM_WARMUP_ROUNDS,
        seed=RANDOM_SEED,
        image_dir=DEFAULT_IMAGE_DIR,
        models_dir=DEFAULT_MODELS_DIR,
        output_dir=DEFAULT_OUTPUT_DIR,
    )
    return cli.main(MODELS_BY_CLI_NAME, defaults, argv)


if __name__ == "__main__":
    sys.exit(main())
