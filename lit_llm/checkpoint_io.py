"""AtomicCheckpointIO: checkpoint files written beside their target, then renamed into place.

Lightning's default writer builds the whole checkpoint in memory and, through fsspec, in a
temporary file under $TMPDIR; on a cluster whose $TMPDIR is another filesystem than the run
folder the final move is a copy (not atomic), and a killed write leaves the temp file behind.
This writer streams `torch.save` into `.<name>.tmp-<pid>` in the target's folder, fsyncs it and
renames it (atomic on one filesystem); temp files a killed write left are removed on the next save.

    Trainer(plugins=[AtomicCheckpointIO()])      # `lit-llm fit` uses it unless plugins are configured
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO


class AtomicCheckpointIO(TorchCheckpointIO):
    """torch.save to a temp file beside the target, fsync, rename; stale temp files cleaned."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options (got {storage_options!r})")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        for stale in path.parent.glob(f".{path.name}.tmp-*"):  # left by a killed write
            stale.unlink(missing_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
