#!/usr/bin/env bash
# Demo of the `ray job submit` entry point on ONE machine:
#   1. start a private Ray head (loopback only, free ports, its own temp dir, its own token),
#   2. create the demo tables with sample data (embedded catalog under a temp warehouse),
#   3. submit `python -m backfill backfill ...` as a Ray job and wait for it,
#   4. print `ray job status` and the job's logs, then stop what this script started.
#
# Usage:  scripts/ray_job_demo.sh            (from an environment with the project installed)
#   PYTHON=/path/to/venv/bin/python  interpreter of the venv that has the project (default: python3)
#   KEEP=1                           keep the temp dir (warehouse, Ray logs) afterwards
#   MAX_PARALLEL=2  NUM_CPUS=8       demo sizing
#   STOP_DEMO=1                      first `ray job stop` the job after its first commit (it
#                                    exits 7, partitions not started), then submit the same
#                                    command again: it resumes (one partition per MERGE, one
#                                    at a time, so there is something left to stop)
#   STOP_WAIT=600                    RAY_JOB_STOP_WAIT_TIME_S given to the job: how long
#                                    `ray job stop` lets running MERGEs finish before SIGKILL
#                                    (Ray's default is 3 s; safe either way, see README)
#
# Token authentication (Ray 2.60): `ray.init()` turns it on by default for the clusters it
# starts; `ray start --head` turns it on when RAY_AUTH_MODE=token is set or a token file
# already exists (~/.ray/auth_token). Clients (`ray job submit/status/logs`, `ray.init(address=)`)
# send the token only when RAY_AUTH_MODE=token is set in THEIR environment; otherwise the
# dashboard answers 401. This script makes its own token (RAY_AUTH_TOKEN_PATH, a 0600 file in
# its temp dir, so ~/.ray/auth_token is neither read nor written) and exports
# RAY_AUTH_MODE=token for the head and every client. The job's entrypoint inherits both
# variables from the head, so the backfill driver's `ray.init(address=RAY_ADDRESS)` works too.
#
# It never runs `ray stop` (that kills every Ray process of this user on the machine, including
# other people's clusters): the head runs as `ray start --block` in the background and is stopped
# by its PID (SIGTERM makes it shut down the processes it started).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
PYTHON="$(command -v "$PYTHON")"
BIN="$(dirname "$PYTHON")"
RAY="$BIN/ray"
[[ -x "$RAY" ]] || { echo "no ray CLI next to $PYTHON" >&2; exit 5; }
export PATH="$BIN:$PATH"
MAX_PARALLEL="${MAX_PARALLEL:-2}"
PER_MERGE=12
STOP_WAIT="${STOP_WAIT:-600}"
if [[ "${STOP_DEMO:-0}" == "1" ]]; then MAX_PARALLEL=1; PER_MERGE=1; fi
NUM_CPUS="${NUM_CPUS:-8}"
BACKFILL_ID="bf-demo-001"

WORK="$(mktemp -d /tmp/bfdemo.XXXXXX)"
WAREHOUSE="$WORK/warehouse"
RAY_TMP="$WORK/ray"
HEAD_LOG="$WORK/ray_head.log"
HEAD_PID=""

# ---------------------------------------------------------------- token authentication
export RAY_AUTH_MODE=token
export RAY_AUTH_TOKEN_PATH="$WORK/auth_token"
(umask 077 && "$PYTHON" -c 'import secrets; print(secrets.token_hex(32), end="")' > "$RAY_AUTH_TOKEN_PATH")
export RAY_USAGE_STATS_ENABLED=0

# ---------------------------------------------------------------- free loopback ports
read -r GCS_PORT DASH_PORT CLIENT_PORT AGENT_HTTP AGENT_GRPC RTENV_PORT METRICS_PORT NM_PORT OM_PORT < <(
  "$PYTHON" - <<'EOF'
import socket
socks = []
for _ in range(9):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks:
    s.close()
EOF
)
DASHBOARD="http://127.0.0.1:$DASH_PORT"

