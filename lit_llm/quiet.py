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
        return not record.getMessage().startswith(self.starts)


def silence_known_noise() -> None:
    """Install the filters (idempotent): called by the `lit-llm` command before it runs anything."""
    # Lightning advertises a hosted logging service whenever no LitLogger is configured.
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, _DropMessages) for f in rank_zero.filters):
        rank_zero.addFilter(_DropMessages("💡 Tip: For seamless cloud logging"))
    # Lightning 2.6's pytree helper uses a torch API that torch 2.13 deprecates; nothing to do on our side.
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")


def silence_sharding_noise() -> None:
    """Filters for messages of FSDP2 and DTensor about the kit's own, checked, use of them (idempotent):
    installed by `lit_llm.parallel` when it shards a model, so scripts see them silenced too."""
    # GPT.forward returns its logits sliced to the true vocabulary (a view). FSDP2 warns that an in-place
    # op on that view would skip its hooks; the loss and the evaluation read the logits out of place.
    warnings.filterwarnings("ignore", message=r"FSDP2-wrapped module \(FSDPGPT\) returned a view tensor")
    # The gradient norm of weights sharded on both mesh dims is reduced over each dim in turn, once a step.
    redistribute = logging.getLogger("torch.distributed.tensor._redistribute")
    if not any(isinstance(f, _DropMessages) for f in redistribute.filters):
        redistribute.addFilter(_DropMessages("While redistributing from (_NormPartial"))
