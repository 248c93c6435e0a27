#!/usr/bin/env bash
# Install Debian's PostgreSQL server for the team stack (`make services-team`), if missing.
# Idempotent: does nothing when pg_ctl and initdb of an installed PostgreSQL exist under
# /usr/lib/postgresql/<version>/bin (Debian's layout). Needs root (or sudo) and apt-get.
# infra/services/team.py runs its own cluster with these binaries (initdb + pg_ctl on a loopback
# port, data under .services/team/); the package's own cluster "main" is never started by it.
set -euo pipefail

find_bin() {
  local dir
  for dir in /usr/lib/postgresql/*/bin; do
    if [ -x "$dir/pg_ctl" ] && [ -x "$dir/initdb" ]; then
      echo "$dir"
    fi
  done | sort -V | tail -n 1
}

BIN_DIR="$(find_bin)"
if [ -n "$BIN_DIR" ]; then
  echo "postgresql already installed: $("$BIN_DIR/pg_ctl" --version) ($BIN_DIR)"
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "install_postgres.sh: apt-get not found; install the PostgreSQL server with your system's" \
       "package manager so that pg_ctl and initdb exist (or set MOSA_TEAM_PG_BIN to their folder)" >&2
  exit 1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
  else
    echo "install_postgres.sh: run as root or install sudo (apt-get needs root)" >&2
    exit 1
  fi
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# postgresql: the server of Debian's supported version, its client (psql) and the `postgres` user.
$SUDO apt-get install -y -qq --no-install-recommends postgresql

BIN_DIR="$(find_bin)"
if [ -z "$BIN_DIR" ]; then
  echo "install_postgres.sh: postgresql installed, but no pg_ctl/initdb under /usr/lib/postgresql/*/bin" >&2
  exit 1
fi
echo "postgresql installed: $("$BIN_DIR/pg_ctl" --version) ($BIN_DIR)"
