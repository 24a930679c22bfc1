#!/usr/bin/env bash
# One machine, N GPUs (or CPU processes), launched by torchrun; Lightning picks up torchrun's environment.
#   bash scripts/launch/torchrun_single_node.sh configs/experiments/gpt2_124m_gpu.yaml --data.path DIR --trainer.default_root_dir RUN
set -euo pipefail
CONFIG=${1:?usage: torchrun_single_node.sh CONFIG [lit-llm fit options]}; shift
NPROC=${NPROC:-$(python -c 'import torch; print(max(torch.cuda.device_count(), 1))')}
exec torchrun --standalone --nproc_per_node "$NPROC" -m lit_llm.cli fit --config "$CONFIG" \
    --trainer.devices "$NPROC" --trainer.num_nodes 1 --trainer.strategy "${STRATEGY:-ddp}" "$@"
