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
Checkpoints are written atomically (`--checkpoint.async_save true`: in the background); Lightning's
ModelParallelStrategy runs as `lit_llm.strategy.ShardedStrategy`, whose sharded folders are atomic too.
These defaults are ordinary options (`kit_default_args`): `--print_config` and the saved
config.yaml show them, and running a saved config.yaml again runs the same run.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import sys
import warnings
from argparse import ArgumentError
from dataclasses import dataclass
from pathlib import Path

from jsonargparse import Namespace
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.utilities import rank_zero_info

from lit_llm.checkpoint import check_checkpoint, recover_checkpoint
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
    async_save: bool = False
    """Write checkpoints in the background: a save copies the tensors to CPU memory and a thread writes them
    while training goes on (at most one write in flight), as atomically as a synchronous save. It sets the
    kit's AtomicCheckpointIO(async_save) and, under ModelParallelStrategy (run as lit_llm.strategy.ShardedStrategy,
    atomic sharded folders), its async_checkpoint (torch.distributed.checkpoint.async_save)."""

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

    def init_parser(self, **kwargs):
        parser = super().init_parser(**kwargs)
        self.__dict__.setdefault("made_parsers", []).append(parser)  # the subcommands' too: for suggestions
        return parser

    def parse_arguments(self, parser, args) -> None:
        """Parse twice: the second pass adds the kit's defaults (logger, checkpoints, progress bar, atomic
        checkpoint IO) as ordinary options, so `--print_config` and the saved config.yaml show the whole run."""
        if isinstance(args, (dict, Namespace)):
            return super().parse_arguments(parser, args)
        args = list(sys.argv[1:] if args is None else args)
        printing = [a for a in args if a == "--print_config" or a.startswith("--print_config=")]
        given = [a for a in args if a not in printing]
        try:
            self.config = self._parse(parser, given)
        except UserError:
            if not printing:
                raise
            self.config = self._parse(parser, args)  # an incomplete config: print it as it stands
        subcommand = self.config.get("subcommand")
        if subcommand:  # before LightningCLI itself torch.loads --ckpt_path (for hyper-parameters)
            self._check_ckpt_path(subcommand)
            defaults = kit_default_args(self.config[subcommand], subcommand)
            self.config = self._parse(parser, [*given, *defaults, *printing])

    def _parse(self, parser, args: list[str]) -> Namespace:
        try:
            return parser.parse_args(args)
        except ArgumentError as err:
            options = set()
            for made in self.__dict__.get("made_parsers", []):
                with contextlib.suppress(Exception):  # a parser with required options may refuse defaults
                    options |= {f"--{key}" for key in made.get_defaults().keys()}  # noqa: SIM118 (dotted keys)
            raise UserError(one_line_parse_error(err, options)) from None

    def before_fit(self) -> None:
        self._skip_init_weights("fit")
        if self.config.get("fit", {}).get("ckpt_path"):
            # Resuming into the run's own folder: ModelCheckpoint's "not empty" warning is expected.
            warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")

    def before_validate(self) -> None:
        self._skip_init_weights("validate")

    def _skip_init_weights(self, subcommand: str) -> None:
        """With `--ckpt_path` naming a checkpoint, `--model.init_from`'s weights would be replaced at once:
        the module does not read them (its architecture still comes from the model's config.json)."""
        config = self.config.get(subcommand, {})
        root = config.get("trainer", {}).get("default_root_dir")
        if getattr(self.model, "init_from", None) and _named_checkpoint(config.get("ckpt_path"), root):
            self.model.init_from_weights = False


def _named_checkpoint(ckpt_path: str | None, root: str | None) -> Path | None:
    """The file or folder `--ckpt_path` names ("last": the kit's RUN/checkpoints/last.ckpt, when it exists)."""
    if not ckpt_path or ckpt_path in ("hpc", "best", "registry"):
        return None
    if ckpt_path == "last":
        last = Path(root or ".") / "checkpoints" / "last.ckpt"
        recover_checkpoint(last)  # a save killed between its two renames left it at .last.ckpt.old
        return last if last.exists() else None  # none yet: Lightning says so and starts afresh
    return Path(ckpt_path)


def trainer_defaults() -> dict:
    """Step-based validation and a bounded run; logger, callbacks and plugins come from `kit_default_args`."""
    return {
        "max_steps": 1000,
        "val_check_interval": 200,
        "check_val_every_n_epoch": None,
        "limit_val_batches": 50,
        "log_every_n_steps": 10,
        "num_sanity_val_steps": 0,
    }


KIT_CHECKPOINT_NAME = "step-{step:06d}"


