"""A callback for benchmarks: records time.perf_counter() after every training batch into a JSON file."""

import json
import time
from pathlib import Path

from lightning.pytorch.callbacks import Callback


class StepTimer(Callback):
    def __init__(self, path: str) -> None:
        self.path = path
        self.stamps: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.stamps.append(time.perf_counter())

    def on_train_end(self, trainer, pl_module) -> None:
        Path(self.path).write_text(json.dumps({"stamps": self.stamps}))
