"""Quality filters on crafted documents: each rule's keep and drop cases, switches and thresholds,
C4 line cleaning output, statistics, rejected samples, worker merging; plus the normaliser."""

import json
import pickle
import random

import numpy as np
import pytest

from lit_llm.data.documents import ReadStats, decode_text
from lit_llm.data.filters import FilterConfig, FilterPipeline, merge_stats
from lit_llm.data.filters.base import ParsedText
from lit_llm.data.filters.code import CodeConfig
from lit_llm.data.filters.gopher import (
    GopherQualityConfig,
    GopherQualityFilter,
    GopherRepetitionConfig,
    GopherRepetitionFilter,
    _NGrams,
)
from lit_llm.data.filters.prose import C4Config, C4Filter, FineWebConfig, FineWebFilter, count_sentences
from lit_llm.data.normalize import normalize_newlines, split_words
from lit_llm.data.recipe import Recipe
from lit_llm.data.sources import Source
from lit_llm.data.task_workers import WorkerSetup, worker_pool
from lit_llm.errors import UserError

GOOD = """The history of the river valley is long and full of surprises for anyone who studies it.
Farmers settled near the water because the soil was rich and the winters were mild.
Over the centuries they built small bridges, stone mills and narrow roads between the villages.
Travellers who came to trade wool and grain often stayed for the summer markets.
Records from the old church describe floods that changed the course of the stream twice.
Today the valley is known for its orchards, quiet footpaths and a small museum of local crafts.
Visitors can walk from the station to the museum in less than an hour on a marked trail.
Many families have lived in the same houses for generations and still speak with pride of that past."""

NO_STOP = " ".join(w for w in GOOD.split() if w not in {"the", "and", "of", "that", "to", "with"})

CODE = '''"""Small helpers for parsing configuration files."""

import json
from pathlib import Path


def load(path):
    """Read a JSON file and return its content."""
    with open(Path(path), encoding="utf-8") as fh:
        return json.load(fh)


def save(obj, path):
    Path(path).write_text(json.dumps(obj, indent=2))
'''


def run(flt, text):
    doc = ParsedText(text)
    return flt(doc), doc.text


# ------------------------------------------------------------------------ normaliser


def test_split_words_follows_spacy_english_conventions():
    assert split_words("Don't stop, it's well-known (U.S. policy) 3.14 and 1,000... yes!") == [
        "Do",
        "n't",
        "stop",
        ",",
        "it",
        "'s",
        "well",
        "-",
        "known",
        "(",
        "U.S.",
        "policy",
        ")",
        "3.14",
        "and",
        "1,000",
        "...",
        "yes",
        "!",
    ]
    assert split_words("a @-@ b , cannot Mr. Smith") == ["a", "@-@", "b", ",", "can", "not", "Mr.", "Smith"]


def test_decode_and_newlines():
    stats = ReadStats()
    assert decode_text("héllo".encode(), stats) == "héllo" and stats.replaced_bytes == 0
    text = decode_text(b"ok \xff\xfe end \xef\xbf\xbd", stats)  # two bad bytes + one real U+FFFD
    assert text.startswith("ok ") and stats.replaced_bytes == 2
    assert normalize_newlines("a\r\nb\rc\n") == "a\nb\nc\n"


# ------------------------------------------------------------------------ Gopher quality


def test_gopher_quality_keeps_prose_and_drops_each_rule():
    flt = GopherQualityFilter(GopherQualityConfig())
    assert run(flt, GOOD)[0] is None
    assert run(flt, GOOD.split("\n")[0])[0] == "short_doc"
    long_words = " ".join(["internationalization characterization the and"] * 20)
    assert run(flt, long_words)[0] == "above_avg_word_length"
    assert run(flt, " ".join(["a of to be an it"] * 15))[0] == "below_avg_word_length"
    assert run(flt, GOOD + " #tag" * 20)[0] == "too_many_hashes"
    assert run(flt, GOOD + " wait..." * 20)[0] == "too_many_ellipsis"
    bullets = "\n".join("- " + line for line in GOOD.split("\n"))
    assert run(flt, bullets)[0] == "too_many_bullet_lines"
    trailing = "\n".join(line[:-1] + " and so on…" for line in GOOD.split("\n"))
    assert run(flt, trailing)[0] == "too_many_ellipsis_lines"
    assert run(flt, GOOD + " 12 34 56 78" * 10)[0] == "below_alpha_words_ratio"
    assert run(flt, NO_STOP)[0] == "too_few_stop_words"


