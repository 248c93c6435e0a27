#!/usr/bin/env bash
# Several machines with the DeepSpeed launcher (pdsh over ssh by default): the same stage module
# on every GPU of every host in the hostfile.
#
# usage: infra/launch/deepspeed_multinode.sh <train_dit|pretrain_motion> [extra args for the stage]
#
# Knobs (environment):
#   HOSTFILE     DeepSpeed hostfile, "<host> slots=<gpus>" per line (default infra/launch/hostfile;
#                start from infra/launch/hostfile.example)
#   NUM_NODES    nodes to use, the first N of the hostfile (default: all)
#   NUM_GPUS     GPUs per node (default: the smallest slots= of the hostfile)
#   MASTER_ADDR  address of node 0 (default: first host of the hostfile)
#   MASTER_PORT  rendezvous port (default 29500)
#   LAUNCHER     pdsh | openmpi | mvapich | slurm | ... (default pdsh)
#   MOSA_PARAMS  params file the stage reads (default params.yaml)
#   DEEPSPEED    deepspeed executable (default deepspeed)
#   DRY_RUN=1    print the command instead of running it
# Variables the ranks need on remote nodes (PREFECT_API_URL, MLFLOW_TRACKING_URI, NCCL_*, ...) go in
# ./.deepspeed_env or ~/.deepspeed_env (KEY=VALUE lines); DeepSpeed exports them on every node.
# Profiles: a GPU profile (e.g. MOSA_PROFILE=infra/profiles/cogvideox-5b.yaml) is applied to the
# params first, as `dvc exp run -S` overrides; see infra/launch/README.md.
set -euo pipefail

usage() { echo "usage: $0 <train_dit|pretrain_motion> [stage args...]" >&2; }

STAGE="${1:-}"
case "$STAGE" in
  train_dit | pretrain_motion) shift ;;
  "") echo "error: no stage given; expected train_dit or pretrain_motion" >&2; usage; exit 2 ;;
  *) echo "error: unknown stage '$STAGE'; expected train_dit or pretrain_motion" >&2; usage; exit 2 ;;
esac

cd "$(dirname "${BASH_SOURCE[0]}")/../.."

HOSTFILE="${HOSTFILE:-infra/launch/hostfile}"
if [[ ! -f "$HOSTFILE" ]]; then
  echo "error: hostfile '$HOSTFILE' not found; copy infra/launch/hostfile.example and set HOSTFILE" >&2
  exit 2
fi
hosts=()
min_slots=""
while read -r line; do
  line="${line%%#*}"
  [[ -z "${line//[[:space:]]/}" ]] && continue
  if ! [[ "$line" =~ ^[[:space:]]*([A-Za-z0-9._-]+)[[:space:]]+slots=([1-9][0-9]*)[[:space:]]*$ ]]; then
    echo "error: bad hostfile line in $HOSTFILE: '$line' (expected '<host> slots=<gpus>')" >&2
    exit 2
  fi
  hosts+=("${BASH_REMATCH[1]}")
  slots="${BASH_REMATCH[2]}"
  if [[ -z "$min_slots" || "$slots" -lt "$min_slots" ]]; then min_slots="$slots"; fi
done <"$HOSTFILE"
if [[ ${#hosts[@]} -eq 0 ]]; then
  echo "error: hostfile '$HOSTFILE' lists no hosts" >&2
  exit 2
fi

NUM_NODES="${NUM_NODES:-${#hosts[@]}}"
NUM_GPUS="${NUM_GPUS:-$min_slots}"
for knob in NUM_NODES NUM_GPUS; do
  if ! [[ "${!knob}" =~ ^[1-9][0-9]*$ ]]; then
    echo "error: $knob='${!knob}' is not a positive integer" >&2
    exit 2
  fi
done
if [[ "$NUM_NODES" -gt ${#hosts[@]} ]]; then
  echo "error: NUM_NODES=$NUM_NODES but $HOSTFILE lists only ${#hosts[@]} hosts" >&2
  exit 2
fi
MASTER_ADDR="${MASTER_ADDR:-${hosts[0]}}"
MASTER_PORT="${MASTER_PORT:-29500}"
PARAMS="${MOSA_PARAMS:-params.yaml}"

# --no_local_rank: ranks read LOCAL_RANK from the environment; the stage CLI takes only its own args.
cmd=(
  "${DEEPSPEED:-deepspeed}" --hostfile "$HOSTFILE" --num_nodes "$NUM_NODES" --num_gpus "$NUM_GPUS"
  --master_addr "$MASTER_ADDR" --master_port "$MASTER_PORT" --launcher "${LAUNCHER:-pdsh}"
  --no_local_rank --module "flows.$STAGE" --params "$PARAMS" "$@"
)

if [[ -n "${DRY_RUN:-}" ]]; then
  printf '%q ' "${cmd[@]}"
  echo
  exit 0
fi
if [[ ! -f "flows/$STAGE.py" ]]; then
  echo "error: flows/$STAGE.py not found: the $STAGE stage is not in this checkout" >&2
  exit 2
fi
if [[ -z "${PREFECT_API_URL:-}" ]]; then
  echo "warning: PREFECT_API_URL is unset: every rank would start its own temporary Prefect server;" \
    "point it (and MLFLOW_TRACKING_URI) at shared servers (infra/compose)" >&2
fi
exec "${cmd[@]}"
