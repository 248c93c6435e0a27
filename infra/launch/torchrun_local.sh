#!/usr/bin/env bash
# One machine, several processes: torchrun --standalone --nproc_per_node N -m flows.<stage>.
#
# usage: infra/launch/torchrun_local.sh <train_dit|pretrain_motion> [extra args for the stage]
#
# Knobs (environment):
#   NPROC        processes on this machine (default: GPUs seen by nvidia-smi, else 2 CPU ranks on gloo)
#   MOSA_PARAMS  params file the stage reads (default params.yaml)
#   TORCHRUN     torchrun executable (default torchrun)
#   DRY_RUN=1    print the command instead of running it
# Profiles: a GPU profile (e.g. MOSA_PROFILE=infra/profiles/cogvideox-5b.yaml) is applied to the
# params first, as `dvc exp run -S` overrides; see infra/launch/README.md. This script only reads
# MOSA_PARAMS.
set -euo pipefail

usage() { echo "usage: $0 <train_dit|pretrain_motion> [stage args...]" >&2; }

STAGE="${1:-}"
case "$STAGE" in
  train_dit | pretrain_motion) shift ;;
  "") echo "error: no stage given; expected train_dit or pretrain_motion" >&2; usage; exit 2 ;;
  *) echo "error: unknown stage '$STAGE'; expected train_dit or pretrain_motion" >&2; usage; exit 2 ;;
esac

cd "$(dirname "${BASH_SOURCE[0]}")/../.."

if [[ -z "${NPROC:-}" ]]; then
  if command -v nvidia-smi >/dev/null 2>&1 && gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU'); then
    NPROC="$gpus"
  else
    NPROC=2
  fi
fi
if ! [[ "$NPROC" =~ ^[1-9][0-9]*$ ]]; then
  echo "error: NPROC='$NPROC' is not a positive integer" >&2
  exit 2
fi
PARAMS="${MOSA_PARAMS:-params.yaml}"

cmd=("${TORCHRUN:-torchrun}" --standalone --nproc_per_node "$NPROC" -m "flows.$STAGE" --params "$PARAMS" "$@")

if [[ -n "${DRY_RUN:-}" ]]; then
  printf '%q ' "${cmd[@]}"
  echo
  exit 0
fi
if [[ ! -f "flows/$STAGE.py" ]]; then
  echo "error: flows/$STAGE.py not found: the $STAGE stage is not in this checkout" >&2
  exit 2
fi
if [[ ! -f "$PARAMS" ]]; then
  echo "error: params file '$PARAMS' not found (set MOSA_PARAMS)" >&2
  exit 2
fi
if [[ -z "${PREFECT_API_URL:-}" && "$NPROC" -gt 1 ]]; then
  echo "warning: PREFECT_API_URL is unset: each of the $NPROC ranks starts its own temporary Prefect" \
    "server; run \`make services\` and export PREFECT_API_URL=http://127.0.0.1:4200/api to share one" >&2
fi
exec "${cmd[@]}"
