#!/usr/bin/env bash
# Several machines, each running this script with its NODE_RANK; they meet at a c10d rendezvous endpoint.
#   node 0:  NNODES=2 NODE_RANK=0 MASTER=10.0.0.1:29500 bash scripts/launch/torchrun_multi_node.sh CONFIG ...
#   node 1:  NNODES=2 NODE_RANK=1 MASTER=10.0.0.1:29500 bash scripts/launch/torchrun_multi_node.sh CONFIG ...
# The same command with MASTER=127.0.0.1:29500 and two agents on one machine is what
# tests/test_distributed.py::test_two_node_torchrun_launch_on_loopback runs.
set -euo pipefail
CONFIG=${1:?usage: torchrun_multi_node.sh CONFIG [lit-llm fit options]}; shift
NNODES=${NNODES:?set NNODES}; NODE_RANK=${NODE_RANK:?set NODE_RANK}; MASTER=${MASTER:?set MASTER=host:port}
NPROC=${NPROC:-$(python -c 'import torch; print(max(torch.cuda.device_count(), 1))')}
exec torchrun --nnodes "$NNODES" --node_rank "$NODE_RANK" --nproc_per_node "$NPROC" \
    --rdzv_backend c10d --rdzv_endpoint "$MASTER" --rdzv_id "${RDZV_ID:-lit-llm}" \
    -m lit_llm.cli fit --config "$CONFIG" --trainer.num_nodes "$NNODES" --trainer.devices "$NPROC" "$@"
