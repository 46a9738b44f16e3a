#!/usr/bin/env bash
# Start ONE torchrun on this node; srun runs this script once per node of a SLURM job:
#
#   srun --ntasks-per-node=1 bash hpc/torchrun_node.sh SCRIPT.py [ARGS...]
#
# All nodes meet through a c10d rendezvous on the first host of $SLURM_JOB_NODELIST. torchrun then
# starts GPUS_PER_NODE ranks here and numbers the ranks of all nodes 0 .. NNODES*GPUS_PER_NODE-1.
# Variables (exported by the batch script; the defaults suit SLURM):
#   MASTER_ADDR    rendezvous host   (default: first host of $SLURM_JOB_NODELIST, via scontrol)
#   MASTER_PORT    rendezvous port   (default: derived from $SLURM_JOB_ID, so two jobs never clash)
#   NNODES         number of nodes   (default: $SLURM_NNODES)
#   GPUS_PER_NODE  ranks per node    (default: $SLURM_GPUS_ON_NODE, else 1)
#   PYTHON         the interpreter   (default: python)
set -euo pipefail

if [[ -z "${MASTER_ADDR:-}" ]]; then
    MASTER_ADDR="$(scontrol show hostnames "${SLURM_JOB_NODELIST:?not inside a SLURM job: set MASTER_ADDR}" | head -n 1)"
fi
JOB_ID="${SLURM_JOB_ID:-0}"
MASTER_PORT="${MASTER_PORT:-$((20000 + JOB_ID % 20000))}"
NNODES="${NNODES:-${SLURM_NNODES:-1}}"
GPUS_PER_NODE="${GPUS_PER_NODE:-${SLURM_GPUS_ON_NODE:-1}}"
PYTHON="${PYTHON:-python}"
export NNODES

echo "[$(hostname)] node ${SLURM_NODEID:-?}/${NNODES}: ${GPUS_PER_NODE} rank(s), rendezvous ${MASTER_ADDR}:${MASTER_PORT} id ${JOB_ID}" >&2
exec "$PYTHON" -m torch.distributed.run \
    --nnodes="$NNODES" \
    --nproc-per-node="$GPUS_PER_NODE" \
    --rdzv-backend=c10d \
    --rdzv-endpoint="${MASTER_ADDR}:${MASTER_PORT}" \
    --rdzv-id="$JOB_ID" \
    --max-restarts=0 \
    "$@"