def test_gopher_quality_thresholds_from_config():
    assert run(GopherQualityFilter(GopherQualityConfig(min_doc_words=200)), GOOD)[0] == "short_doc"
    off = GopherQualityConfig(min_doc_words=None, min_stop_words=None)
    assert run(GopherQualityFilter(off), GOOD.split("\n")[0])[0] is None


# ------------------------------------------------------------------------ Gopher repetition


def test_gopher_repetition_rules():
    flt = GopherRepetitionFilter(GopherRepetitionConfig())
    assert run(flt, GOOD)[0] is None
    lines = GOOD.split("\n")
    assert run(flt, "\n".join(lines + lines[:4]))[0] == "dup_line_frac"
    assert run(flt, "\n\n".join(lines + lines[:4]))[0] == "dup_para_frac"
    # One long line repeated once: few duplicate lines, but 20% of the characters.
    assert run(flt, "\n".join(lines[:7] + [lines[7] * 3, lines[7] * 3]))[0] == "dup_line_char_frac"
    # The same sentence twice inside one line: no duplicate line, duplicated 5-grams.
    assert run(flt, " ".join(lines[:3] + [lines[4] + " " + lines[4]]))[0] == "duplicated_5_n_grams"
    assert run(flt, GOOD + " " + "the river " * 40)[0] == "top_2_gram"
    assert run(flt, "")[0] == "empty"


def test_gopher_repetition_can_be_switched_off_per_rule():
    lines = GOOD.split("\n")
    text = "\n".join(lines + lines[:4])
    cfg = GopherRepetitionConfig(dup_line_frac=None, dup_line_char_frac=None, dup_n_grams={})
    assert run(GopherRepetitionFilter(cfg), text)[0] is None


def test_ngram_metrics_match_datatrove():
    gr = pytest.importorskip("datatrove.pipeline.filters.gopher_repetition_filter")
    rng = random.Random(0)
    for _ in range(300):
        # words end with '.', so datatrove's "".join(n-gram) cannot confuse two n-grams
        vocab = ["".join(rng.choice("abc") for _ in range(rng.randint(1, 3))) + "." for _ in range(5)]
        words = [rng.choice(vocab) for _ in range(rng.randint(2, 60))]
        grams = _NGrams(words)
        for n in range(2, min(10, len(words)) + 1):
            grams.advance()
            assert grams.top_chars() == gr.find_top_duplicate(gr.get_n_grams(words, n))
            assert grams.dup_chars(float("inf")) == gr.find_all_duplicate(words, n)
            grams.prune()


# ------------------------------------------------------------------------ C4


def test_c4_line_cleaning_output():
    text = (
        "Short line.\n"
        "Please enable JavaScript to view the comments on this page.\n"
        "This site uses cookies to improve your experience.\n"
        "The first real sentence is here[1] and it goes on.\n"
        "   The second real sentence has some leading spaces.   \n"
        "a {\n"
        "A third line that has no final punctuation\n"
        "The fourth one ends well. It even has two sentences.\n"
    )
    reason, out = run(C4Filter(C4Config()), text)
    assert reason is None
    assert out == (
        "The first real sentence is here and it goes on.\n"
        "The second real sentence has some leading spaces.\n"
        "A third line that has no final punctuation\n"
        "The fourth one ends well. It even has two sentences."
    )
    strict = C4Filter(C4Config(filter_no_terminal_punct=True, min_num_sentences=None))
    assert "no final punctuation" not in run(strict, text)[1]


def test_c4_document_rules():
    flt = C4Filter(C4Config())
    assert run(flt, GOOD + "\nThe code is in a block { like this } here.")[0] == "curly_bracket"
    assert run(flt, GOOD + "\nLorem ipsum dolor sit amet, consectetur.")[0] == "lorem_ipsum"
    assert (
        run(flt, "One sentence here. And a second one.\nA third sentence is here.")[0] == "too_few_sentences"
    )
    assert run(C4Filter(C4Config(filter_curly_bracket=False)), GOOD + "\nA block { like } this.")[0] is None
    assert run(C4Filter(C4Config(enabled=True, min_num_sentences=None)), "Just one line here.")[0] is None


def test_count_sentences_like_spacy_sentencizer():
    assert count_sentences("Hello there. How are you? Fine.") == 3
    assert count_sentences('He said "Stop." Then he left.') == 2
    assert count_sentences("Mr. Smith went home... and slept.") == 1
    assert count_sentences("") == 1


# ------------------------------------------------------------------------ FineWeb


