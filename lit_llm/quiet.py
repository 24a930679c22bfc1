"""Silence the messages of the libraries under the kit that a user of `lit-llm` cannot act on.

Each filter names the message and why it is noise; anything else still reaches the console.
"""

from __future__ import annotations

import logging
import warnings


class _DropMessages(logging.Filter):
    def __init__(self, *starts: str) -> None:
        super().__init__()
        self.starts = starts

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.starts)


def silence_known_noise() -> None:
    """Install the filters (idempotent): called by the `lit-llm` command before it runs anything."""
    # Lightning advertises a hosted logging service whenever no LitLogger is configured.
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, _DropMessages) for f in rank_zero.filters):
        rank_zero.addFilter(_DropMessages("💡 Tip: For seamless cloud logging"))
    # Lightning 2.6's pytree helper uses a torch API that torch 2.13 deprecates; nothing to do on our side.
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