def kit_default_args(config: Namespace, subcommand: str = "fit") -> list[str]:
    """Options that complete a parsed run with the kit's defaults, unless the run configures its own.

    - logger: a CSVLogger writing RUN/logs/version_N/metrics.csv;
    - checkpoints (`--checkpoint.*`): one every `every_n_steps` in RUN/checkpoints/ (the newest `keep_last`
      kept, `last.ckpt` beside them), every `keep_every`-th kept for good in RUN/checkpoints/kept/.
      A ModelCheckpoint of the run's own replaces both;
    - FinalCheckpoint (last.ckpt whatever ends the run), TokenThroughput (tokens/s, MFU), the step-aware
      progress bar, and checkpoint files written atomically (AtomicCheckpointIO, in the background with
      `--checkpoint.async_save`);
    - Lightning's ModelParallelStrategy is run as lit_llm.strategy.ShardedStrategy with the same arguments:
      sharded checkpoint folders written beside the target and renamed into place (async_checkpoint from
      `--checkpoint.async_save`).

    When a saved config.yaml is run again, the kit's own logger and checkpoints in it (a CSVLogger
    named "logs", ModelCheckpoints writing step-NNNNNN files to a checkpoints/ or checkpoints/kept/
    folder) are made again from `trainer.default_root_dir` and `--checkpoint.*`, so overriding those works;
    its FinalCheckpoint and progress bar go when `enable_checkpointing` / `enable_progress_bar` are off;
    its AtomicCheckpointIO and ShardedStrategy take `--checkpoint.async_save` (a change is said in one line).
    TokenThroughput is added for `fit` only.
    """
    trainer = config.trainer
    root = Path(trainer.default_root_dir or ".")
    args = []
    if trainer.logger in (None, True) or _is_kit_logger(trainer.logger):
        logger = {
            "class_path": "lightning.pytorch.loggers.CSVLogger",
            "init_args": {"save_dir": str(root), "name": "logs"},
        }
        args += ["--trainer.logger", json.dumps(logger)]
    checkpoint = CheckpointConfig(**vars(config.checkpoint))
    configured = _as_list(trainer.callbacks)
    kept = [c for c in configured if not _is_kit_checkpoint(c, checkpoint) and not _switched_off(c, trainer)]
    # the kit's own go where a saved config had them (else last), so a re-run keeps the order
    at = next((i for i, c in enumerate(configured) if _is_kit_checkpoint(c, checkpoint)), len(configured))
    extra = _kit_callbacks(kept, trainer, checkpoint, root, subcommand)
    callbacks = kept[:at] + extra + kept[at:]
    if callbacks != configured:
        args += ["--trainer.callbacks", json.dumps([_plain(c) for c in callbacks])]
    return args + _checkpoint_io_args(trainer, checkpoint) + _strategy_args(trainer, checkpoint)


KIT_CHECKPOINT_IO = f"{AtomicCheckpointIO.__module__}.AtomicCheckpointIO"
KIT_STRATEGY = "lit_llm.strategy.ShardedStrategy"


def _checkpoint_io_args(trainer: Namespace, checkpoint: CheckpointConfig) -> list[str]:
    """The kit's AtomicCheckpointIO unless plugins are configured; one in a saved config takes its async_save
    from `--checkpoint.async_save` (a change is said in one line)."""
    kit = {"class_path": KIT_CHECKPOINT_IO, "init_args": {"async_save": checkpoint.async_save}}
    configured = _as_list(trainer.plugins)
    if not configured:
        return ["--trainer.plugins", json.dumps(kit)]
    plugins = []
    for entry in configured:
        if isinstance(entry, Namespace) and _class_of(entry) is AtomicCheckpointIO:
            _say_replaced("trainer.plugins: AtomicCheckpointIO async_save", entry, "async_save", checkpoint)
            entry = kit
        plugins.append(_plain(entry))
    if plugins == [_plain(entry) for entry in configured]:
        return []
    return ["--trainer.plugins", json.dumps(plugins if isinstance(trainer.plugins, list) else plugins[0])]


def _strategy_args(trainer: Namespace, checkpoint: CheckpointConfig) -> list[str]:
    """Lightning's ModelParallelStrategy runs as ShardedStrategy (same arguments; atomic sharded checkpoints),
    whose async_checkpoint comes from `--checkpoint.async_save`."""
    from lightning.pytorch.strategies import ModelParallelStrategy

    from lit_llm.strategy import ShardedStrategy

    strategy = trainer.strategy
    if not isinstance(strategy, Namespace) or "class_path" not in strategy:
        return []
    kind = _class_of(strategy)
    flag = ["--trainer.strategy.init_args.async_checkpoint", json.dumps(checkpoint.async_save)]
    if kind is ModelParallelStrategy:
        return ["--trainer.strategy.class_path", KIT_STRATEGY, *flag]  # jsonargparse keeps the init_args
    if kind is ShardedStrategy:
        found = _say_replaced(
            "trainer.strategy: ShardedStrategy async_checkpoint", strategy, "async_checkpoint", checkpoint
        )
        return flag if found != checkpoint.async_save else []
    return []