def test_fineweb_rules():
    flt = FineWebFilter(FineWebConfig())
    assert run(flt, GOOD)[0] is None
    no_punct = "\n".join(line.rstrip(".") for line in GOOD.split("\n"))
    assert run(flt, no_punct)[0] == "line_punct_ratio"
    short = GOOD + "\n" + "\n".join(f"Item number {i}." for i in range(30))
    assert run(flt, short)[0] == "short_line_ratio"
    lines = GOOD.split("\n")
    assert run(flt, "\n".join(lines + lines[:1]))[0] == "char_dup_ratio"
    listy = "\n".join(f"Incomprehensibilities{i:03d}gluedtogether." for i in range(20))
    assert run(flt, listy)[0] == "list_ratio"
    assert run(FineWebFilter(FineWebConfig(line_punct_thr=None)), no_punct)[0] is None


# ------------------------------------------------------------------------ code


def test_code_rules():
    pipe = FilterPipeline(FilterConfig(), "code")
    assert pipe(CODE) == CODE
    assert pipe(CODE + "x = '" + "a" * 1200 + "'\n") is None
    assert pipe("\n".join(["value = compute(" + "a" * 120 + ")"] * 5)) is None
    assert pipe("\n".join(["'=+/=+/=+/=+/=' +"] * 20)) is None
    assert pipe("# Code generated by protoc-gen-go. DO NOT EDIT.\n" + CODE) is None
    assert pipe("# Generated by Tools/build/gen.py\n" + CODE) is None
    assert pipe('"""Tables generated by pgen."""\n' + CODE) is not None  # not a header marker
    assert pipe.stats()["filters"]["code"]["reasons"] == {
        "alphanum_fraction": 1,
        "autogenerated": 2,
        "max_line_length": 1,
        "mean_line_length": 1,
    }
    relaxed = FilterConfig(code=CodeConfig(max_line_length=None, max_mean_line_length=None))
    assert FilterPipeline(relaxed, "code")(CODE + "x = '" + "a" * 1200 + "'\n") is not None


def test_prose_rules_drop_code_and_code_rules_keep_it():
    assert FilterPipeline(FilterConfig(), "prose")(CODE) is None
    assert FilterPipeline(FilterConfig(), "none")(CODE) == CODE


# ------------------------------------------------------------------------ pipeline


def corpus():
    lines = GOOD.split("\n")
    docs = [GOOD, GOOD + "\nTiny.\nTiny line", CODE, lines[0], "\n".join(lines + lines[:4]), NO_STOP]
    docs += [f"{GOOD}\nAnd story number {i} ends here with a fine sentence." for i in range(6)]
    docs += [f"Only {i} words." for i in range(8)]
    return docs


def test_pipeline_stats_count_documents_chars_and_lines():
    pipe = FilterPipeline(FilterConfig(), "prose")
    out = [pipe(t, f"d{i}") for i, t in enumerate(corpus())]
    st = pipe.stats()
    assert st["documents_in"] == len(out) and st["documents_out"] == sum(o is not None for o in out)
    assert out[1] == GOOD  # C4 dropped the two short lines
    c4 = st["filters"]["c4"]
    assert c4["lines_removed"] == 2 and c4["documents_modified"] == 1
    assert c4["chars_removed"] == len("\nTiny.\nTiny line")
    removed = sum(f["documents_removed"] for f in st["filters"].values())
    assert removed == st["documents_in"] - st["documents_out"]
    gq = st["filters"]["gopher_quality"]
    assert gq["reasons"] == {"short_doc": 1, "too_few_stop_words": 1}  # CODE, NO_STOP
    assert st["filters"]["gopher_repetition"]["reasons"]["top_2_gram"] == 8  # "Only {i} words.", as datatrove
    assert st["chars_in"] - st["chars_out"] == sum(f["chars_removed"] for f in st["filters"].values())
    assert "gopher_quality removed" in pipe.describe()


def test_disabled_filter_is_not_run():
    cfg = FilterConfig(gopher_quality=GopherQualityConfig(enabled=False))
    pipe = FilterPipeline(cfg, "prose")
    assert "gopher_quality" not in pipe.stats()["filters"]
    with pytest.raises(UserError, match="unknown filter set"):
        FilterPipeline(cfg, "poetry")


def test_worker_states_merge_to_the_single_process_result(tmp_path):
    docs = corpus()
    single = FilterPipeline(FilterConfig(samples_per_filter=3), "prose")
    expected = [single(t, str(i)) for i, t in enumerate(docs)]
    parent = FilterPipeline(FilterConfig(samples_per_filter=3), "prose")
    worker = pickle.loads(pickle.dumps(parent))
    results = []
    for start in (10, 0):  # batches out of order: merging must not depend on it
        batch = list(range(start, min(start + 10, len(docs))))
        results += list(zip(batch, worker.filter_batch([docs[i] for i in batch], [str(i) for i in batch])))
        parent.merge_state(worker.pop_state())
    assert [r for _, r in sorted(results)] == expected
    assert parent.stats() == single.stats()
    a = [p.read_text() for p in single.write_rejected_samples(tmp_path / "a")]
    b = [p.read_text() for p in parent.write_rejected_samples(tmp_path / "b")]
    assert a == b


