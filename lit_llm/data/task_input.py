"""What one task of `lit-llm data prepare` reads: its share of each source (by file, or by record when a
source has fewer files than tasks), sampled down to a source's `max_chars`, documents cut into blocks
of at most `max_doc_chars`, grouped into chunks (`chunk_chars`) and worker batches.

`work_items` yields ("batch", source, chunk, items) and ("end", source, chunk, None) in stream
order, where an item is (file, record, block, text, id): the global order key of a document
(block) and its text (`lit_llm.data.chunks` explains the key).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

from lit_llm.data.documents import ReadStats
from lit_llm.data.recipe import Recipe
from lit_llm.data.sampling import key_uniform
from lit_llm.data.sources import Source, estimate_chars, iter_documents, source_files

BATCH_CHARS = 1 << 19  # characters per worker batch: enough to amortise pickling, small enough to balance
BATCH_DOCS = 512


def cut_blocks(text: str, max_chars: int | None) -> list[str]:
    """Cut text into blocks of at most `max_chars` characters: at the last blank line of each window,
    else its last line end, else hard. The blocks concatenate back to the text; blank ones are dropped."""
    if max_chars is None or len(text) <= max_chars:
        return [text]
    blocks, start = [], 0
    while len(text) - start > max_chars:
        end = start + max_chars
        cut = text.rfind("\n\n", start, end)
        if cut > start:
            end = cut + 2
        elif (cut := text.rfind("\n", start, end)) > start:
            end = cut + 1
        blocks.append(text[start:end])
        start = end
    blocks.append(text[start:])
    return [b for b in blocks if b.strip()]


def sample_rate(src: Source) -> float:
    """Fraction of documents kept for `max_chars` (from the source's size on disk)."""
    if src.max_chars is None or src.kind == "hf":
        return 1.0
    total = estimate_chars([src]) or 0
    return min(1.0, src.max_chars / total) if total else 1.0


@dataclass
class ReadCounts:
    """Per-source counts of the reading stage in this task."""

    documents_cut: int = 0
    blocks: int = 0
    sampled_out: int = 0


def split_by_record(src: Source, num_files: int, num_tasks: int) -> bool:
    """True when tasks share this source by record, not by file (it has fewer files than tasks)."""
    return src.kind != "hf" and num_tasks > 1 and num_files < num_tasks


class TaskReader:
    """This task's share of a recipe's sources, read document by document (blocks, in order), with
    each source's read statistics (`stats`) and reading-stage counts (`counts`)."""

    def __init__(self, recipe: Recipe, task_index: int, num_tasks: int, strict: bool):
        self.recipe, self.task_index, self.num_tasks, self.strict = recipe, task_index, num_tasks, strict
        self.stats = [ReadStats() for _ in recipe.sources]
        self.counts = [ReadCounts() for _ in recipe.sources]

    def items(self, s: int) -> Iterator[tuple]:
        """(file, record, block, text, id) for each document (block) of this task's share of source s.

        The share is files[task_index::num_tasks]; a file source with fewer files than tasks is split
        by record instead (every task reads its files, task i keeps the records with (file + record)
        % n == i, and only task 0 counts what was read, so the merged read statistics count each
        record once)."""
        src, counts, task_index, num_tasks = (
            self.recipe.sources[s],
            self.counts[s],
            self.task_index,
            self.num_tasks,
        )
        files = {str(p): i for i, (p, _) in enumerate(source_files(src))} if src.kind != "hf" else {}
        by_record = split_by_record(src, len(files), num_tasks)
        rate = sample_rate(src)
        current, rec = None, -1
        if by_record:
            docs = iter_documents(src, self.stats[s] if task_index == 0 else ReadStats(), self.strict)
        else:
            docs = iter_documents(src, self.stats[s], self.strict, task_index, num_tasks)
        for doc in docs:
            path = doc.meta.get("path")
            if path is None:  # a hub data set: records of this task's share of it
                file, rec = task_index, int(doc.meta.get("index", rec + 1))
            else:
                if path != current:
                    current, rec = path, -1
                file, rec = files[path], rec + 1
            if by_record and (file + rec) % num_tasks != task_index:
                continue
            if rate < 1.0 and key_uniform(f"{src.name}:{file}:{rec}") >= rate:
                counts.sampled_out += 1
                continue
            blocks = cut_blocks(doc.text, self.recipe.split.max_doc_chars)
            if len(blocks) > 1:
                counts.documents_cut += 1
                counts.blocks += len(blocks)
            for b, text in enumerate(blocks):
                yield file, rec, b, text, doc.id if len(blocks) == 1 else f"{doc.id}#{b}"

    def work_items(self, done: set, bar) -> Iterator[tuple]:
        """("batch", source, chunk, items) and ("end", source, chunk, None) in stream order; finished
        chunks' documents are read (to find where the next chunk starts) but not yielded."""
        for s in range(len(self.recipe.sources)):
            chunk, chunk_chars, batch, batch_chars = 0, 0, [], 0
            for item in self.items(s):
                if chunk_chars >= self.recipe.chunk_chars:
                    if batch:
                        yield "batch", s, chunk, batch
                    if (s, chunk) not in done:
                        yield "end", s, chunk, None
                    chunk, chunk_chars, batch, batch_chars = chunk + 1, 0, [], 0
                chunk_chars += len(item[3])
                bar.update(len(item[3]))
                if (s, chunk) in done:
                    continue
                batch.append(item)
                batch_chars += len(item[3])
                if batch_chars >= BATCH_CHARS or len(batch) >= BATCH_DOCS:
                    yield "batch", s, chunk, batch
                    batch, batch_chars = [], 0
            if batch:
                yield "batch", s, chunk, batch
            if (s, chunk) not in done:
                yield "end", s, chunk, None

    def estimated_chars(self) -> int | None:
        """About how many characters this task will read (None for hub data sets)."""
        total = 0
        for src in self.recipe.sources:
            if src.kind == "hf":
                return None
            if split_by_record(src, len(source_files(src)), self.num_tasks):
                size = sum(p.stat().st_size for p, _ in source_files(src)) / self.num_tasks
            else:
                size = sum(p.stat().st_size for p, _ in source_files(src, self.task_index, self.num_tasks))
            total += int(size * sample_rate(src))
        return total


class TimedIterator:
    """Wraps an iterator and adds the time spent in `next` to `seconds`."""

    def __init__(self, it):
        self.it, self.seconds = it, 0.0

    def __iter__(self):
        return self

    def __next__(self):
        start = time.perf_counter()
        try:
            return next(self.it)
        finally:
            self.seconds += time.perf_counter() - start
