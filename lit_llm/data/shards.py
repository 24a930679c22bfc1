"""Token shard files and the dataset folder's manifest: the format, atomic writes, memory-mapped reads.

A shard file is a 64-byte header, the tokens, then the document offset index:

    magic b"LITLLMSH" | format version u32 | token bytes u32 (2 = uint16, 4 = uint32) |
    num_tokens u64 | num_documents u64 | zero padding to 64 bytes
    tokens: num_tokens x dtype
    offsets: (num_documents + 1) x uint64   (document d is tokens[offsets[d]:offsets[d+1]])

A dataset folder holds `manifest.json` (see `Manifest`) and shards under `train/` and `val/`.
Readers memory-map; nothing loads a whole shard. Writers write a temp file and rename, so
a killed run never leaves a half shard that looks whole.

    from lit_llm.data.shards import ShardSet
    train = ShardSet.open("data/tiny", split="train")
    train.document(0)          # np.ndarray of token ids
    train.window(1000, 257)    # tokens [1000, 1257) across shard boundaries
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lit_llm.errors import UserError

MAGIC = b"LITLLMSH"
FORMAT_VERSION = 1
HEADER = struct.Struct("<8sIIQQ")  # magic, version, token bytes, num_tokens, num_documents
HEADER_SIZE = 64
MANIFEST_NAME = "manifest.json"
DTYPES = {2: np.uint16, 4: np.uint32}


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 when every id fits, else uint32."""
    return np.dtype(np.uint16 if vocab_size <= 2**16 else np.uint32)


