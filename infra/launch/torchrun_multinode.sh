#!/usr/bin/env bash
# Several machines without ssh or SLURM: run this script once on every node, each with its own
# NODE_RANK; torchrun starts NPROC_PER_NODE ranks there and they meet at MASTER_ADDR:MASTER_PORT
# (node 0 hosts the rendezvous store, static rendezvous).
#
# usage: NNODES=2 NODE_RANK=<0|1> MASTER_ADDR=<node 0> infra/launch/torchrun_multinode.sh \
#            <train_dit|pretrain_motion> [extra args for the stage]
#
# Knobs (environment):
#   NNODES          number of nodes (required)
#   NODE_RANK       this node's rank, 0 .. NNODES-1 (required)
#   MASTER_ADDR     address of node 0, reachable from every node (required)
#   MASTER_PORT     rendezvous port on node 0 (default 29500)
#   NPROC_PER_NODE  processes on this node (default: GPUs seen by nvidia-smi, else 1 CPU rank on gloo)
#   MOSA_PARAMS     params file the stage reads (default params.yaml, relative to MOSA_WORKDIR)
#   MOSA_WORKDIR    folder the stage runs in (default: the repository root): relative paths of the
#                   params, metrics/ and mlflow.db resolve there; the repository goes on PYTHONPATH
#   TORCHRUN        torchrun executable (default torchrun)
#   DRY_RUN=1       print the command instead of running it
# Every node needs the same code, virtualenv and inputs, and the checkpoint folder must be one shared
# folder (rank 0 seals what every rank wrote). Profiles: a GPU profile (e.g.
# MOSA_PROFILE=infra/profiles/cogvideox-5b.yaml) is applied to the params first, as `dvc exp run -S`
# overrides; see infra/launch/README.md. This script only reads MOSA_PARAMS.
set -euo pipefail

usage() {
  echo "usage: NNODES=N NODE_RANK=R MASTER_ADDR=HOST $0 <train_dit|pretrain_motion> [stage args...]" >&2
}

STAGE="${1:-}"
case "$STAGE" in
  train_dit | pretrain_motion) shift ;;
  "") echo "error: no stage given; expected train_dit or pretrain_motion" >&2; usage; exit 2 ;;
  *) echo "error: unknown stage '$STAGE'; expected train_dit or pretrain_motion" >&2; usage; exit 2 ;;
esac

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

for knob in NNODES NODE_RANK MASTER_ADDR; do
  if [[ -z "${!knob:-}" ]]; then
    echo "error: $knob is not set; every node needs NNODES, NODE_RANK and MASTER_ADDR" >&2
    usage
    exit 2
  fi
done
if ! [[ "$NNODES" =~ ^[1-9][0-9]*$ ]]; then
  echo "error: NNODES='$NNODES' is not a positive integer" >&2
  exit 2
fi
if ! [[ "$NODE_RANK" =~ ^(0|[1-9][0-9]*)$ ]] || ((NODE_RANK >= NNODES)); then
  echo "error: NODE_RANK='$NODE_RANK' must be an integer in 0..$((NNODES - 1)) (NNODES=$NNODES)" >&2
  exit 2
fi
if ! [[ "$MASTER_ADDR" =~ ^[A-Za-z0-9._:-]+$ ]]; then
  echo "error: MASTER_ADDR='$MASTER_ADDR' is not a host name or address" >&2
  exit 2
fi
MASTER_PORT="${MASTER_PORT:-29500}"
if ! [[ "$MASTER_PORT" =~ ^[1-9][0-9]{0,4}$ ]] || ((MASTER_PORT > 65535)); then
  echo "error: MASTER_PORT='$MASTER_PORT' is not a port number (1..65535)" >&2
  exit 2
fi
if [[ -z "${NPROC_PER_NODE:-}" ]]; then
  if command -v nvidia-smi >/dev/null 2>&1 && gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU'); then
    NPROC_PER_NODE="$gpus"
  else
    NPROC_PER_NODE=1
  fi
fi
if ! [[ "$NPROC_PER_NODE" =~ ^[1-9][0-9]*$ ]]; then
  echo "error: NPROC_PER_NODE='$NPROC_PER_NODE' is not a positive integer" >&2
  exit 2
fi
WORKDIR="${MOSA_WORKDIR:-$REPO}"
PARAMS="${MOSA_PARAMS:-params.yaml}"

cmd=(
  "${TORCHRUN:-torchrun}" --nnodes "$NNODES" --node_rank "$NODE_RANK" --nproc_per_node "$NPROC_PER_NODE"
  --master_addr "$MASTER_ADDR" --master_port "$MASTER_PORT" -m "flows.$STAGE" --params "$PARAMS" "$@"
)

if [[ -n "${DRY_RUN:-}" ]]; then
  printf '%q ' "${cmd[@]}"
  echo
  exit 0
fi
if [[ ! -f "$REPO/flows/$STAGE.py" ]]; then
  echo "error: flows/$STAGE.py not found: the $STAGE stage is not in this checkout" >&2
  exit 2
fi
if [[ ! -d "$WORKDIR" ]]; then
  echo "error: MOSA_WORKDIR '$WORKDIR' is not a folder" >&2
  exit 2
fi
cd "$WORKDIR"
if [[ ! -f "$PARAMS" ]]; then
  echo "error: params file '$PARAMS' not found in $PWD (set MOSA_PARAMS)" >&2
  exit 2
fi
if [[ -z "${PREFECT_API_URL:-}" ]]; then
  echo "warning: PREFECT_API_URL is unset: every rank starts its own temporary Prefect server; point" \
    "it (and MLFLOW_TRACKING_URI) at shared servers (make services, infra/compose)" >&2
fi
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
echo "mosa $STAGE: node $NODE_RANK of $NNODES, $NPROC_PER_NODE rank(s) here, rendezvous $MASTER_ADDR:$MASTER_PORT" >&2
exec "${cmd[@]}"
