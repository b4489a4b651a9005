"""Parity figures and verdicts on hand-made outputs whose right answers are known (numpy only)."""

import math

import numpy as np
import pytest

from vision_bench.records.codec import from_json
from vision_bench.records.parity_figures import BoxMatch, DetectionParity, ImageParity
from vision_bench.variants import parity

# --- boxes ---------------------------------------------------------------------------------


def test_identical_boxes_match_with_iou_one():
    boxes = np.array([[0, 0, 10, 10], [20, 20, 50, 40], [100, 100, 200, 300]], dtype=float)
    classes = np.array([0, 1, 2])
    result = parity.match_boxes(boxes, classes, boxes.copy(), classes.copy())
    assert len(result.matched) == 3
    assert sorted((i, j) for i, j, _ in result.matched) == [(0, 0), (1, 1), (2, 2)]
    assert result.mean_iou == pytest.approx(1.0)
    assert result.unmatched_reference == 0 and result.unmatched_variant == 0
    np.testing.assert_allclose(np.diag(parity.box_iou(boxes, boxes)), 1.0)


def test_shifted_box_gives_analytic_iou():
    ref = np.array([[0, 0, 10, 10]], dtype=float)
    var = np.array([[2, 0, 12, 10]], dtype=float)  # shifted 2 px right
    # overlap 8x10 = 80; union 100 + 100 - 80 = 120
    expected = 80 / 120
    assert parity.box_iou(ref, var)[0, 0] == pytest.approx(expected, abs=1e-12)
    result = parity.match_boxes(ref, [3], var, [3])
    assert result.mean_iou == pytest.approx(expected, abs=1e-12)
    det = parity.detection_parity({"boxes": ref, "classes": [3]}, {"boxes": var, "classes": [3]})
    assert det.matched == 1 and det.unmatched == 0
    _, reasons = parity.verdict([det], parity.FP32_TOLERANCE)
    assert any("mean IoU" in r for r in reasons)


def test_missing_box_counted_on_the_right_side():
    ref = np.array([[0, 0, 10, 10], [50, 50, 60, 60]], dtype=float)
    var = ref[:1].copy()
    det = parity.detection_parity({"boxes": ref, "classes": [0, 0]}, {"boxes": var, "classes": [0]})
    assert (det.matched, det.unmatched_reference, det.unmatched_variant, det.unmatched) == (1, 1, 0, 1)
    det = parity.detection_parity({"boxes": var, "classes": [0]}, {"boxes": ref, "classes": [0, 0]})
    assert (det.unmatched_reference, det.unmatched_variant) == (0, 1)
    assert parity.verdict([det], parity.FP32_TOLERANCE)[0] == "fail"
    assert parity.verdict([det], parity.HALF_TOLERANCE)[0] == "pass"


def test_class_mismatch_prevents_match_and_none_classes_ignore_class():
    boxes = np.array([[0, 0, 10, 10]], dtype=float)
    result = parity.match_boxes(boxes, [1], boxes, [2])
    assert result.matched == [] and result.mean_iou is None
    assert result.unmatched_reference == 1 and result.unmatched_variant == 1
    assert len(parity.match_boxes(boxes, None, boxes, None).matched) == 1


def test_both_empty_is_not_a_failure():
    empty = np.zeros((0, 4))
    result = parity.match_boxes(empty, np.zeros(0), empty, np.zeros(0))
    assert result == BoxMatch(matched=[], unmatched_reference=0, unmatched_variant=0, mean_iou=None)
    det = parity.detection_parity({"boxes": empty, "classes": []}, {"boxes": empty, "classes": []})
    assert parity.verdict([det], parity.FP32_TOLERANCE) == ("pass", [])


def test_greedy_takes_highest_iou_first():
    ref = np.array([[0, 0, 10, 10], [1, 0, 11, 10]], dtype=float)
    var = np.array([[1, 0, 11, 10]], dtype=float)  # identical to ref 1, overlaps ref 0 too
    result = parity.match_boxes(ref, None, var, None)
    assert [(i, j) for i, j, _ in result.matched] == [(1, 0)]
    assert result.unmatched_reference == 1


# --- keypoints and masks ---------------------------------------------------------------------


def test_keypoint_displacement_three_four_five():
    boxes = np.array([[0, 0, 100, 100]], dtype=float)
    kp_ref = np.array([[[10, 10, 0.9], [20, 20, 0.8], [30, 30, 0.7]]])
    kp_var = kp_ref.copy()
    kp_var[0, 1, :2] += (3, 4)
    kp_var[0, 2, 2] = 100.0  # a third column is confidence, not a position: it must not count
    det = parity.detection_parity(
        {"boxes": boxes, "classes": [0], "keypoints": kp_ref}, {"boxes": boxes, "classes": [0], "keypoints": kp_var}
    )
    assert det.max_keypoint_displacement_px == pytest.approx(5.0)
    status, reasons = parity.verdict([det], parity.HALF_TOLERANCE)
    assert status == "fail" and any("keypoint" in r and "5" in r for r in reasons)


