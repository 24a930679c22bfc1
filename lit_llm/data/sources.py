"""Sources: what one is (`Source`, an entry of a recipe's `sources:` or one `--input`), which files
it holds, and its documents, read by the format readers of `lit_llm.data.readers`:

    from lit_llm.data.sources import ReadStats, Source, iter_documents
    stats = ReadStats()
    for doc in iter_documents(Source(paths=["corpus/*.jsonl.zst"]), stats):
        ...

Formats (`Source.kind`; "auto" decides per file by extension):
  text     .txt .md .markdown .rst: one document per file
  jsonl    .jsonl .jsonl.gz .jsonl.zst .json: one document per line, text in `text_field`
  parquet  .parquet: one document per row, read by record batch (bounded memory)
  code     a tree walked by extension; vendored, generated, hidden and build folders skipped
  warc     .warc(.gz): HTML responses, extracted to text with trafilatura
  wet      .wet(.gz): Common Crawl's extracted text (conversion records)
  hf       a Hugging Face data set streamed by name (needs the network)

Text is always valid UTF-8 with "\\n" newlines: undecodable bytes become U+FFFD (one per byte,
counted in `ReadStats.replaced_bytes`), "\\r\\n" and "\\r" become "\\n", a leading BOM is dropped.

Bad input: a missing path or a directory/glob with no matching file is a `UserError`, and so is
an unreadable file, except inside a code tree, where unreadable, binary (a NUL byte in the first
8 KB) and oversized files are skipped and counted like any other unwanted file. Malformed JSON
lines and records without text are skipped, counted and logged as "file:line: reason"
(`strict=True` turns them into a `UserError`).
"""

from __future__ import annotations

import glob
import os
import re
import sysconfig
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from lit_llm.data.documents import Document, ReadStats
from lit_llm.data.filters.pipeline import FILTER_SETS
from lit_llm.data.readers import read_file, read_hub_dataset
from lit_llm.errors import UserError

KINDS = ("auto", "text", "jsonl", "parquet", "code", "warc", "wet", "hf")
FILTERS = ("auto", *FILTER_SETS)  # a source's `filters`: a filter set, or auto (by kind)
SPLITS = ("auto", "train", "val")
# Extensions per kind, checked in this order against the lower-cased file name (".wet.gz" before ".gz").
KIND_EXTENSIONS: dict[str, tuple[str, ...]] = {
    "wet": (".wet", ".wet.gz"),
    "warc": (".warc", ".warc.gz"),
    "jsonl": (".jsonl", ".jsonl.gz", ".jsonl.zst", ".json"),
    "parquet": (".parquet",),
    "text": (".txt", ".md", ".markdown", ".rst"),
}
CODE_EXTENSIONS = (
    ".py",
    ".pyi",
    ".c",
    ".h",
    ".cc",
    ".cpp",
    ".cxx",
    ".hpp",
    ".hh",
    ".cu",
    ".cuh",
    ".java",
    ".kt",
    ".scala",
    ".go",
    ".rs",
    ".js",
    ".jsx",
    ".mjs",
    ".ts",
    ".tsx",
    ".rb",
    ".php",
    ".cs",
    ".swift",
    ".m",
    ".mm",
    ".sh",
    ".bash",
    ".lua",
    ".pl",
    ".pm",
    ".r",
    ".jl",
    ".hs",
    ".ml",
    ".ex",
    ".exs",
    ".erl",
    ".clj",
    ".dart",
    ".sql",
    ".zig",
    ".nim",
    ".f90",
    ".vue",
    ".svelte",
)
VCS_DIRS = frozenset({".git", ".hg", ".svn"})
# Folder names never walked inside a code tree (besides every hidden folder and *.egg-info).
CODE_SKIP_DIRS = frozenset(
    {
        "node_modules",
        "bower_components",
        "vendor",
        "vendored",
        "third_party",
        "thirdparty",
        "build",
        "dist",
        "__pycache__",
        "venv",
        "env",
        "site-packages",
        "dist-packages",
        "generated",
        "_generated",
        "__generated__",
        "target",
    }
)
# Characters per byte on disk, to estimate a corpus' size from its files (`estimate_chars`).
_SIZE_FACTORS = {".gz": 4.0, ".zst": 4.0, ".parquet": 3.0}
_PLACEHOLDERS = {"{stdlib}": lambda: sysconfig.get_paths()["stdlib"]}
_GLOB_CHARS = re.compile(r"[*?\[]")