def _say_replaced(what: str, entry: Namespace, field: str, checkpoint: CheckpointConfig) -> bool:
    """The entry's value of `field` (default False); one line when `--checkpoint.async_save` replaces it."""
    found = bool((entry.get("init_args") or Namespace()).get(field, False))
    if found != checkpoint.async_save:
        rank_zero_info(f"{what} {found} -> {checkpoint.async_save} (set by --checkpoint.async_save)")
    return found


def _kit_callbacks(
    configured: list, trainer: Namespace, checkpoint: CheckpointConfig, root: Path, subcommand: str
) -> list[dict]:
    """The default callbacks the configured ones do not already provide."""
    from lightning.pytorch.callbacks import ModelCheckpoint, ProgressBar

    from lit_llm.callbacks import FinalCheckpoint, TokenThroughput

    def configured_a(kind: type) -> bool:
        return any(issubclass(_class_of(c), kind) for c in configured)

    model_checkpoint = "lightning.pytorch.callbacks.ModelCheckpoint"
    checkpointing = trainer.enable_checkpointing is not False
    extra = []
    if checkpointing and not configured_a(ModelCheckpoint):
        every = {"filename": KIT_CHECKPOINT_NAME, "auto_insert_metric_name": False}
        newest = {"save_top_k": checkpoint.keep_last, "monitor": "step", "mode": "max", "save_last": True}
        periodic = {"dirpath": str(root / "checkpoints"), "every_n_train_steps": checkpoint.every_n_steps}
        extra.append({"class_path": model_checkpoint, "init_args": {**periodic, **every, **newest}})
        if checkpoint.keep_every:
            kept = {
                "dirpath": str(root / "checkpoints" / "kept"),
                "every_n_train_steps": checkpoint.keep_every,
            }
            extra.append({"class_path": model_checkpoint, "init_args": {**kept, **every, "save_top_k": -1}})
    if checkpointing and not configured_a(FinalCheckpoint):
        extra.append({"class_path": "lit_llm.callbacks.FinalCheckpoint"})
    if subcommand == "fit" and not configured_a(TokenThroughput):
        extra.append({"class_path": "lit_llm.callbacks.TokenThroughput"})
    if trainer.enable_progress_bar is not False and not configured_a(ProgressBar):
        extra.append({"class_path": "lit_llm.callbacks.TrainingProgressBar"})
    return extra


def _as_list(value) -> list:
    return [] if value is None else list(value) if isinstance(value, list) else [value]


def _class_of(entry) -> type:
    """The class a parsed callback entry (a Namespace with class_path, or an instance) names."""
    if not isinstance(entry, Namespace):
        return type(entry)
    module, _, name = entry.class_path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _plain(entry):
    return entry.as_dict() if isinstance(entry, Namespace) else entry


def _is_kit_checkpoint(entry, checkpoint: CheckpointConfig) -> bool:
    """A ModelCheckpoint the kit made from `--checkpoint.*` (found again when a saved config is re-run).
    One whose schedule was edited in the saved file is refused: `checkpoint.*` is where to change it."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    if not isinstance(entry, Namespace) or _class_of(entry) is not ModelCheckpoint:
        return False
    init = entry.get("init_args") or Namespace()
    folder = Path(str(init.get("dirpath")))
    kept = folder.parts[-2:] == ("checkpoints", "kept")
    if init.get("filename") != KIT_CHECKPOINT_NAME or not (kept or folder.name == "checkpoints"):
        return False
    expected = (checkpoint.keep_every, -1) if kept else (checkpoint.every_n_steps, checkpoint.keep_last)
    found = (init.get("every_n_train_steps"), init.get("save_top_k"))
    if found != expected:
        raise UserError(
            f"trainer.callbacks: the kit's checkpoint in {folder} says every_n_train_steps/save_top_k "
            f"{found[0]}/{found[1]}, but checkpoint.* gives {expected[0]}/{expected[1]}; set --checkpoint.* instead"
        )
    return True


def _switched_off(entry, trainer: Namespace) -> bool:
    """A kit callback of a saved config whose Trainer switch is now off (Lightning would refuse it)."""
    from lit_llm.callbacks import FinalCheckpoint, TrainingProgressBar

    kind = _class_of(entry)
    return (kind is FinalCheckpoint and trainer.enable_checkpointing is False) or (
        kind is TrainingProgressBar and trainer.enable_progress_bar is False
    )


def _is_kit_logger(entry) -> bool:
    """The CSVLogger the kit made (RUN/logs), found again when a saved config is re-run."""
    if not isinstance(entry, Namespace) or "class_path" not in entry:
        return False
    return _class_of(entry) is CSVLogger and (entry.get("init_args") or Namespace()).get("name") == "logs"


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