def test_mask_iou_known_value():
    a = np.zeros((1, 4, 4), dtype=bool)
    b = np.zeros((1, 4, 4), dtype=bool)
    a[0, :2, :2] = True  # 4 pixels
    b[0, :2, :3] = True  # 6 pixels, 4 shared -> IoU 4/6
    result = parity.mask_parity(a, b)
    assert result.mean_mask_iou == pytest.approx(4 / 6)
    assert result.min_mask_iou == pytest.approx(4 / 6)
    assert result.unmatched_reference == 0 and result.unmatched_variant == 0
    assert parity.verdict([result], parity.HALF_TOLERANCE)[0] == "fail"
    boxes = np.array([[0, 0, 4, 4]], dtype=float)
    det = parity.detection_parity(
        {"boxes": boxes, "classes": [0], "masks": a}, {"boxes": boxes, "classes": [0], "masks": b}
    )
    assert det.mean_mask_iou == pytest.approx(4 / 6)


def test_mask_parity_pairs_best_unused_and_counts_extra():
    m = np.zeros((3, 4, 4), dtype=bool)
    m[0, 0] = True
    m[1, 1] = True
    m[2, 2] = True
    result = parity.mask_parity(m[:2], m[::-1])  # variant order reversed plus one extra mask
    assert result.mean_mask_iou == pytest.approx(1.0)
    assert result.unmatched_variant == 1 and result.unmatched_reference == 0
    assert parity.mask_parity(np.zeros((0, 4, 4)), np.zeros((0, 4, 4))).mean_mask_iou is None


def test_detection_masks_of_different_size_are_noted_and_fail():
    boxes = np.array([[0, 0, 4, 4]], dtype=float)
    det = parity.detection_parity(
        {"boxes": boxes, "classes": [0], "masks": np.ones((1, 4, 4), bool)},
        {"boxes": boxes, "classes": [0], "masks": np.ones((1, 8, 8), bool)},
    )
    assert det.mean_mask_iou is None and det.notes
    assert parity.verdict([det], parity.HALF_TOLERANCE)[0] == "fail"


# --- depth -----------------------------------------------------------------------------------


def test_depth_known_relative_error():
    rng = np.random.default_rng(0)
    ref = rng.uniform(50, 500, size=(32, 48))  # large enough that eps=1e-6 is negligible
    result = parity.depth_parity(ref, ref * 1.01)
    assert result.mean_relative_error == pytest.approx(0.01, abs=1e-9)
    assert result.p99_relative_error == pytest.approx(0.01, abs=1e-9)
    assert result.max_abs_error == pytest.approx(0.01 * ref.max())
    assert parity.verdict([result], parity.FP32_TOLERANCE)[0] == "pass"  # 0.01 is not > 0.01
    worse = parity.depth_parity(ref, ref * 1.02)
    status, reasons = parity.verdict([worse], parity.FP32_TOLERANCE)
    assert status == "fail" and "depth p99" in reasons[0]


def test_depth_shape_mismatch_is_inf_and_fails():
    result = parity.depth_parity(np.ones((4, 4)), np.ones((4, 5)))
    assert result.mean_relative_error == math.inf and result.p99_relative_error == math.inf
    assert result.shape_mismatch == [[4, 4], [4, 5]]
    status, reasons = parity.verdict([result], parity.HALF_TOLERANCE)
    assert status == "fail" and "shape mismatch" in reasons[0]


def test_depth_nan_in_variant_is_infinite():
    ref = np.ones((10, 10))
    var = ref.copy()
    var[0, 0] = np.nan
    result = parity.depth_parity(ref, var)
    assert result.max_abs_error == math.inf and result.mean_relative_error == math.inf


# --- raw outputs ---------------------------------------------------------------------------


def _yolo_like(rng, rows=84, anchors=100):
    raw = np.empty((1, rows, anchors))
    raw[0, :4] = rng.uniform(0, 640, size=(4, anchors))
    raw[0, 4:] = rng.uniform(0, 1, size=(rows - 4, anchors))
    return raw


