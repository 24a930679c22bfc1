"""BenchmarkEval: lm-eval benchmarks during training (every N steps, at the end of fit) and in `lit-llm validate`.

    trainer:
      callbacks:
        - class_path: lit_llm.callbacks.BenchmarkEval
          init_args: {tasks: "mmlu,gsm8k,perplexity", every_n_steps: 1000, limit: 10, data_dir: ../shared/data}

    lit-llm fit --config ... --trainer.callbacks+=lit_llm.callbacks.BenchmarkEval \
        --trainer.callbacks.every_n_steps 500 --trainer.callbacks.tasks perplexity
    lit-llm validate --config ... --ckpt_path RUN/checkpoints/last.ckpt   # runs the same tasks once

Metrics go to every logger as `eval/<task>/<metric>` (groups and their direct subgroups, e.g.
`eval/mmlu/acc`, `eval/mmlu_stem/acc`, `eval/gsm8k/exact_match_strict-match`,
`eval/perplexity/bits_per_byte`) plus `eval/seconds`, at the step the model has reached.

Training is not disturbed: the evaluation runs inside `isolate_rng()` (python, numpy, torch and
CUDA generators restored), on the unwrapped GPT in eval mode (train mode restored), without
touching the data module, so the next batches and losses are the ones a run without the
callback sees. Under DDP every rank scores a share of the requests (lm-eval's rank sharding
through the strategy's collectives) and rank 0 logs. The model must be whole on every rank
(DDP, single device). Under FSDP2 every rank joins one full-weights gather, rank 0 scores an
unsharded copy alone and the other ranks wait at a barrier (the copy must fit on one device).
"""

from __future__ import annotations

import time
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_info

from lit_llm.command_options import command_options
from lit_llm.errors import UserError
from lit_llm.eval.config import EvalConfig
from lit_llm.eval.runner import flat_metrics, prepare, run_tasks

# Where the callback's defaults differ from `lit-llm evaluate`'s (EvalConfig's): a small sample of each
# task keeps an evaluation short next to training, and lm-eval's bars would cut through the training bar.
TRAINING_DEFAULTS = {"limit": 10, "progress": False}


