"""`lit-llm fit` / `lit-llm validate`: LightningCLI over LitLLM and LitDataModule.

    lit-llm fit --config configs/experiments/tiny_cpu.yaml --data.path DIR --trainer.max_steps 200
    lit-llm fit --config ... --print_config          # the fully resolved run
    lit-llm validate --config ... --ckpt_path RUN/checkpoints/last.ckpt

The vocabulary size comes from the data folder's manifest (an argument link), so it is
never typed twice. Unless a logger is configured, metrics go to a CSV file under
`trainer.default_root_dir` (`RUN/logs/version_N/metrics.csv`) and checkpoints to
`RUN/checkpoints/` (`--checkpoint.*`: every 100 steps, the newest 3 kept, every 1000th kept for
good in `RUN/checkpoints/kept/`), and `last.ckpt` holds the final step whatever ends the run, so
`--ckpt_path last` resumes. The final weights are always validated when validation data exists.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from argparse import ArgumentError
from dataclasses import dataclass
from pathlib import Path

from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.loggers import CSVLogger

from lit_llm.checkpoint import check_checkpoint
from lit_llm.checkpoint_io import AtomicCheckpointIO
from lit_llm.data.datamodule import LitDataModule
from lit_llm.errors import UserError, one_line_parse_error
from lit_llm.module import LitLLM


@dataclass
class CheckpointConfig:
    """Periodic checkpoints of `lit-llm fit` (used unless the config names a ModelCheckpoint)."""

    every_n_steps: int = 100
    """Write RUN/checkpoints/step-NNNNNN.ckpt every this many optimizer steps."""
    keep_last: int = 3
    """Keep the newest this many of them; older ones are deleted (-1: keep all)."""
    keep_every: int | None = 1000
    """Also keep every checkpoint whose step is a multiple of this for good, in RUN/checkpoints/kept/ (null: none)."""

    def __post_init__(self) -> None:
        if self.every_n_steps < 1 or self.keep_last == 0 or self.keep_last < -1 or (self.keep_every or 1) < 1:
            raise UserError(
                f"checkpoint: every_n_steps >= 1, keep_last >= 1 or -1, keep_every >= 1 or null (got {self})"
            )


class LitLLMCLI(LightningCLI):
    """LightningCLI with the kit's links and defaults."""

    def _check_ckpt_path(self, subcommand: str) -> None:
        """`--ckpt_path` checked before Lightning reads it: one line for a missing or unreadable checkpoint,
        and a sharded folder's pickled metadata through the allow-list."""
        config = self.config.get(subcommand, {})
        path = _named_checkpoint(config.get("ckpt_path"), config.get("trainer", {}).get("default_root_dir"))
        if path is not None:
            check_checkpoint(path)

    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("data.vocab_size", "model.vocab_size", apply_on="instantiate")
        parser.add_class_arguments(CheckpointConfig, "checkpoint")  # read by `fit`; `validate` ignores it

    def before_instantiate_classes(self) -> None:
        config = self.config.get(str(self.subcommand), self.config)
        trainer = config.trainer
        if trainer.logger in (None, True):
            root = trainer.default_root_dir or "."
            trainer.logger = {
                "class_path": "lightning.pytorch.loggers.CSVLogger",
                "init_args": {"save_dir": str(root), "name": "logs"},
            }

    def instantiate_trainer(self, **kwargs):
        run = self.config_init.get(str(self.subcommand), self.config_init)
        config = run.get("trainer") or {}
        configured = config.get("callbacks") or []
        configured = configured if isinstance(configured, list) else [configured]
        checkpoint = run.get("checkpoint") or CheckpointConfig()
        kwargs["callbacks"] = [*configured, *default_callbacks(config, checkpoint)]
        if not config.get("plugins"):  # checkpoint files written atomically beside their target
            kwargs["plugins"] = [AtomicCheckpointIO()]
        return super().instantiate_trainer(**kwargs)

    def init_parser(self, **kwargs):
        parser = super().init_parser(**kwargs)
        self.__dict__.setdefault("made_parsers", []).append(parser)  # the subcommands' too: for suggestions
        return parser

    def parse_arguments(self, parser, args) -> None:
        try:
            super().parse_arguments(parser, args)
        except ArgumentError as err:
            options = set()
            for made in self.__dict__.get("made_parsers", []):
                with contextlib.suppress(Exception):  # a parser with required options may refuse defaults
                    options |= {f"--{key}" for key in made.get_defaults().keys()}  # noqa: SIM118 (dotted keys)
            raise UserError(one_line_parse_error(err, options)) from None
        subcommand = self.config.get("subcommand")
        if subcommand:  # before LightningCLI itself torch.loads --ckpt_path (for hyper-parameters)
            self._check_ckpt_path(subcommand)

    def before_fit(self) -> None:
        if self.config.get("fit", {}).get("ckpt_path"):
            # Resuming into the run's own folder: ModelCheckpoint's "not empty" warning is expected.
            warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")


