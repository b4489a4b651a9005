"""What a pass records, as dataclasses, and the statuses they carry. Dicts exist only at the JSON
boundary: each record family converts itself with `to_json()` / `from_json()` (the codec in
records/codec.py), and nothing else reads or writes the results file's keys."""

from .statuses import ModelStatus, ParityVerdict, RunStatus, SuggestionStatus, SweepPointStatus, VariantStatus

__all__ = ["ModelStatus", "ParityVerdict", "RunStatus", "SuggestionStatus", "SweepPointStatus", "VariantStatus"]
