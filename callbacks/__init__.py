"""Lightning callbacks of the kit, installed as `lit_llm.callbacks` (one callback per file)."""

from lit_llm.callbacks.benchmark_eval import BenchmarkEval
from lit_llm.callbacks.final_checkpoint import FinalCheckpoint
from lit_llm.callbacks.progress import TrainingProgressBar
from lit_llm.callbacks.spike_rollback import LossSpikeRollback
from lit_llm.callbacks.throughput import TokenThroughput

__all__ = ["BenchmarkEval", "FinalCheckpoint", "LossSpikeRollback", "TokenThroughput", "TrainingProgressBar"]
