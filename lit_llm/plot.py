"""Loss-curve plot (PNG) from the CSV logs of a run.

from lit_llm.plot import plot_loss_curve
plot_loss_curve("runs/demo")   # -> runs/demo/loss_curve.png
"""

from __future__ import annotations

import csv
from pathlib import Path


def read_metrics(run_dir: str | Path) -> list[dict]:
    """All rows of every `logs/version_*/metrics.csv` under run_dir, in version order."""
    rows: list[dict] = []
    paths = sorted(
        Path(run_dir).glob("logs/version_*/metrics.csv"), key=lambda p: int(p.parent.name.split("_")[1])
    )
    for path in paths:
        with open(path, newline="") as f:
            rows.extend(csv.DictReader(f))
    return rows


def series(rows: list[dict], key: str) -> tuple[list[int], list[float]]:
    points = {int(r["step"]): float(r[key]) for r in rows if r.get(key) not in (None, "")}
    steps = sorted(points)
    return steps, [points[s] for s in steps]


def read_rollbacks(run_dir: str | Path) -> list[dict]:
    """The rollback events of `spike_events.jsonl` in run_dir (none when the file is absent)."""
    import json

    path = Path(run_dir) / "spike_events.jsonl"
    if not path.exists():
        return []
    events = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [e for e in events if e.get("action") == "rollback"]


def plot_loss_curve(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Training and validation loss against optimizer step, saved as a PNG next to the logs.

    Steps are optimizer steps taken; a loss-spike rollback is drawn as a shaded span from the clean
    checkpoint it returned to up to the spike: the steps of that span were discarded.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(run_dir)
    out = Path(out) if out else Path(run_dir) / "loss_curve.png"
    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    for key, style in (("train/loss", "-"), ("val/loss", "o-")):
        steps, values = series(rows, key)
        if steps:
            ax.plot(steps, values, style, label=key, markersize=4)
    rollbacks = read_rollbacks(run_dir)
    for i, event in enumerate(rollbacks):
        label = "discarded by a rollback" if i == 0 else None
        ax.axvspan(event["checkpoint_step"], event["step"] + 1, color="tab:red", alpha=0.15, label=label)
    _clip_spikes(ax, rows, rollbacks)
    ax.set_xlabel("optimizer step (taken, including discarded ones)")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.set_title(f"lit-llm: {Path(run_dir).name}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out


def _clip_spikes(ax, rows: list[dict], rollbacks: list[dict]) -> None:
    """Keep the kept timeline readable: spiked values that dwarf it are drawn as markers at the top edge."""
    steps, values = series(rows, "train/loss")
    spiked = {e["step"] + 1 for e in rollbacks} | {e["step"] for e in rollbacks}  # logged at step or step + 1
    kept = [v for s, v in zip(steps, values) if s not in spiked]
    if not kept or not rollbacks:
        return
    top = 1.3 * max(kept)
    off_scale = [s for s, v in zip(steps, values) if v > top]
    if off_scale:
        ax.set_ylim(0, top)
        ax.plot(
            off_scale, [top] * len(off_scale), "rv", markersize=7, clip_on=False, label="spike (off scale)"
        )
