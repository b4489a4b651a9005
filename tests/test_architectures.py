"""--weights random must build exactly the released architectures: parameter counts of the
released checkpoints (issue table). Transformers models are built on the meta device, so
DepthPro's 952 M parameters cost no memory."""

import pytest
import torch

RELEASED_PARAMETERS = {
    "depthpro": 951_994_402,
    "depth-anything-v2-small": 24_785_089,
    "depth-anything-v2-base": 97_470_785,
    "depth-anything-v2-large": 335_315_649,
    "yolo11n-detect": 2_616_248,  # fused, as ultralytics predicts with it
    "yolo11n-segment": 2_868_664,  # fused
    "mobilesam": 10_130_092,
}


def count(module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize(
    "name", ["depthpro", "depth-anything-v2-small", "depth-anything-v2-base", "depth-anything-v2-large"]
)
def test_transformers_random_build_matches_release(ub, name):
    cls = ub.MODELS_BY_CLI_NAME[name]
    with torch.device("meta"):
        network = cls.build_random_network()
    assert count(network) == RELEASED_PARAMETERS[name]


@pytest.mark.parametrize("name", ["yolo11n-detect", "yolo11n-segment", "mobilesam"])
def test_ultralytics_random_build_matches_release(ub, name):
    assert count(ub.MODELS_BY_CLI_NAME[name].build_random_network()) == RELEASED_PARAMETERS[name]


def test_yolo11n_pose_matches_installed_yaml(ub):
    """The pose count comes from the installed ultralytics' yaml; 2,900,369 with 8.4.190."""
    import ultralytics
    from ultralytics.nn.tasks import PoseModel

    built = count(ub.MODELS_BY_CLI_NAME["yolo11n-pose"].build_random_network())
    independent = PoseModel("yolo11n-pose.yaml", verbose=False).fuse(verbose=False)
    assert built == count(independent)
    if ultralytics.__version__ == "8.4.190":
        assert built == 2_900_369


def test_depthpro_random_build_has_the_fov_model(ub):
    with torch.device("meta"):
        network = ub.DepthProBenchmark.build_random_network()
    assert network.fov_model is not None
    assert network.config.patch_model_config.hidden_size == 1024


def test_every_model_is_listed_once(ub):
    assert len(ub.MODEL_CLASSES) == 8
    assert len(ub.MODELS_BY_CLI_NAME) == 8
    assert len({c.MODEL_NAME for c in ub.MODEL_CLASSES}) == 8
