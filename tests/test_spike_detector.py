"""SpikeDetector as a pure object: thresholds, state round trip, and replays of recorded normal runs.

The curves under tests/data/loss_curves/ are the per-step loss and pre-clip gradient norm of real
runs (the demo, tiny_cpu over three seeds, the time-to-quality recipe), recorded by
bench/record_loss_curves.py. The default detector must stay silent on all of them, and must catch
a blow-up planted into any of them, also at the end of warm-up.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch

from lit_llm.spike_detector import SpikeDetector

CURVES = sorted((Path(__file__).parent / "data" / "loss_curves").glob("*.csv"))


def read_curve(path: Path) -> list[tuple[float, float]]:
    with open(path, newline="") as f:
        return [(float(r["loss"]), float(r["grad_norm"])) for r in csv.DictReader(f)]


def replay(detector: SpikeDetector, curve) -> list[tuple[int, str]]:
    fired = []
    for step, (loss, norm) in enumerate(curve):
        reason = detector.check(loss, norm)
        if reason is None:
            detector.observe(loss, norm)
        else:
            fired.append((step, reason))
    return fired


def test_the_recorded_normal_runs_are_all_there():
    names = {p.stem for p in CURVES}
    assert {"demo", "tiny_cpu_seed1", "tiny_cpu_seed2", "tiny_cpu_seed3", "time_to_quality"} <= names
    assert all(len(read_curve(p)) >= 500 for p in CURVES)


@pytest.mark.parametrize("path", CURVES, ids=[p.stem for p in CURVES])
def test_no_false_positives_on_normal_runs(path):
    assert replay(SpikeDetector(), read_curve(path)) == []
    assert (
        replay(SpikeDetector(grad_norm_z=6.0), read_curve(path)) == []
    )  # the optional gradient-norm test too


@pytest.mark.parametrize("path", CURVES, ids=[p.stem for p in CURVES])
def test_a_blow_up_is_caught_anywhere_in_a_normal_run(path):
    curve = read_curve(path)
    # 4x the loss: caught from the second step (step 30 is the end of the demo's warm-up) by the
    # blow-up ratio; 2x the loss once the curve has settled: caught by the statistical test.
    planted = [(at, 4.0) for at in (1, 30, 50, 100, len(curve) // 2, len(curve) - 1)]
    planted += [(at, 2.0) for at in (len(curve) // 2, len(curve) - 1)]
    for at, factor in planted:
        loss, norm = curve[at]
        spiked = [*curve[:at], (loss * factor, norm * 20), *curve[at + 1 :]]
        assert [step for step, _ in replay(SpikeDetector(), spiked)] == [at], (at, factor)


def test_thresholds():
    detector = SpikeDetector(window=32, min_history=16)
    assert detector.check(float("nan"), 1.0).startswith("non-finite loss")
    assert detector.check(3.0, float("inf")).startswith("non-finite gradient norm")
    assert detector.check(9.0, 1.0) is None  # no history at all: nothing to compare with
    detector.observe(3.0, 1.0)
    assert "3.0x the median" in detector.check(9.1, 1.0)  # gross blow-up from the second step
    assert detector.check(8.9, 1.0) is None  # under 3x, and too little history for statistics
    for i in range(31):
        detector.observe(3.0 + 0.02 * math.sin(i), 1.0 + 0.05 * math.cos(i))
    assert detector.check(3.05, 1.0) is None  # within the noise
    assert detector.check(3.4, 1.0) is None  # many sigma, but under the 20% rise
    assert "sigma" in detector.check(3.7, 1.0) and detector.last_stats["loss_z"] > 6
    assert detector.check(3.0, 3.5) is None  # gradient norm not watched by default
    detector.grad_norm_z = 6.0
    assert detector.check(3.0, 3.5).startswith("grad_norm")  # > 6 sigma and > 3x the mean
    with pytest.raises(ValueError, match="loss_ratio"):
        SpikeDetector(loss_ratio=0.5)
    with pytest.raises(ValueError, match="window"):
        SpikeDetector(window=0)


def test_state_round_trip_replaces(tmp_path):
    detector = SpikeDetector(window=4)
    for value in (3.0, 2.9, 2.8, 2.7, 2.6):
        detector.observe(value, value / 2)
    state = detector.state_dict()
    torch.save(state, tmp_path / "state.pt")
    assert torch.load(tmp_path / "state.pt", weights_only=True) == state == json.loads(json.dumps(state))
    other = SpikeDetector(window=4)
    other.observe(9.0, 9.0)
    other.load_state_dict(state)
    assert other.state_dict() == state and list(other.losses) == [2.9, 2.8, 2.7, 2.6]
    other.load_state_dict({})
    assert other.state_dict() == {"losses": [], "grad_norms": []}