def test_per_part_normalisation_sees_score_error_that_whole_tensor_hides():
    rng = np.random.default_rng(1)
    ref = _yolo_like(rng)
    var = ref.copy()
    var[0, 4:] += 0.02
    whole = np.abs(var - ref).max() / np.abs(ref).max()
    assert whole < 1e-3  # the whole-tensor figure would pass an fp32 tolerance
    result = parity.raw_output_parity(parity.split_yolo_output(ref, "detect"), parity.split_yolo_output(var, "detect"))
    assert result.worst_part == "scores"
    assert result.normalised_error == pytest.approx(0.02 / np.abs(ref[0, 4:]).max(), rel=1e-9)
    assert 0.019 < result.normalised_error < 0.021
    assert result.shape_mismatch is False
    boxes = next(p for p in result.parts if p.part == "boxes")
    assert boxes.max_abs_error == 0.0
    status, reasons = parity.verdict([result], parity.FP32_TOLERANCE)
    assert status == "fail" and len(reasons) == 1 and reasons[0].startswith("scores normalised error")
    assert parity.verdict([result], parity.HALF_TOLERANCE)[0] == "pass"


def test_raw_nan_in_variant_is_infinite_and_fails():
    ref = {"depth": np.linspace(0, 5, 20).reshape(4, 5)}
    var = {"depth": ref["depth"].copy()}
    var["depth"][2, 3] = np.nan
    result = parity.raw_output_parity(ref, var)
    assert result.normalised_error == math.inf and result.max_abs_error == math.inf
    status, reasons = parity.verdict([result], parity.HALF_TOLERANCE)
    assert status == "fail" and "depth" in reasons[0] and "inf" in reasons[0]
    var["depth"][2, 3] = np.inf
    assert parity.raw_output_parity(ref, var).normalised_error == math.inf


def test_raw_shape_mismatch_and_missing_part():
    ref = {"output0": np.zeros((1, 84, 10)), "extra": np.ones(3)}
    result = parity.raw_output_parity(ref, {"output0": np.zeros((1, 84, 11))})
    assert result.shape_mismatch is True and result.normalised_error == math.inf
    assert result.parts[0].shape_mismatch == [[1, 84, 10], [1, 84, 11]]
    assert result.parts[1].shape_mismatch == [[3], None]
    status, reasons = parity.verdict([result], parity.HALF_TOLERANCE)
    assert status == "fail" and len(reasons) == 2


def test_zero_reference_uses_absolute_error():
    result = parity.raw_output_parity({"x": np.zeros(4)}, {"x": np.array([0, 0, 0.5, 0])})
    assert result.normalised_error == pytest.approx(0.5)
    assert result.parts[0].reference_max_abs == 0.0


def test_split_yolo_output_row_bookkeeping():
    rng = np.random.default_rng(2)
    det = parity.split_yolo_output(_yolo_like(rng, 84), "detect")
    assert set(det) == {"boxes", "scores"}
    assert det["boxes"].shape == (1, 4, 100) and det["scores"].shape == (1, 80, 100)
    pose_raw = _yolo_like(rng, 56)
    pose = parity.split_yolo_output(pose_raw, "pose", num_classes=1)
    assert pose["scores"].shape == (1, 1, 100) and pose["keypoints"].shape == (1, 51, 100)
    np.testing.assert_array_equal(pose["keypoints"], pose_raw[:, 5:])
    seg_raw = _yolo_like(rng, 116)
    seg = parity.split_yolo_output(seg_raw, "segment")
    assert seg["mask_coefficients"].shape == (1, 32, 100)
    np.testing.assert_array_equal(seg["scores"], seg_raw[:, 4:84])
    with pytest.raises(ValueError, match="rows"):
        parity.split_yolo_output(_yolo_like(rng, 85), "detect")
    with pytest.raises(ValueError, match="rows"):
        parity.split_yolo_output(_yolo_like(rng, 84), "segment")
    with pytest.raises(ValueError):
        parity.split_yolo_output(_yolo_like(rng, 84), "classify")


# --- conversion, tolerances, verdicts, summary ---------------------------------------------------


def test_to_numpy_lists_and_arrays_are_float64():
    assert parity.to_numpy([[1, 2], [3, 4]]).dtype == np.float64
    assert parity.to_numpy(np.ones(3, dtype=np.float16)).dtype == np.float64


def test_to_numpy_bfloat16_tensor():
    torch = pytest.importorskip("torch")
    t = torch.tensor([1.0, 2.5, -3.0], dtype=torch.bfloat16, requires_grad=False)
    out = parity.to_numpy(t)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, [1.0, 2.5, -3.0])