class _ByteTokenizer:
    """Just enough of a tokenizer for the prepare workers: a text's UTF-8 bytes are its token ids."""

    eos_id, vocab_size = 256, 257

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [list(t.encode()) for t in texts]


def test_prepare_worker_processes_merge_to_the_single_process_result(tmp_path):
    """Filters run in `lit-llm data prepare`'s worker processes (`task_workers`): the batches' filter
    states merged in the parent equal one pipeline run here, kept documents and samples included."""
    docs, cfg = corpus(), FilterConfig(samples_per_filter=3)
    ids = [f"d{i}" for i in range(len(docs))]
    recipe = Recipe(sources=[Source(paths=[str(tmp_path)], name="docs")], filters=cfg)
    with worker_pool(2, WorkerSetup(_ByteTokenizer(), recipe)) as submit:
        futures = [submit(("prose", docs[i : i + 7], ids[i : i + 7])) for i in range(0, len(docs), 7)]
        results = [f.result() for f in futures]
    parent = FilterPipeline(cfg, "prose")
    for res in results:
        parent.merge_state(res["filters"])
    kept = [start + int(i) for start, res in zip(range(0, len(docs), 7), results) for i in res["kept"]]
    single = FilterPipeline(cfg, "prose")
    expected = single.filter_batch(docs, ids)
    assert kept == [i for i, text in enumerate(expected) if text is not None]
    ends = [
        (res["tokens"], n, end)
        for res in results
        for n, end in zip(res["lengths"], np.cumsum(res["lengths"]))
    ]
    texts = [bytes(tokens[end - n : end - 1].tolist()).decode() for tokens, n, end in ends]  # eos dropped
    assert texts == [text for text in expected if text is not None]
    assert parent.stats() == single.stats()
    a = [p.read_text() for p in single.write_rejected_samples(tmp_path / "a")]
    assert [p.read_text() for p in parent.write_rejected_samples(tmp_path / "b")] == a


def test_merge_stats_sums_pipelines():
    docs, cfg = corpus(), FilterConfig()
    single = FilterPipeline(cfg, "prose")
    single.filter_batch(docs)
    half = [FilterPipeline(cfg, "prose") for _ in range(2)]
    half[0].filter_batch(docs[:5])
    half[1].filter_batch(docs[5:])
    assert merge_stats(half[0].stats(), half[1].stats()) == single.stats()


def test_rejected_samples_are_bounded_deterministic_and_written(tmp_path):
    docs = corpus()
    pipe = FilterPipeline(FilterConfig(samples_per_filter=2, sample_max_chars=40), "prose")
    pipe.filter_batch(docs, [f"doc{i}" for i in range(len(docs))])
    shuffled = list(enumerate(docs))
    random.Random(1).shuffle(shuffled)
    again = FilterPipeline(FilterConfig(samples_per_filter=2, sample_max_chars=40), "prose")
    again.filter_batch([t for _, t in shuffled], [f"doc{i}" for i, _ in shuffled])
    paths = pipe.write_rejected_samples(tmp_path)
    assert sorted(p.name for p in paths) == [
        "c4.jsonl",
        "fineweb.jsonl",
        "gopher_quality.jsonl",
        "gopher_repetition.jsonl",
    ]
    rows = [json.loads(line) for line in (tmp_path / "gopher_quality.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(len(r["text"]) <= 40 and r["id"].startswith("doc") for r in rows)
    assert rows[0]["filter"] == "gopher_quality" and rows[0]["reason"]
    assert [p.read_text() for p in again.write_rejected_samples(tmp_path / "again")] == [
        p.read_text() for p in paths
    ]


def test_filter_config_from_yaml():
    jsonargparse = pytest.importorskip("jsonargparse")
    parser = jsonargparse.ArgumentParser()
    parser.add_argument("--filters", type=FilterConfig)
    yaml = "filters:\n  c4:\n    enabled: false\n  gopher_quality:\n    min_doc_words: 10\n  gopher_repetition:\n    top_n_grams: {2: 0.5}\n"
    cfg = parser.instantiate_classes(parser.parse_string(yaml)).filters
    assert cfg.c4.enabled is False and cfg.gopher_quality.min_doc_words == 10
    assert cfg.gopher_repetition.top_n_grams == {2: 0.5}
    assert "c4" not in FilterPipeline(cfg, "prose").stats()["filters"]