cleanup() {
  local rc=$?
  set +e
  echo
  echo "== cleanup"
  "$PYTHON" -m backfill catalog stop --warehouse "$WAREHOUSE" --log-level WARNING >/dev/null 2>&1 \
    && echo "embedded catalog stopped"
  if [[ -n "$HEAD_PID" ]] && kill -0 "$HEAD_PID" 2>/dev/null; then
    kill -TERM "$HEAD_PID"
    for _ in $(seq 60); do kill -0 "$HEAD_PID" 2>/dev/null || break; sleep 1; done
    kill -0 "$HEAD_PID" 2>/dev/null && kill -KILL "$HEAD_PID"
    echo "Ray head (pid $HEAD_PID) stopped"
  fi
  # Anything still running from this demo's temp dir (e.g. a JVM) was started by it.
  local left
  left="$(pgrep -f -- "$WORK" || true)"
  if [[ -n "$left" ]]; then
    echo "stopping leftover demo processes: $(echo $left)"
    kill -TERM $left 2>/dev/null
  fi
  if [[ "${KEEP:-0}" == "1" ]]; then
    echo "kept $WORK"
  else
    rm -rf "$WORK"
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== Ray head: gcs 127.0.0.1:$GCS_PORT, dashboard $DASHBOARD, temp dir $RAY_TMP"
"$RAY" start --head --block \
  --node-ip-address=127.0.0.1 --port="$GCS_PORT" --num-cpus="$NUM_CPUS" \
  --include-dashboard=true --dashboard-host=127.0.0.1 --dashboard-port="$DASH_PORT" \
  --ray-client-server-port="$CLIENT_PORT" --dashboard-agent-listen-port="$AGENT_HTTP" \
  --dashboard-agent-grpc-port="$AGENT_GRPC" --runtime-env-agent-port="$RTENV_PORT" \
  --metrics-export-port="$METRICS_PORT" --node-manager-port="$NM_PORT" \
  --object-manager-port="$OM_PORT" --temp-dir="$RAY_TMP" --disable-usage-stats \
  >"$HEAD_LOG" 2>&1 &
HEAD_PID=$!

# Ready when an authenticated job API call answers.
for i in $(seq 120); do
  if ! kill -0 "$HEAD_PID" 2>/dev/null; then
    echo "Ray head exited during start-up:" >&2; tail -40 "$HEAD_LOG" >&2; exit 5
  fi
  if "$RAY" job list --address "$DASHBOARD" >/dev/null 2>&1; then break; fi
  [[ $i == 120 ]] && { echo "dashboard not ready after 120 s" >&2; tail -40 "$HEAD_LOG" >&2; exit 5; }
  sleep 1
done
grep -iE "token auth|Ray runtime started" "$HEAD_LOG" | sed 's/^/   head: /' || true
echo "   head pid $HEAD_PID is up"

# Without the token the job API refuses (shows what token auth means for clients).
echo "== job API without RAY_AUTH_MODE=token:"
env -u RAY_AUTH_MODE -u RAY_AUTH_TOKEN_PATH HOME="$WORK" "$RAY" job list --address "$DASHBOARD" 2>&1 \
  | grep -iE "401|403|unauthori|forbidden|token" | head -2 | sed 's/^/   /' || true

echo "== setup: sample tables in $WAREHOUSE"
"$PYTHON" -m backfill setup --sample-data --warehouse "$WAREHOUSE" \
  --accounts 60 --months 8 --staged-accounts 10

SUBMISSION_ID="bf-demo-$(date +%Y%m%d-%H%M%S)"
# No --working-dir: the project is installed in the interpreter's environment on every
# node (on a launcher cluster, setup_commands install it). Add --working-dir . to ship an
# uninstalled checkout instead. The job's env_vars reach Ray's job supervisor too, which
# reads RAY_JOB_STOP_WAIT_TIME_S when `ray job stop` comes.
submit() {  # submission id, then extra `ray job submit` options
  local id="$1"; shift
  "$RAY" job submit --address "$DASHBOARD" --submission-id "$id" \
    --runtime-env-json "{\"env_vars\": {\"RAY_JOB_STOP_WAIT_TIME_S\": \"$STOP_WAIT\"}}" "$@" -- \
    "$PYTHON" -m backfill backfill --warehouse "$WAREHOUSE" --backfill-id "$BACKFILL_ID" \
    --max-parallel "$MAX_PARALLEL" --partitions-per-merge "$PER_MERGE"
}

if [[ "${STOP_DEMO:-0}" == "1" ]]; then
  STOPPED_ID="$SUBMISSION_ID-stopped"
  echo "== ray job submit --no-wait ($STOPPED_ID), then ray job stop after its first commit"
  submit "$STOPPED_ID" --no-wait
  for i in $(seq 900); do
    if "$RAY" job logs --address "$DASHBOARD" "$STOPPED_ID" 2>/dev/null | grep -q " committed attempt"; then
      break
    fi
    [[ $i == 900 ]] && { echo "no commit after 900 s" >&2; exit 1; }
    sleep 1
  done
  "$RAY" job stop --address "$DASHBOARD" "$STOPPED_ID"
  echo "== the stopped job's logs (last 12 lines)"
  "$RAY" job logs --address "$DASHBOARD" "$STOPPED_ID" 2>/dev/null | tail -12 || true
  if ! "$RAY" job logs --address "$DASHBOARD" "$STOPPED_ID" 2>/dev/null | grep -q "^stopped: "; then
    echo "the stopped job did not report a graceful stop" >&2; exit 1
  fi
  echo "== the same command again: it resumes"
fi

echo "== ray job submit ($SUBMISSION_ID)"
set +e
submit "$SUBMISSION_ID"
SUBMIT_RC=$?
set -e
echo "== ray job submit exit code: $SUBMIT_RC"

echo "== ray job status"
"$RAY" job status --address "$DASHBOARD" "$SUBMISSION_ID" || true
echo "== ray job logs (last 40 lines)"
"$RAY" job logs --address "$DASHBOARD" "$SUBMISSION_ID" 2>/dev/null | tail -40 || true
exit "$SUBMIT_RC"