def _named_checkpoint(ckpt_path: str | None, root: str | None) -> Path | None:
    """The file or folder `--ckpt_path` names ("last": the kit's RUN/checkpoints/last.ckpt, when it exists)."""
    if not ckpt_path or ckpt_path in ("hpc", "best", "registry"):
        return None
    if ckpt_path == "last":
        last = Path(root or ".") / "checkpoints" / "last.ckpt"
        return last if last.exists() else None  # none yet: Lightning says so and starts afresh
    return Path(ckpt_path)


def trainer_defaults() -> dict:
    """Step-based validation and a bounded run; callbacks are added in `LitLLMCLI.instantiate_trainer`."""
    return {
        "max_steps": 1000,
        "val_check_interval": 200,
        "check_val_every_n_epoch": None,
        "limit_val_batches": 50,
        "log_every_n_steps": 10,
        "num_sanity_val_steps": 0,
    }


def default_callbacks(config, checkpoint: CheckpointConfig | None = None) -> list:
    """Checkpoints with bounded retention, the final checkpoint, and the step-aware progress bar, unless configured.

    A checkpoint every `every_n_steps`, the newest `keep_last` kept (RUN/checkpoints/step-*.ckpt),
    every `keep_every`-th kept for good (RUN/checkpoints/kept/); `last.ckpt` holds the final step
    whatever ends the run (FinalCheckpoint). A ModelCheckpoint in the config replaces the periodic ones.
    """
    checkpoint = checkpoint or CheckpointConfig()
    from lightning.pytorch.callbacks import ModelCheckpoint, ProgressBar

    from lit_llm.callbacks import FinalCheckpoint, TrainingProgressBar

    configured = config.get("callbacks") or []
    configured = configured if isinstance(configured, list) else [configured]
    extra = []
    checkpointing = config.get("enable_checkpointing") is not False
    root = Path(config.get("default_root_dir") or ".")
    if checkpointing and not any(isinstance(c, ModelCheckpoint) for c in configured):
        every = {"filename": "step-{step:06d}", "auto_insert_metric_name": False}
        newest = {"save_top_k": checkpoint.keep_last, "monitor": "step", "mode": "max", "save_last": True}
        extra.append(
            ModelCheckpoint(
                dirpath=root / "checkpoints", every_n_train_steps=checkpoint.every_n_steps, **every, **newest
            )
        )
        if checkpoint.keep_every:
            kept = root / "checkpoints" / "kept"
            extra.append(
                ModelCheckpoint(
                    dirpath=kept, every_n_train_steps=checkpoint.keep_every, save_top_k=-1, **every
                )
            )
    if checkpointing and not any(isinstance(c, FinalCheckpoint) for c in configured):
        extra.append(FinalCheckpoint())
    if config.get("enable_progress_bar") is not False and not any(
        isinstance(c, ProgressBar) for c in configured
    ):
        extra.append(TrainingProgressBar())
    return extra


def run_lightning_cli(args: list[str]) -> LitLLMCLI:
    """LightningCLI on `args` (["fit", ...]); they stand in for sys.argv while it parses."""
    argv = sys.argv
    sys.argv = [argv[0], *args]  # LightningCLI warns when given args while sys.argv holds others (the demo)
    try:
        return LitLLMCLI(
            LitLLM,
            LitDataModule,
            trainer_defaults=trainer_defaults(),
            save_config_kwargs={"overwrite": True},
            auto_configure_optimizers=False,
            # Errors raise (one line from the kit, exit 1) instead of printing usage; no abbreviated options.
            parser_kwargs={"default_env": False, "exit_on_error": False, "allow_abbrev": False},
        )
    finally:
        sys.argv = argv


__all__ = ["LitLLMCLI", "run_lightning_cli", "CSVLogger"]