class BenchmarkEval(Callback):
    """Run lm-eval tasks on the model being trained or validated and log `eval/<task>/<metric>`.

    Its arguments are the callback's own (below) and `EvalConfig`'s fields (tasks, limit, data_dir,
    ...), with `TRAINING_DEFAULTS` for limit and progress; `self.config` holds the latter.
    """

    @command_options(EvalConfig, **TRAINING_DEFAULTS)
    def __init__(
        self,
        *,
        every_n_steps: int = 1000,
        at_fit_end: bool = True,
        on_validate: bool = True,
        log_subtasks: bool = False,
        **options,
    ) -> None:
        """Check the settings (task names, the code-execution opt-in) without loading anything.

        Args:
            every_n_steps: Evaluate after every this many optimizer steps (0: only at the end of fit).
            at_fit_end: Also evaluate when fit ends (unless the last step was just evaluated).
            on_validate: Evaluate once in `trainer.validate` / `lit-llm validate`.
            log_subtasks: Log every subtask (the 57 MMLU subjects) instead of the groups only.
        """
        super().__init__()
        if every_n_steps < 0:
            raise UserError(f"BenchmarkEval: every_n_steps must be >= 0, got {every_n_steps}")
        try:
            self.config = EvalConfig(**{**TRAINING_DEFAULTS, **options})
        except UserError as err:
            raise UserError(f"BenchmarkEval: {err}") from None
        self.every_n_steps, self.at_fit_end, self.on_validate = every_n_steps, at_fit_end, on_validate
        self.log_subtasks = log_subtasks
        self.last_step = -1  # global step of the latest evaluation
        self.latest: dict[str, float] = {}  # its metrics (rank 0)
        self._manager = self._tokenizer = None
        self._checkpoint_step = 0  # global step of a checkpoint given to validate

    # ---- set-up: fail before training when a task, a file or the tokenizer is missing --

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage not in ("fit", "validate"):
            return
        from lit_llm.tokenizer import load_tokenizer

        self._manager = prepare(self.config)
        folder = self.config.tokenizer or getattr(trainer.datamodule, "tokenizer_path", None)
        if folder is None:
            raise UserError("BenchmarkEval: no tokenizer (the data manifest names none); set tokenizer: DIR")
        self._tokenizer = load_tokenizer(folder)

    # ---- hooks -------------------------------------------------------------------------

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int
    ) -> None:
        step = trainer.global_step
        if self.every_n_steps and step > 0 and step % self.every_n_steps == 0 and step != self.last_step:
            self._evaluate(trainer, pl_module)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.at_fit_end and trainer.global_step != self.last_step:
            self._evaluate(trainer, pl_module)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.on_validate and trainer.state.fn == TrainerFn.VALIDATING:  # not fit's own validation loop
            # validate restores weights, not loops: log at the step the checkpoint was saved at
            self._evaluate(trainer, pl_module, step=self._checkpoint_step or trainer.global_step)

    def on_load_checkpoint(
        self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        self._checkpoint_step = int(checkpoint.get("global_step", 0))

    # ---- the evaluation ----------------------------------------------------------------

    def _evaluate(self, trainer: Trainer, pl_module: LightningModule, step: int | None = None) -> None:
        """Score the model (every rank takes part) and log the metrics at `step` (default: the global step)."""
        step = trainer.global_step if step is None else step
        started = time.perf_counter()
        results = self._score(trainer, pl_module)
        self.last_step = step
        if results is None:  # not rank 0: lm-eval gathered this rank's scores there
            return
        metrics = flat_metrics(results, self.config.tasks, subtasks=self.log_subtasks)
        metrics["eval/seconds"] = time.perf_counter() - started
        self.latest = metrics
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=step)
        shown = ", ".join(f"{k.removeprefix('eval/')}={v:.4g}" for k, v in metrics.items())
        rank_zero_info(f"BenchmarkEval at step {step}: {shown}")

    def _score(self, trainer: Trainer, pl_module: LightningModule) -> dict | None:
        """lm-eval's results on rank 0 (None elsewhere), from the unwrapped GPT in eval mode."""
        from lit_llm.eval.wrapper import LitLLMEval

        gpt, strategy = pl_module.model, trainer.strategy if trainer.world_size > 1 else None
        sharded = pl_module.device_mesh is not None
        if sharded:  # FSDP2: ranks hold shards; score on a whole copy on rank 0
            gpt, strategy = self._gather_whole_model(trainer, pl_module), None
        results = None
        if gpt is not None:
            lm = LitLLMEval(
                gpt, self._tokenizer, strategy=strategy, single_process=sharded, **self.config.model_args()
            )
            was_training = gpt.training
            gpt.eval()
            try:
                with trainer.precision_plugin.forward_context():  # no bootstrap: stderrs are not logged
                    results = run_tasks(lm, self.config, manager=self._manager)
            finally:
                gpt.train(was_training)
        if sharded:
            trainer.strategy.barrier("benchmark_eval")  # the other ranks wait here while rank 0 scores
        return results

    @staticmethod
    def _gather_whole_model(trainer: Trainer, pl_module: LightningModule):
        """An unsharded copy of an FSDP2 model on rank 0 (None elsewhere); every rank joins the gather."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        from lit_llm.model import GPT

        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        state = get_model_state_dict(pl_module.model, options=options)  # a collective: all ranks call it
        if trainer.global_rank != 0:
            return None
        state = {
            k.replace("_checkpoint_wrapped_module.", "").replace("_orig_mod.", ""): v
            for k, v in state.items()
        }
        whole = GPT(pl_module.model_config)
        whole.load_state_dict(state)
        return whole.to(pl_module.device)

    # ---- state -------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {"last_step": self.last_step, "latest": dict(self.latest)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.last_step = int(state_dict.get("last_step", -1))
        self.latest = dict(state_dict.get("latest", {}))
