"""The results document as records (vision_bench/records/run_document.py, run_config.py): a results
file read through read_document writes back the same JSON, every phase of phases.py is a field of
PhaseTotals, and a hand-built document with parts missing reads as records."""

import json
from pathlib import Path

from vision_bench.common import strict_json
from vision_bench.phases import PHASES
from vision_bench.records.codec import ABSENT
from vision_bench.records.run_config import AllocatorSettings, RunConfig, ShardRecord, SystemInfo, known
from vision_bench.records.run_document import PHASE_FIELDS, PhaseTotals, RunDocument, read_document

BEFORE = Path("/work/runs/before/results/benchmark_results_20261207_072135.json")


def synthetic_document() -> dict:
    return {
        "schema": "unified-benchmark/3",
        "run_id": "r1",
        "status": "complete",
        "config": {
            "runs_per_image": 3,
            "seed": 1,
            "sam_prompt": None,  # a model option at the top level: a key the record does not declare
            "shard": {
                "index": 1,
                "count": 2,
                "models": ["b"],
                "selected": [
                    {"cli_name": "a", "model": "A", "task": "t", "library": "l", "relative_cost": 2, "shard": 0},
                    {"cli_name": "b", "model": "B", "task": "t", "library": "l", "relative_cost": 1, "shard": 1},
                ],
                "slurm": {"job_id": "7", "array_job_id": "6", "array_task_id": "1", "node": "n1"},
            },
            "model_options": {"sam_prompt": None},
        },
        "system": {"os": "Linux", "cpu_count": 2},
        "images": ["a.jpg"],
        "models": [
            {
                "model": "A",
                "cli_name": "a",
                "status": "complete",
                "runs": [],
                "phase_seconds": {},
                "allocator": {"mmap_threshold_bytes": 1, "trim_threshold_bytes": 2},
                "system": {"os": "Linux", "gpu": "X"},
                "run_config": {"seed": 2},
            }
        ],
        "merged_from": [{"file": "x.json", "run_id": "r0", "status": "complete", "command": "c"}],
        "shards": {"count": 2, "present": [0, 1], "missing": [], "logs_template": None},
        "phase_totals": {"load": 1.0, "wall": 3.0, "measuring": 1.0, "overhead": 2.0, "shards": []},
    }


def test_a_document_reads_as_records_and_writes_back_the_same_json():
    data = synthetic_document()
    document = read_document(json.loads(json.dumps(data)))
    assert isinstance(document, RunDocument) and isinstance(document.config, RunConfig)
    assert isinstance(document.config.shard, ShardRecord) and document.config.shard.selected[1].shard == 1
    assert document.config.shard.slurm and document.config.shard.slurm.array_job_id == "6"
    assert isinstance(document.system, SystemInfo) and document.system.cpu_count == 2
    assert document.system.gpu is ABSENT and known(document.system.gpu) is None  # not recorded
    model = document.models[0]
    assert isinstance(model.allocator, AllocatorSettings) and model.allocator.trim_threshold_bytes == 2
    assert isinstance(model.system, SystemInfo) and model.system.gpu == "X"
    assert isinstance(model.run_config, RunConfig) and model.run_config.seed == 2
    assert isinstance(document.phase_totals, PhaseTotals) and document.phase_totals.seconds("load") == 1.0
    assert document.merged_from and document.merged_from[0].run_id == "r0"
    assert document.shards and document.shards.present == [0, 1]
    assert strict_json(document) == data  # same keys, same values, nothing added


def test_the_seeded_results_file_writes_back_unchanged():
    if not BEFORE.exists():
        return
    data = json.loads(BEFORE.read_text(encoding="utf-8"))
    assert strict_json(read_document(json.loads(json.dumps(data)))) == data


def test_every_phase_is_a_field_of_the_phase_totals():
    assert PHASE_FIELDS == tuple(p.name for p in PHASES)
    assert all(hasattr(PhaseTotals(), name) for name in PHASE_FIELDS)


def test_a_hand_built_document_with_parts_missing_reads():
    document = read_document({"models": [{"model": "A", "cli_name": "a"}], "config": None})
    assert document.config == RunConfig() and document.system == SystemInfo() and document.phase_totals is None
    assert strict_json(document)["models"] == [{"model": "A", "cli_name": "a", "runs": [], "phase_seconds": {}}]
