"""The status vocabularies (vision_bench/records.py): each member is its JSON spelling, so the files
written with members are byte for byte those written with the strings, and a member finds a string key."""

import json

from vision_bench.common import strict_json
from vision_bench.records import (
    ModelStatus,
    ParityVerdict,
    RunStatus,
    SuggestionStatus,
    SweepPointStatus,
    VariantStatus,
)

ENUMS = (RunStatus, ModelStatus, VariantStatus, SuggestionStatus, SweepPointStatus, ParityVerdict)


def test_members_write_the_same_json_as_their_strings():
    for enum in ENUMS:
        members = {m.name: {"status": m, m: [m]} for m in enum}
        strings = {m.name: {"status": m.value, m.value: [m.value]} for m in enum}
        assert json.dumps(strict_json(members), indent=2) == json.dumps(strict_json(strings), indent=2)
        assert json.dumps(members) == json.dumps(strings)


def test_members_equal_hash_and_format_as_their_strings():
    assert ModelStatus.NOT_RUN == "not run" and f"{ModelStatus.NOT_RUN}" == "not run"
    assert {"no small set": 1}[SuggestionStatus.NO_SMALL_SET] == 1
    assert SweepPointStatus("oom") is SweepPointStatus.OOM
    assert ParityVerdict.PASS != ParityVerdict.FAIL