@dataclass
class Source:
    """One source of text: an entry of a data recipe's `sources:` list, or one `--input`."""

    paths: list[str]
    """Files, directories or globs (`**` recurses); for kind "hf", the data set's hub name.
    `{stdlib}` (the running interpreter's standard library), `$VAR` and `~` expand."""
    name: str | None = None
    """Source name used in ids, the manifest and mixture weights; defaults from the first path."""
    kind: str = "auto"
    """auto|text|jsonl|parquet|code|warc|wet|hf. "auto" decides per file by extension."""
    weight: float = 1.0
    """Mixture weight of this source when the training data module samples sources."""
    text_field: str = "text"
    """JSON key / Parquet column / hub data set column holding the text."""
    extensions: list[str] | None = None
    """File extensions kept when walking a directory or expanding a glob; default per kind
    (common source extensions for code, all known data formats for auto)."""
    max_file_bytes: int = 1_000_000
    """Code files larger than this are skipped and counted (text files are always read)."""
    hf_split: str = "train"
    """Split of the hub data set."""
    hf_config: str | None = None
    """Configuration (subset) name of the hub data set."""
    hf_limit: int | None = None
    """Read at most this many records from the hub data set (per task)."""
    filters: str = "auto"
    """Quality filter set the pipeline applies: prose|code|none|auto (code for kind code, prose otherwise)."""
    optional: bool = False
    """Skip this source (listed under `skipped_sources` in the manifest) when none of its paths
    exist; missing paths of a source with some existing paths are dropped."""
    max_chars: int | None = None
    """Read about this many characters: documents are kept when a hash of their position (file
    index, record) falls under max_chars / (the source's size on disk)."""
    split: str = "auto"
    """auto (hash split into train/val), train or val (every document of the source).
    A val source turns the hash split off: the other sources go to train whole."""

    def __post_init__(self) -> None:
        if isinstance(self.paths, (str, os.PathLike)):
            self.paths = [self.paths]
        self.paths = [str(p) if self.kind == "hf" else expand_path(str(p)) for p in self.paths]
        if not self.paths:
            raise UserError("source has no paths")
        checks = [
            (self.kind in KINDS, f"unknown kind {self.kind!r} (one of {', '.join(KINDS)})"),
            (self.filters in FILTERS, f"unknown filters {self.filters!r} ({'|'.join(FILTERS)})"),
            (self.weight > 0, f"weight must be > 0, got {self.weight}"),
            (self.max_file_bytes > 0, "max_file_bytes must be > 0"),
            (self.kind != "hf" or len(self.paths) == 1, "kind hf takes exactly one data set name"),
        ]
        for ok, problem in checks:
            if not ok:
                raise UserError(f"source {self.paths[0]}: {problem}")
        if self.name is None:
            self.name = _default_name(self.paths[0])
        if self.split not in SPLITS:
            raise UserError(
                f"source {self.name}: split must be one of {', '.join(SPLITS)}, got {self.split!r}"
            )
        if self.max_chars is not None and self.max_chars <= 0:
            raise UserError(f"source {self.name}: max_chars must be > 0")

    @property
    def filter_set(self) -> str:
        """The quality filter set to apply, with "auto" resolved."""
        if self.filters != "auto":
            return self.filters
        return "code" if self.kind == "code" else "prose"


def to_source(item: Source | dict | str, text_field: str = "text") -> Source:
    """A `Source` from a dict (YAML) or a "PATH" / "KIND:PATH" string ("code:/usr/lib/python3.11",
    "hf:user/data"; `text_field` applies to strings); a `Source` is returned as it is."""
    if isinstance(item, Source):
        return item
    if isinstance(item, dict):
        return Source(**item)
    kind, sep, rest = str(item).partition(":")
    if sep and kind in KINDS and rest:
        return Source(paths=[rest], kind=kind, text_field=text_field)
    return Source(paths=[str(item)], text_field=text_field)


def expand_path(path: str) -> str:
    """Expand `{stdlib}`, environment variables and `~` in a source path."""
    for token, value in _PLACEHOLDERS.items():
        if token in path:
            path = path.replace(token, value())
    return os.path.expanduser(os.path.expandvars(path))


def _default_name(path: str) -> str:
    head = _GLOB_CHARS.split(path, maxsplit=1)[0] if _GLOB_CHARS.search(path) else path
    name = Path(head.rstrip("/\\")).name or Path(path).parent.name or "source"
    for ext in sorted((e for exts in KIND_EXTENSIONS.values() for e in exts), key=len, reverse=True):
        if name.lower().endswith(ext) and len(name) > len(ext):
            return name[: -len(ext)]
    return name


# ---------------------------------------------------------------- files


def path_exists(path: str) -> bool:
    """True when a path exists or a glob matches something."""
    return bool(glob.glob(path, recursive=True)) if _GLOB_CHARS.search(path) else os.path.exists(path)


def _skip_dir(name: str, code_tree: bool) -> bool:
    if name in VCS_DIRS:
        return True
    return code_tree and (name.startswith(".") or name in CODE_SKIP_DIRS or name.endswith(".egg-info"))


def _has_ext(path: Path, extensions: Iterable[str] | None) -> bool:
    return extensions is None or any(path.name.lower().endswith(ext.lower()) for ext in extensions)


def _walk(root: Path, extensions, code_tree: bool, stats: ReadStats | None) -> list[Path]:
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        kept = sorted(d for d in dirnames if not _skip_dir(d, code_tree))
        if stats is not None:
            stats.skipped_dirs += len(dirnames) - len(kept)
        dirnames[:] = kept
        found += [Path(dirpath, f) for f in sorted(filenames) if _has_ext(Path(f), extensions)]
    return found