def sha256_file(path: str | Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def atomic_write_bytes(path: Path, write) -> None:
    """Call write(file) on a temp file next to path, fsync, then rename over path."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_shard(path: str | Path, documents: Sequence[np.ndarray], dtype: np.dtype) -> dict:
    """Atomically write documents (arrays of token ids) as one shard; return its manifest entry."""
    path = Path(path)
    dtype = np.dtype(dtype)
    lengths = np.fromiter((len(d) for d in documents), dtype=np.uint64, count=len(documents))
    offsets = np.zeros(len(documents) + 1, dtype=np.uint64)
    np.cumsum(lengths, out=offsets[1:])
    num_tokens = int(offsets[-1])
    header = HEADER.pack(MAGIC, FORMAT_VERSION, dtype.itemsize, num_tokens, len(documents)).ljust(
        HEADER_SIZE, b"\0"
    )

    def write(f) -> None:
        f.write(header)
        for doc in documents:
            f.write(np.asarray(doc, dtype=dtype).tobytes())
        f.write(offsets.tobytes())

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, write)
    return {"num_tokens": num_tokens, "num_documents": len(documents), "sha256": sha256_file(path)}


class Shard:
    """One memory-mapped shard file; validates the header and the file size on open."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            size = self.path.stat().st_size
            with open(self.path, "rb") as f:
                raw = f.read(HEADER_SIZE)
        except OSError as err:
            raise UserError(f"{self.path}: cannot read shard ({err.strerror})") from None
        if len(raw) < HEADER_SIZE or raw[:8] != MAGIC:
            raise UserError(f"{self.path}: not a lit-llm shard (bad header)")
        _, version, itemsize, self.num_tokens, self.num_documents = HEADER.unpack(raw[: HEADER.size])
        if version != FORMAT_VERSION or itemsize not in DTYPES:
            raise UserError(
                f"{self.path}: unsupported shard format version {version} / token size {itemsize}"
            )
        self.dtype = np.dtype(DTYPES[itemsize])
        expected = HEADER_SIZE + self.num_tokens * itemsize + (self.num_documents + 1) * 8
        if size != expected:
            raise UserError(
                f"{self.path}: shard is truncated or corrupt ({size} bytes, header says {expected})"
            )
        self._tokens: np.memmap | None = None
        self._offsets: np.memmap | None = None

    def _maps(self) -> tuple[np.memmap, np.memmap]:
        # Opened lazily so a Shard pickles cheaply into DataLoader workers, which map their own.
        if self._tokens is None:
            self._tokens = np.memmap(
                self.path, dtype=self.dtype, mode="r", offset=HEADER_SIZE, shape=(self.num_tokens,)
            )
            index_at = HEADER_SIZE + self.num_tokens * self.dtype.itemsize
            self._offsets = np.memmap(
                self.path, dtype=np.uint64, mode="r", offset=index_at, shape=(self.num_documents + 1,)
            )
        return self._tokens, self._offsets

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_tokens": None, "_offsets": None}

    @property
    def tokens(self) -> np.memmap:
        return self._maps()[0]

    @property
    def offsets(self) -> np.memmap:
        return self._maps()[1]

    def document(self, i: int) -> np.ndarray:
        start, end = self.offsets[i], self.offsets[i + 1]
        return np.asarray(self.tokens[int(start) : int(end)])


@dataclass
class ShardEntry:
    """A shard as the manifest lists it."""

    file: str
    split: str
    source: str
    num_tokens: int
    num_documents: int
    sha256: str
    num_bytes: int = 0


class Manifest:
    """`manifest.json` of a dataset folder: tokenizer, sources, statistics and shard list."""

    def __init__(self, folder: str | Path, data: dict) -> None:
        self.folder = Path(folder)
        self.data = data

    @classmethod
    def load(cls, folder: str | Path) -> Manifest:
        folder = Path(folder)
        path = folder / MANIFEST_NAME
        if not folder.is_dir():
            raise UserError(f"{folder}: data folder not found (make one with `lit-llm data prepare`)")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise UserError(
                f"{path}: no manifest; is this a folder written by `lit-llm data prepare`?"
            ) from None
        except (OSError, ValueError) as err:
            raise UserError(f"{path}: unreadable manifest ({err})") from None
        _check_manifest(path, data)
        return cls(folder, data)

    def save(self) -> None:
        text = json.dumps(self.data, indent=2, sort_keys=False).encode()
        atomic_write_bytes(self.folder / MANIFEST_NAME, lambda f: f.write(text))

    @property
    def vocab_size(self) -> int:
        return int(self.data["vocab_size"])

    def resolve_inside(self, relative: str, what: str) -> Path:
        """The path of a manifest entry, which must lie inside the data folder (no absolute path, no `..` escape)."""
        path = Path(relative)
        resolved = (self.folder / path).resolve()
        if path.is_absolute() or not resolved.is_relative_to(self.folder.resolve()):
            raise UserError(
                f"{self.folder / MANIFEST_NAME}: {what} path {relative!r} lies outside the data folder; refused"
            )
        return resolved

    @property
    def tokenizer_path(self) -> Path | None:
        """The tokenizer folder: inside the data folder, or an external one pinned by its sha256 in the manifest."""
        info = self.data.get("tokenizer") or {}
        if info.get("path") is None:
            return None
        path = Path(info["path"])
        resolved = path if path.is_absolute() else (self.folder / path).resolve()
        if resolved.is_relative_to(self.folder.resolve()) or not (resolved / "tokenizer.json").is_file():
            return resolved  # inside, or missing (the loader says so)
        actual = hashlib.sha256(
            (resolved / "tokenizer.json").read_text(encoding="utf-8").encode()
        ).hexdigest()
        if info.get("sha256") != actual:
            raise UserError(
                f"{self.folder / MANIFEST_NAME}: tokenizer {info['path']!r} lies outside the data folder and its "
                "sha256 does not match the manifest's; refused"
            )
        return resolved

    def shards(self, split: str | None = None, source: str | None = None) -> list[ShardEntry]:
        entries = [
            ShardEntry(**{k: v for k, v in s.items() if k in ShardEntry.__dataclass_fields__})
            for s in self.data["shards"]
        ]
        return [
            e
            for e in entries
            if (split is None or e.split == split) and (source is None or e.source == source)
        ]

    def source_weights(self) -> dict[str, float]:
        """Mixture weight of each source that has training shards."""
        weights = {s["name"]: float(s.get("weight", 1.0)) for s in self.data.get("sources", [])}
        names = sorted({e.source for e in self.shards("train")})
        return {name: weights.get(name, 1.0) for name in names}


SHARD_KEYS = {
    "file": str,
    "split": str,
    "source": str,
    "num_tokens": int,
    "num_documents": int,
    "sha256": str,
}


def _check_manifest(path: Path, data) -> None:
    """One line naming the manifest and its first problem, instead of a traceback later."""
    if not isinstance(data, dict):
        raise UserError(f"{path}: the manifest is not a JSON object")
    for key in ("vocab_size", "dtype", "shards"):
        if key not in data:
            raise UserError(f"{path}: manifest lacks the key {key!r}")
    vocab = data["vocab_size"]
    if isinstance(vocab, bool) or not isinstance(vocab, int) or vocab < 1:
        raise UserError(f"{path}: vocab_size must be a positive integer (got {vocab!r})")
    if not isinstance(data["shards"], list):
        raise UserError(f"{path}: shards must be a list (got {type(data['shards']).__name__})")
    for i, entry in enumerate(data["shards"]):
        bad = [
            k
            for k, kind in SHARD_KEYS.items()
            if not isinstance(entry, dict) or not isinstance(entry.get(k), kind)
        ]
        if bad:
            raise UserError(f"{path}: shard entry {i} lacks or mistypes {', '.join(bad)}")


class ShardSet:
    """Shards of one split (and optionally one source) read as one token stream and a list of documents."""

    def __init__(self, shards: list[Shard], num_bytes: int = 0) -> None:
        self.shards = shards
        self.num_bytes = num_bytes
        self.token_starts = np.cumsum([0] + [s.num_tokens for s in shards])
        self.doc_starts = np.cumsum([0] + [s.num_documents for s in shards])

    @classmethod
    def open(
        cls,
        folder: str | Path,
        split: str = "train",
        source: str | None = None,
        verify_checksums: bool = False,
    ) -> ShardSet:
        manifest = Manifest.load(folder)
        entries = manifest.shards(split, source)
        shards = []
        for entry in entries:
            path = manifest.resolve_inside(entry.file, "shard")
            if not path.exists():
                raise UserError(f"{path}: shard listed in the manifest is missing")
            shard = Shard(path)
            if shard.num_tokens != entry.num_tokens or shard.num_documents != entry.num_documents:
                raise UserError(f"{path}: shard does not match its manifest entry (corrupt or replaced)")
            if verify_checksums and sha256_file(path) != entry.sha256:
                raise UserError(f"{path}: checksum mismatch (corrupt shard)")
            if verify_checksums and shard.num_tokens and int(shard.tokens.max()) >= manifest.vocab_size:
                raise UserError(
                    f"{path}: token id {int(shard.tokens.max())} is outside the manifest's vocab_size {manifest.vocab_size}"
                )
            shards.append(shard)
        return cls(shards, num_bytes=sum(e.num_bytes for e in entries))

    @property
    def num_tokens(self) -> int:
        return int(self.token_starts[-1])

    @property
    def num_documents(self) -> int:
        return int(self.doc_starts[-1])

    def document(self, i: int) -> np.ndarray:
        if not 0 <= i < self.num_documents:
            raise IndexError(f"document {i} out of range (0..{self.num_documents - 1})")
        k = int(np.searchsorted(self.doc_starts, i, side="right") - 1)
        return self.shards[k].document(i - int(self.doc_starts[k]))

    def window(self, offset: int, length: int) -> np.ndarray:
        """Tokens [offset, offset + length) of the concatenated stream, crossing shard boundaries."""
        if offset < 0 or offset + length > self.num_tokens:
            raise IndexError(f"window [{offset}, {offset + length}) outside 0..{self.num_tokens}")
        parts = []
        k = int(np.searchsorted(self.token_starts, offset, side="right") - 1)
        while length > 0:
            local = offset - int(self.token_starts[k])
            take = min(length, self.shards[k].num_tokens - local)
            parts.append(self.shards[k].tokens[local : local + take])
            offset, length, k = offset + take, length - take, k + 1
        return np.concatenate(parts) if len(parts) > 1 else np.array(parts[0])
