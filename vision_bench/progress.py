"""Progress lines while a long pass runs, saying how far it is through the network."""

from __future__ import annotations

import threading
import time

from .common import leaf_modules, log

PROGRESS_INTERVAL_SEC = 5.0  # a line this often while a long pass runs; shorter passes print none


class pass_progress:
    """Progress lines while one long pass runs, so that no pass is silent for minutes.

    A background thread prints a `[tag]` line every PROGRESS_INTERVAL_SEC while the pass runs
    (a pass that ends sooner prints nothing). With a network, forward pre-hooks on its leaf
    modules say how far the pass is: leaf modules run so far of the total, the top-level block
    and the last leaf module started (a hook fires only when a module starts, so the line says
    how long ago: a long module, or work between modules, shows as a growing age). Without a network (timed runs, drawing a
    picture) the line says only the elapsed time, and nothing is hooked. `detail` adds text,
    e.g. the dissection's record count.

        with pass_progress(bench.network(), "DepthPro FLOPs pass", blocks=bench.top_level_blocks()):
            bench.run_pipeline(image)
    """

    def __init__(self, network, label: str, tag: str = "PROGRESS", blocks=(), detail=None):
        self.network = network
        self.label = label
        self.tag = tag
        self.blocks = blocks
        self.detail = detail
        self.total = 0
        self.seen: set[int] = set()
        self.calls = 0
        self.current = None  # (name, start time) of the last leaf module started
        self.block = None  # label of the last top-level block started
        self._handles: list = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self):
        self.started = time.perf_counter()
        if self.network is not None:
            leaves = leaf_modules(self.network)
            self.total = len(leaves)
            self._handles = [m.register_forward_pre_hook(self._hook(name)) for name, m in leaves]
            self._handles += [block.register_forward_pre_hook(self._block_hook(label)) for label, block in self.blocks]
        self._thread = threading.Thread(target=self._tick, daemon=True, name=f"progress {self.label}")
        self._thread.start()
        return self

    def _hook(self, name: str):
        def pre(module, args):
            self.calls += 1
            self.seen.add(id(module))
            self.current = (name, time.perf_counter())

        return pre

    def _block_hook(self, label: str):
        def pre(module, args):
            self.block = label

        return pre

    def _tick(self) -> None:
        while not self._stop.wait(PROGRESS_INTERVAL_SEC):
            log(self.tag, self.line())

    def line(self) -> str:
        now = time.perf_counter()
        text = f"{self.label}: {now - self.started:.0f}s so far"
        if self.network is not None:
            text += f", {len(self.seen)}/{self.total} leaf modules run ({self.calls} calls)"
            if self.block is not None:
                text += f", in {self.block}"
            if self.current is not None:
                name, since = self.current
                text += f", last module started: {name} ({now - since:.0f}s ago)"
        if self.detail is not None:
            text += f", {self.detail()}"
        return text

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        for h in self._handles:
            h.remove()
        self._handles = []
        return False
