"""LitLLM: the LightningModule around `GPT` — loss, optimizer groups, LR schedule, metrics, FLOPs.

    from lit_llm.module import LitLLM
    from lit_llm.model import ModelConfig
    module = LitLLM(arch=ModelConfig(n_layer=2, d_model=64), vocab_size=4096)
    Trainer(max_steps=100).fit(module, datamodule)

`vocab_size` normally arrives from the data folder's manifest through a LightningCLI link.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from lightning.pytorch.utilities import rank_zero_info
from torchmetrics import SumMetric

from lit_llm.batch import (
    IGNORE_INDEX,
    INPUT_IDS,
    LABELS,
    POSITION_IDS,
    TARGET_BYTES,
    bits_per_byte,
    data_parallel_rank_and_size,
    describe_groups,
    resume_note,
)
from lit_llm.checkpoint import name_optimizer_state
from lit_llm.errors import UserError
from lit_llm.model import GPT, ModelConfig
from lit_llm.optim import OptimizerConfig, ScheduleConfig, build_optimizer, lr_factor
from lit_llm.parallel import (
    apply_activation_checkpointing,
    apply_tensor_parallel,
    is_on_meta,
    materialize,
    shard_with_fsdp2,
)
from lit_llm.rng_state import capture_rng_state, restore_rng_state
from lit_llm.time_budget import SpentTime


def total_gradient_norm(parameters) -> torch.Tensor:
    """The 2-norm of all gradients together (0 when there are none); a plain tensor also under FSDP2 and
    tensor parallelism, whose gradients are DTensors on different meshes (blocks on data x tensor, the
    embedding on data only): one reduction per mesh."""
    by_mesh: dict = {}
    for p in parameters:
        if p.grad is not None:
            by_mesh.setdefault(getattr(p.grad, "device_mesh", None), []).append(p.grad)
    norms = []
    for grads in by_mesh.values():
        norm = torch.nn.utils.get_total_norm(grads)
        norms.append(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)  # reduced over its mesh
    if len(norms) <= 1:
        return norms[0] if norms else torch.zeros(())
    return torch.linalg.vector_norm(torch.stack([n.to(norms[0].device) for n in norms]))


class LitLLM(LightningModule):
    """Pre-trains a GPT with next-token cross-entropy."""

    def __init__(
        self,
        arch: ModelConfig
        | None = None,  # Optional: its derived fields (n_kv_head, ffn_hidden) must not become defaults
        vocab_size: int | None = None,
        optimizer: OptimizerConfig = OptimizerConfig(),  # frozen: a safe shared default
        schedule: ScheduleConfig = ScheduleConfig(),
        z_loss: float = 0.0,
        compile: bool = False,
        activation_checkpointing: bool = False,
        fsdp_param_dtype: Literal["float32", "bfloat16", "float16"] | None = None,
        allow_tokenizer_change: bool = False,
        init_from: str | None = None,
    ) -> None:
        """
        Args:
            arch: Transformer architecture (a ModelConfig; presets in configs/model/); its vocab_size is replaced by `vocab_size` when given.
            vocab_size: Vocabulary size, linked from the data folder's manifest by `lit-llm fit`.
            optimizer: AdamW settings.
            schedule: Learning-rate schedule.
            z_loss: Weight of the z-loss (log Z)^2 that keeps the softmax normaliser near 1 (PaLM uses 1e-4).
            compile: torch.compile each transformer block.
            activation_checkpointing: Recompute each block's activations in backward (less memory, ~30% more compute).
            fsdp_param_dtype: Under FSDP2 (ModelParallelStrategy): dtype parameters are gathered and computed in
                (mixed precision policy; gradients are reduced in float32). None keeps the parameters' dtype.
            allow_tokenizer_change: Resume from a checkpoint trained on data of another tokenizer (same vocabulary
                size), or start from init_from's weights on data of another tokenizer; refused by default, since
                the token ids would mean other strings.
            init_from: Continued pre-training: start from this Hugging Face model, a folder or a Hub id (owner/name,
                fetched once into the Hugging Face cache). Its config.json is the architecture (leave arch unset),
                its safetensors the weights; prepare the data with its tokenizer (lit-llm data prepare --tokenizer
                the same folder or id). Llama architectures: Llama 2/3, Mistral without sliding window, SmolLM,
                TinyLlama; others are refused in one line.
        """
        super().__init__()
        self.init_from, self.hf_folder = init_from, None
        # False: a checkpoint replaces the weights next (`lit-llm fit --ckpt_path`), so init_from's are not read
        self.init_from_weights = True
        if init_from is not None:
            from lit_llm.hf_import import init_config

            arch, self.hf_folder = init_config(init_from, arch, vocab_size)
        arch = arch or ModelConfig()
        if vocab_size is not None and vocab_size != arch.vocab_size:
            arch = dataclasses.replace(arch, vocab_size=vocab_size, ffn_hidden=arch.ffn_hidden)
        self.model_config = arch
        self.optimizer_config = optimizer or OptimizerConfig()
        self.schedule_config = schedule or ScheduleConfig()
        self.z_loss, self.compile, self.activation_checkpointing = z_loss, compile, activation_checkpointing
        self.fsdp_param_dtype = fsdp_param_dtype
        self.allow_tokenizer_change = allow_tokenizer_change
        # No save_hyperparameters(): LightningCLI would silently replace the command line's model
        # config with the checkpoint's on resume. The config is stored in on_save_checkpoint and a
        # mismatch is refused in on_load_checkpoint.
        with torch.device("meta"):  # no weights yet: configure_model materializes them (or their shards)
            self.model = GPT(arch)
        self._init_rng = torch.get_rng_state()  # the weights drawn later equal those drawn now
        self.tokens_seen = 0
        self.val_nll, self.val_tokens, self.val_bytes, self.val_byte_nll = (
            SumMetric(),
            SumMetric(),
            SumMetric(),
            SumMetric(),
        )
        self._grad_norm: tuple[int, torch.Tensor] | None = None  # (step, norm)
        self._pending_rng: dict | None = None

    # ---- model set-up ----------------------------------------------------------------

    def configure_model(self) -> None:
        """Tensor parallelism, activation checkpointing, torch.compile and FSDP2 sharding, each applied once
        per block, then the weights (or this rank's shard of them) allocated and initialized
        (`lit_llm.parallel`)."""
        if getattr(self, "_model_configured", False):
            return  # Lightning calls this on every fit/validate; wrapping twice would nest wrappers
        self._model_configured = True
        if self.device_mesh is not None:
            apply_tensor_parallel(self.model, self.device_mesh)
        if self.activation_checkpointing:
            apply_activation_checkpointing(self.model)
        if self.compile:
            for block in self.model.blocks:
                block.compile()
        if self.device_mesh is not None:
            shard_with_fsdp2(self.model, self.device_mesh, self.fsdp_param_dtype)
        self.materialize()

    def _apply(self, fn, *args, **kwargs):
        """Moves and casts leave weights that are still on the meta device there (a run that fails before
        `configure_model` is torn down with `.cpu()`, which cannot copy a meta tensor)."""
        return super()._apply(lambda t: t if t.is_meta else fn(t), *args, **kwargs)

    def materialize(self, from_checkpoint: bool = False) -> None:
        """Allocate and initialize the weights once: unsharded on the CPU with the eager values of the
        seed of construction (Lightning moves them), sharded on this rank's device (`parallel.materialize`);
        with init_from, read from its safetensors instead (each rank its shards: `hf_import.load_weights`)
        unless a checkpoint replaces them next."""
        if not is_on_meta(self.model):
            return
        if self.hf_folder is not None and self.init_from_weights and not from_checkpoint:
            from lit_llm.hf_import import load_weights

            device = torch.device("cpu") if self.device_mesh is None else self.trainer.strategy.root_device
            load_weights(self.model, self.hf_folder, device)
            rank_zero_info(f"weights from {self.init_from} ({self.hf_folder})")
        elif self.device_mesh is None:
            materialize(self.model, self._init_rng, torch.device("cpu"))
        else:
            materialize(self.model, self._init_rng, self.trainer.strategy.root_device, sharded=True)

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        seq_len = getattr(datamodule, "seq_len", None)
        if seq_len is not None and seq_len > self.model_config.max_seq_len:
            raise UserError(
                f"data.seq_len={seq_len} exceeds model.max_seq_len={self.model_config.max_seq_len}"
            )
        data_vocab = getattr(datamodule, "vocab_size", None)
        if data_vocab is not None and data_vocab != self.model_config.vocab_size:
            raise UserError(
                f"{datamodule.path}: data vocabulary {data_vocab} != model vocab_size "
                f"{self.model_config.vocab_size} (made with another tokenizer?)"
            )
        if self.hf_folder is not None:
            from lit_llm.hf_import import check_data_tokenizer

            check_data_tokenizer(self.hf_folder, datamodule, self.allow_tokenizer_change)
        self.seq_len = seq_len or self.model_config.max_seq_len
        batch = getattr(datamodule, "batch_size", 1)
        self.flops_per_batch = self.model.flops_per_token(self.seq_len) * batch * self.seq_len

    def on_train_start(self) -> None:
        """Log the batch arithmetic once: micro-batch x data-parallel groups x accumulation = global batch,
        and what changed since the checkpoint a run resumes from (restored by now under every strategy)."""
        datamodule = getattr(self.trainer, "datamodule", None)
        micro = getattr(datamodule, "batch_size", None)
        if micro is None:
            return
        trainer = self.trainer
        accumulation = trainer.accumulate_grad_batches
        groups = data_parallel_rank_and_size(trainer)[1]
        global_batch = micro * groups * accumulation
        layout = {
            "batch/micro": micro,
            "batch/world_size": trainer.world_size,
            "batch/data_parallel": groups,
            "batch/accumulation": accumulation,
            "batch/global_samples": global_batch,
            "batch/global_tokens": global_batch * self.seq_len,
        }
        for logger in trainer.loggers:
            logger.log_hyperparams(layout)
        rank_zero_info(
            f"global batch = {micro} x {describe_groups(trainer, groups)} x {accumulation} accumulation = "
            f"{global_batch} samples = {global_batch * self.seq_len:,} tokens per optimizer step"
            f"{resume_note(datamodule, groups, global_batch)}"
        )

    def forward(self, idx: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, T, V); positions (B, T): the batch's POSITION_IDS under document masking, else None."""
        return self.model(idx, positions=positions)

    # ---- loss ------------------------------------------------------------------------

    def loss(self, logits: torch.Tensor, labels: torch.Tensor, reduction: str = "mean"):
        """Cross-entropy of whole logits over targets that are not IGNORE_INDEX (<|pad|>), plus the optional
        z-loss (validation; training computes the same loss chunked inside the model)."""
        logits = logits.float()
        loss = F.cross_entropy(
            logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX, reduction=reduction
        )
        if self.z_loss and reduction == "mean":
            valid = labels.flatten() != IGNORE_INDEX
            log_z = torch.logsumexp(logits.flatten(0, 1)[valid], dim=-1)
            loss = loss + self.z_loss * log_z.pow(2).mean()
        return loss

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        # The model returns the loss itself, chunk by chunk: the (B, T, V) logits never exist at once.
        loss = self.model(
            batch[INPUT_IDS], positions=batch.get(POSITION_IDS), labels=batch[LABELS], z_loss=self.z_loss
        )
        self.tokens_seen += batch[INPUT_IDS].numel() * data_parallel_rank_and_size(self.trainer)[1]
        self.log(
            "train/loss",
            loss,
            prog_bar=True,
            on_step=True,
            on_epoch=False,
            sync_dist=self.trainer.world_size > 1,
        )
        self.log("train/tokens", float(self.tokens_seen), on_step=True, on_epoch=False)
        self.log_source_epochs()
        return loss

    def log_source_epochs(self) -> None:
        """epoch/<source>: the epochs of each training source covered so far (from a data module with
        `source_epochs()`, like LitDataModule); on the progress bar too when there are at most three."""
        source_epochs = getattr(self.trainer.datamodule, "source_epochs", None)
        if not callable(source_epochs):
            return
        epochs = source_epochs()
        for name, value in epochs.items():
            self.log(f"epoch/{name}", float(value), prog_bar=len(epochs) <= 3, on_step=True, on_epoch=False)

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        self._grad_norm = None  # a rollback may restore a checkpoint of this very step: never reuse
        if self._pending_rng is not None:
            restore_rng_state(self._pending_rng)
            self._pending_rng = None

    def gradient_norm(self) -> torch.Tensor:
        """The total gradient norm of this optimizer step, before clipping; computed once per step
        (the loss-spike callback reads it before this module logs it)."""
        step = self.trainer.global_step
        if self._grad_norm is None or self._grad_norm[0] != step:
            self._grad_norm = (step, total_gradient_norm(self.parameters()))
        return self._grad_norm[1]

    def configure_gradient_clipping(
        self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None
    ) -> None:
        """Clipping by norm scales the gradients by the step's `gradient_norm()` (computed once, and
        correct where torch's `clip_grad_norm_` cannot combine DTensors of several meshes)."""
        if gradient_clip_val and gradient_clip_algorithm in (None, "norm"):
            torch.nn.utils.clip_grads_with_norm_(self.parameters(), gradient_clip_val, self.gradient_norm())
            return
        self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def on_before_optimizer_step(self, optimizer) -> None:
        self.log("train/grad_norm", self.gradient_norm(), on_step=True, on_epoch=False)
        self.log("train/lr", optimizer.param_groups[0]["lr"], on_step=True, on_epoch=False)

    # ---- validation ------------------------------------------------------------------

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        labels = batch[LABELS]
        logits = self(batch[INPUT_IDS], batch.get(POSITION_IDS))
        nll = self.loss(logits, labels, reduction="none").view_as(labels)
        valid = labels != IGNORE_INDEX
        self.val_nll.update(nll[valid].sum())
        self.val_tokens.update(valid.sum())
        if TARGET_BYTES in batch:
            counted = valid & (batch[TARGET_BYTES] > 0)  # special tokens have no bytes
            self.val_byte_nll.update(nll[counted].sum())
            self.val_bytes.update(batch[TARGET_BYTES][counted].sum())

    def on_validation_epoch_end(self) -> None:
        tokens = self.val_tokens.compute()
        if tokens > 0:
            val_loss = self.val_nll.compute() / tokens
            self.log(
                "val/loss", val_loss, prog_bar=True, sync_dist=True
            )  # already global; silences a warning
            self.log("val/ppl", torch.exp(val_loss), sync_dist=True)
            num_bytes = int(self.val_bytes.compute())
            if num_bytes:
                self.log(
                    "val/bpb",
                    bits_per_byte(float(self.val_byte_nll.compute()), num_bytes),
                    prog_bar=True,
                    sync_dist=True,
                )
        for metric in (self.val_nll, self.val_tokens, self.val_bytes, self.val_byte_nll):
            metric.reset()

    # ---- optimizer -------------------------------------------------------------------

    def configure_optimizers(self):
        optimizer = build_optimizer(self.model, self.optimizer_config)
        total = self.schedule_config.total_steps or self.trainer.max_steps or -1
        spent = SpentTime(self.trainer) if self.schedule_config.clock == "time" else None
        if total < 1 and spent is None:
            raise UserError(
                "set trainer.max_steps (or model.schedule.total_steps): the LR schedule needs a length"
                " (or model.schedule.clock time with trainer.max_time)"
            )
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer,
            lambda step: lr_factor(step, total, self.schedule_config, spent(step) if spent else None),
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # ---- checkpoints: what Lightning leaves out --------------------------------------

    def _attached_trainer(self):
        """The Trainer, or None when the module is used without one (`self.trainer` raises then)."""
        try:
            return self.trainer
        except RuntimeError:
            return None

    def _check_tokenizer(self, saved: str | None) -> None:
        """Refuse to continue on data of another tokenizer than the checkpoint's (one line), unless allowed."""
        current = getattr(getattr(self._attached_trainer(), "datamodule", None), "tokenizer_sha256", None)
        if saved and current and saved != current and not self.allow_tokenizer_change:
            path = getattr(self.trainer.datamodule, "path", "the data folder")
            raise UserError(
                f"{path}: made with another tokenizer (sha256 {current[:12]}) than the checkpoint's "
                f"({saved[:12]}); pass --model.allow_tokenizer_change true to continue on it deliberately"
            )

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        trainer = self._attached_trainer()
        if trainer is not None and checkpoint.get("optimizer_states"):
            checkpoint["optimizer_states"] = [
                name_optimizer_state(self, optimizer, state)
                for optimizer, state in zip(trainer.optimizers, checkpoint["optimizer_states"])
            ]
        datamodule = getattr(trainer, "datamodule", None)
        tokenizer = getattr(datamodule, "tokenizer_path", None)
        checkpoint["lit_llm"] = {
            "tokenizer_sha256": getattr(datamodule, "tokenizer_sha256", None),
            "tokens_seen": self.tokens_seen,
            "model_config": dataclasses.asdict(self.model_config),
            "tokenizer_path": str(tokenizer) if tokenizer else None,
            # Resumed but no batch trained yet: the restored states are the run's, not this process's.
            "rng": self._pending_rng or capture_rng_state(),
        }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.materialize(from_checkpoint=True)  # `LitLLM.load_from_checkpoint` loads right after construction
        extra = checkpoint.get("lit_llm", {})
        saved = extra.get("model_config")
        if saved is not None:  # fields added since the checkpoint was written have their defaults there
            defaults = {f.name: f.default for f in dataclasses.fields(ModelConfig)}
            saved = {**{k: defaults[k] for k in defaults.keys() - saved.keys()}, **saved}
        if saved is not None and saved != dataclasses.asdict(self.model_config):
            diff = {
                k: (v, getattr(self.model_config, k))
                for k, v in saved.items()
                if getattr(self.model_config, k, None) != v
            }
            raise UserError(f"checkpoint is from another model config (checkpoint vs now: {diff})")
        self._check_tokenizer(extra.get("tokenizer_sha256"))
        self.tokens_seen = int(extra.get("tokens_seen", 0))
        # Applied at the first training batch, not now: between loading and that batch Lightning
        # creates the DataLoader iterator, which draws from the torch RNG; the uninterrupted run
        # drew that number long before the checkpoint.
        self._pending_rng = extra.get("rng")