def _resolve_with_roots(paths, extensions, code_tree=False, stats=None) -> list[tuple[Path, Path]]:
    """Resolve paths to (file, root) pairs; root is what relative paths in code metadata start from."""
    out: list[tuple[Path, Path]] = []
    for raw in paths:
        raw = str(raw)
        if _GLOB_CHARS.search(raw):
            matches = sorted(glob.glob(raw, recursive=True))
            root = Path(_GLOB_CHARS.split(raw, maxsplit=1)[0] or ".")
            root = root if root.is_dir() else root.parent
            files = []
            for m in map(Path, matches):
                if m.is_dir():
                    files += _walk(m, extensions, code_tree, stats)
                elif _has_ext(m, extensions):
                    files.append(m)
            if not files:
                raise UserError(f"{raw}: no files match{_ext_hint(extensions)}")
            out += [(f, root) for f in files]
        elif os.path.isdir(raw):
            files = _walk(Path(raw), extensions, code_tree, stats)
            if not files:
                raise UserError(f"{raw}: directory has no matching files{_ext_hint(extensions)}")
            out += [(f, Path(raw)) for f in files]
        elif os.path.exists(raw):
            out.append((Path(raw), Path(raw).parent))
        else:
            raise UserError(f"{raw}: no such file or directory")
    seen: set[Path] = set()
    return [(f, r) for f, r in out if not (f in seen or seen.add(f))]


def _ext_hint(extensions) -> str:
    shown = sorted(extensions or ())[:10] + (["..."] if len(extensions or ()) > 10 else [])
    return f" (extensions: {', '.join(shown)})" if extensions is not None else ""


def resolve_files(paths, extensions=None, *, code_tree: bool = False) -> list[Path]:
    """Expand files, directories and globs into a deterministic list of files.

    Each input is expanded in sorted order and inputs keep their given order; duplicates are dropped.
    Directories are walked recursively (VCS folders skipped; with `code_tree`, also hidden, vendored,
    build and generated folders). `extensions` filters walked and globbed files, never a file named
    explicitly. A missing path, or a directory/glob with no matching file, is a `UserError`.
    """
    return [f for f, _ in _resolve_with_roots(paths, extensions, code_tree)]


def detect_kind(path: Path) -> str | None:
    """The reader kind for a file name, or None when the extension is not a known data format."""
    name = path.name.lower()
    for kind, exts in KIND_EXTENSIONS.items():
        if any(name.endswith(ext) for ext in exts):
            return kind
    return None


def source_files(spec: Source, task_index: int = 0, num_tasks: int = 1, stats=None) -> list:
    """The (file, root) pairs of a file source that task `task_index` of `num_tasks` reads: files[i::n]."""
    if not 0 <= task_index < num_tasks:
        raise UserError(f"task_index must be in [0, {num_tasks}), got {task_index}")
    if spec.extensions is not None:
        extensions = spec.extensions
    elif spec.kind in ("code", "auto"):
        extensions = CODE_EXTENSIONS if spec.kind == "code" else sum(KIND_EXTENSIONS.values(), ())
    else:
        extensions = KIND_EXTENSIONS[spec.kind]
    pairs = _resolve_with_roots(spec.paths, extensions, code_tree=spec.kind == "code", stats=stats)
    return pairs[task_index::num_tasks]


def estimate_chars(sources: Sequence[Source]) -> int | None:
    """Rough corpus size in characters from file sizes (no reading); None when unknown (hub data)."""
    total = 0.0
    for spec in sources:
        if spec.kind == "hf":
            return None
        for path, _ in source_files(spec):
            factor = next((f for ext, f in _SIZE_FACTORS.items() if path.name.lower().endswith(ext)), 1.0)
            total += path.stat().st_size * factor
    return int(total)


# ---------------------------------------------------------------- documents


def iter_documents(
    spec: Source,
    stats: ReadStats | None = None,
    strict: bool = False,
    task_index: int = 0,
    num_tasks: int = 1,
) -> Iterator[Document]:
    """Yield the documents of one source, in a deterministic order.

    Args:
        spec: The source.
        stats: Filled in while reading (counts, skips, repairs, a log of "file:line: reason").
        strict: Raise a `UserError` on a malformed line or record instead of skipping it.
        task_index: This task's index when the input is split over `num_tasks` tasks.
        num_tasks: Number of tasks; file sources are split by file (files[task_index::num_tasks]),
            hub data sets by shard (`datasets.distributed.split_dataset_by_node`).
    """
    stats = stats if stats is not None else ReadStats()
    if not 0 <= task_index < num_tasks:
        raise UserError(f"task_index must be in [0, {num_tasks}), got {task_index}")
    if spec.kind == "hf":
        yield from read_hub_dataset(spec, stats, task_index, num_tasks)
        return
    for path, root in source_files(spec, task_index, num_tasks, stats):
        kind = spec.kind if spec.kind != "auto" else detect_kind(path)
        if kind is None:
            known = ", ".join(k for k in KINDS if k not in ("auto", "hf"))
            raise UserError(f"{path}: unknown format (extension); set the source's kind ({known})")
        yield from read_file(path, root, kind, spec, stats, strict)
