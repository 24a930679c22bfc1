"""Unpickling files that may come from elsewhere, with an allow-list of the globals a pickle may name.

A pickle runs code only through the globals it names (a function or class it then calls); an
unpickler that resolves nothing outside an allow-list can only build the allowed types. Two
allow-lists: the kit's data work files (`.work/` of `lit-llm data prepare`) and the metadata of
distributed (sharded) checkpoints, which torch.distributed.checkpoint stores as a pickle.

    data = load_restricted(path, DATA_WORK_FILES)
    check_sharded_checkpoint(folder)        # before torch.distributed.checkpoint reads it
"""

from __future__ import annotations

import dataclasses
import enum
import importlib
import pickle
from collections.abc import Callable
from pathlib import Path

from lit_llm.errors import UserError

Allow = Callable[[str, str, object], bool]  # (module, name, resolved object) -> allowed?


@dataclasses.dataclass(frozen=True)
class AllowList:
    """Modules a pickle may import from (checked before importing anything), and a test of each object."""

    modules: tuple[str, ...]
    allow: Allow

    def module_ok(self, module: str) -> bool:
        return any(module == m or module.startswith(m + ".") for m in self.modules)


def _dataclass_or_enum(obj: object) -> bool:
    return isinstance(obj, type) and (dataclasses.is_dataclass(obj) or issubclass(obj, enum.Enum))


_NUMPY = {
    ("numpy", "dtype"),
    ("numpy", "ndarray"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "_reconstruct"),
}


def _data_work_object(module: str, name: str, obj: object) -> bool:
    if (module, name) in _NUMPY or (module, name) == ("collections", "Counter"):
        return True
    return module.startswith("lit_llm.data") and _dataclass_or_enum(obj)


def _checkpoint_metadata_object(module: str, name: str, obj: object) -> bool:
    import torch

    if module.startswith("torch.distributed.checkpoint"):
        return _dataclass_or_enum(obj)
    if module == "torch":
        return obj is torch.Size or isinstance(obj, (torch.dtype, torch.layout, torch.memory_format))
    allowed = {("torch.serialization", "_get_layout"), ("collections", "OrderedDict")}
    return (module, name) in allowed or (
        module == "pathlib" and name in ("PosixPath", "WindowsPath", "PurePosixPath")
    )


DATA_WORK_FILES = AllowList(("lit_llm.data", "numpy", "collections"), _data_work_object)
"""The kit's own data classes (dataclasses under lit_llm.data), Counter and NumPy arrays."""
SHARDED_CHECKPOINT_METADATA = AllowList(
    ("torch.distributed.checkpoint", "torch", "collections", "pathlib"), _checkpoint_metadata_object
)
"""torch.distributed.checkpoint's metadata dataclasses and enums, torch sizes, dtypes and layouts, paths."""


class RefusedFile(UserError):
    """A file names code it is not allowed to: refused, never skipped silently."""


class _Restricted(pickle.Unpickler):
    def __init__(self, file, allow: AllowList, path: Path) -> None:
        super().__init__(file)
        self.allow, self.path = allow, path

    def find_class(self, module: str, name: str):
        obj = None
        if self.allow.module_ok(module):  # never import a module outside the list: importing can run code
            try:
                obj = getattr(importlib.import_module(module), name)
            except (ImportError, AttributeError):
                obj = None
        if obj is None or not self.allow.allow(module, name, obj):
            raise RefusedFile(
                f"{self.path}: refused to load: the file names {module}.{name}, which is not allowed there"
            )
        return obj


def load_restricted(path: str | Path, allow: AllowList):
    """Unpickle `path`, refusing (one line, naming the file) any global the allow-list rejects."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            return _Restricted(f, allow, path).load()
    except UserError:
        raise
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError) as err:
        raise UserError(
            f"{path}: not a readable file of its kind ({type(err).__name__}: {str(err)[:120]})"
        ) from None


def check_sharded_checkpoint(folder: str | Path) -> None:
    """Refuse a sharded checkpoint folder whose `.metadata` pickle names anything outside the allow-list.

    torch.distributed.checkpoint unpickles `.metadata` with the plain unpickler (`weights_only` does not
    reach it); once every global it names is allowed, that unpickling can only build metadata objects.
    """
    metadata = Path(folder) / ".metadata"
    if metadata.is_file():
        load_restricted(metadata, SHARDED_CHECKPOINT_METADATA)