def test_each_variant_class_gives_its_limits_half_precision_the_looser_ones():
    """The one rule for half precision: the variant's class (Variant.limits), read from the model's
    class constants, whose defaults are parity's two tolerances."""
    from vision_bench.models.base import ModelBenchmark
    from vision_bench.variants.registry import get_variant

    def limits(name):
        return get_variant(name).limits(ModelBenchmark)

    assert limits("torch-bf16") == limits("torch-fp16") == parity.HALF_TOLERANCE
    assert limits("onnxruntime") == limits("torch-compile") == limits("torch-channels-last") == parity.FP32_TOLERANCE
    assert get_variant("torch-fp16").limits_label == "half precision"
    assert get_variant("torch-channels-last").limits_label == "fp32"


def test_combine_verdicts():
    assert parity.combine_verdicts([("pass", []), ("pass", [])]) == ("pass", [])
    status, reasons = parity.combine_verdicts([("fail", ["a > 1"]), ("pass", []), ("fail", ["a > 1", "b < 2"])])
    assert status == "fail"
    assert len(reasons) == 2 and "a > 1" in reasons[0] and "0, 2" in reasons[0] and "b < 2" in reasons[1]
    assert parity.combine_verdicts([])[0] == "fail"


def test_missing_figures_are_not_failures():
    assert parity.verdict([], parity.FP32_TOLERANCE) == ("pass", [])


def test_summarise_picks_worst_across_images():
    ref = np.linspace(1, 10, 50)
    image_a = ImageParity(
        image="a.jpg",
        raw=parity.raw_output_parity({"scores": ref, "boxes": ref * 64}, {"scores": ref + 0.01, "boxes": ref * 64}),
        depth=parity.depth_parity(ref, ref * 1.01),
        detection=from_json(
            DetectionParity,
            {
                "matched": 2,
                "unmatched_reference": 1,
                "unmatched_variant": 0,
                "unmatched": 1,
                "mean_iou": 0.97,
                "max_keypoint_displacement_px": 2.0,
                "mean_mask_iou": 0.95,
            },
        ),
    )
    image_b = ImageParity(
        image="b.jpg",
        raw=parity.raw_output_parity({"scores": ref, "boxes": ref * 64}, {"scores": ref, "boxes": ref * 64 + 3}),
        depth=parity.depth_parity(ref, ref * 1.03),
        detection=from_json(
            DetectionParity,
            {
                "matched": 3,
                "unmatched_reference": 0,
                "unmatched_variant": 2,
                "unmatched": 2,
                "mean_iou": 0.99,
                "max_keypoint_displacement_px": 0.5,
                "mean_mask_iou": None,
            },
        ),
    )
    s = parity.summarise([image_a, image_b])
    assert s.images == 2
    assert s.worst_part == "boxes" and s.normalised_error == pytest.approx(3 / 640)
    assert s.depth_p99_relative_error == pytest.approx(0.03, abs=1e-6)
    assert s.depth_mean_relative_error == pytest.approx(0.03, abs=1e-6)
    assert s.min_mean_iou == 0.97
    assert s.unmatched == 3
    assert s.max_keypoint_displacement_px == 2.0
    assert s.min_mask_iou == 0.95
    assert s.shape_mismatch is False
    for value in vars(s).values():
        assert value is None or type(value) in (int, float, bool, str)


def test_figures_write_the_keys_their_task_has():
    """Keys a figure has only for some tasks: absent where the task lacks them, null where it has
    them but nothing was matched; a shape mismatch writes only what it can say."""
    from vision_bench.records.codec import to_json
    from vision_bench.records.variants import VariantDetails

    boxes = np.array([[0, 0, 10, 10]], dtype=float)
    plain = to_json(parity.detection_parity({"boxes": boxes, "classes": [0]}, {"boxes": boxes, "classes": [0]}))
    assert list(plain) == ["matched", "unmatched_reference", "unmatched_variant", "unmatched", "mean_iou", "notes"]
    empty_kp = np.zeros((0, 17, 3))
    pose = to_json(
        parity.detection_parity(
            {"boxes": np.zeros((0, 4)), "keypoints": empty_kp}, {"boxes": np.zeros((0, 4)), "keypoints": empty_kp}
        )
    )
    assert pose["max_keypoint_displacement_px"] is None and "mean_mask_iou" not in pose
    assert to_json(parity.depth_parity(np.ones((4, 4)), np.ones((4, 5)))) == {
        "shape_mismatch": [[4, 4], [4, 5]],
        "mean_relative_error": math.inf,
        "p99_relative_error": math.inf,
    }
    part = to_json(parity.raw_output_parity({"x": np.ones(3)}, {}))["parts"][0]
    assert part == {"part": "x", "shape_mismatch": [[3], None]}
    merged = VariantDetails(memory_format="channels_last") | VariantDetails(autocast_dtype="bfloat16")
    assert to_json(merged) == {"memory_format": "channels_last", "autocast_dtype": "bfloat16"}
