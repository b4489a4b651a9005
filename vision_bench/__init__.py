"""The machinery of unified_benchmark.py: measuring, worker processes, reports.

Nothing here imports unified_benchmark; the model registry and the user's settings are passed
into cli.main. Heavy libraries (torch, transformers, ultralytics, matplotlib, cv2) are imported
inside functions, so that importing the package stays cheap and the fork server can start first.
"""

import os

__version__ = "1.0.0"  # the tool's; the results file's layout has its own (reports.results_file.RESULTS_SCHEMA)

# The libraries must not try the network when the user said there is none; set before they load.
if os.environ.get("HF_HUB_OFFLINE") == "1":
    os.environ.setdefault("YOLO_OFFLINE", "1")
