# Sourced by every examples/<name>/run.sh: starts the example's upstreams and Weir, prints the curl lines
# of the example's README, and stops everything it started (by PID) on Ctrl-C, SIGTERM or any exit.
#
# A run.sh is:
#
#   #!/usr/bin/env bash
#   set -euo pipefail
#   source "$(dirname "$0")/../lib.sh"
#   upstream shop 127.0.0.1:9301 --mode echo    # any number; each waits until it listens
#   weir                                         # the example's weir.toml, in the foreground
#
# Environment:
#   WEIR_BIN          the directory of `weir` and `weir-upstream` (default target/release, which `make run`
#                     builds); the README test passes the directory of its own build.
#   WEIR_PORT_OFFSET  added to every 127.0.0.1 (and localhost) port of the example: its weir.toml, its
#                     upstreams and the curl lines printed (default 0). The README test moves each example
#                     to free ports with it, so that tests in two checkouts never fight over a port.
#
# For run.sh: `$example_dir` is the example's directory, `$scratch` a directory for temporary files (removed
# on exit), `addr 127.0.0.1:PORT` the address moved by the offset; the working directory is the workspace.
# Write every address as 127.0.0.1:PORT (in weir.toml, run.sh and README.md), so that the offset finds it.
#
# Ports: the example of scenario N (the N-th row of the top README's "Scenarios") listens on 808N, its
# upstreams on 9N01, 9N02…; the demo on 8080 and 9001. The README test moves ports down by a multiple of
# 100 (at most 5,900), which keeps every port four digits long, so lengths in the README's outputs (the
# Content-Length of an echo of Host) still hold.

# Also here, so that a run.sh without them still stops at the first failure.
set -euo pipefail

example_dir=$(cd "$(dirname "$0")" && pwd)
example=$(basename "$example_dir")
cd "$example_dir/../.."
bin=${WEIR_BIN:-target/release}
offset=${WEIR_PORT_OFFSET:-0}
case $offset in
  -[0-9]* | [0-9]*) ;;
  *) echo "run.sh: WEIR_PORT_OFFSET must be a whole number, not '$offset'" >&2; exit 2 ;;
esac
for tool in weir weir-upstream; do
  if [ ! -x "$bin/$tool" ]; then
    echo "run.sh: $bin/$tool is missing: run \`make build\` (or \`make run EXAMPLE=$example\`) first" >&2
    exit 1
  fi
done

pids=()
scratch=$(mktemp -d)
# The config with moved ports sits beside the original, because weir resolves its relative paths
# (grants.dirs, plugin paths) from the config file's directory.
moved_config=""

stop_all() {
  trap - INT TERM EXIT
  local pid
  for pid in "${pids[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  # Waiting for each lets Weir finish its graceful shutdown before this script returns.
  for pid in "${pids[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$scratch"
  [ -z "$moved_config" ] || rm -f "$moved_config"
}
trap 'stop_all; exit 130' INT
trap 'stop_all; exit 143' TERM
trap stop_all EXIT

# stdin to stdout with every 127.0.0.1:PORT and localhost:PORT moved by the offset.
move_ports() {
  awk -v offset="$offset" '{
    out = ""; rest = $0
    while (match(rest, /(127\.0\.0\.1|localhost):[0-9]+/)) {
      found = substr(rest, RSTART, RLENGTH); colon = index(found, ":")
      out = out substr(rest, 1, RSTART - 1) substr(found, 1, colon) (substr(found, colon + 1) + offset)
      rest = substr(rest, RSTART + RLENGTH)
    }
    print out rest
  }'
}

# The address ADDR moved by the offset.
addr() {
  printf '%s\n' "$1" | move_ports
}

# upstream NAME ADDR [weir-upstream arguments…]: starts `weir-upstream --name NAME --listen ADDR …` and
# returns once it listens. Its first stdout line says so after the bind, so a port some other program holds
# makes this fail instead of sending the example's requests to that program.
upstream() {
  local name=$1 listen
  listen=$(addr "$2")
  shift 2
  local out="$scratch/upstream-${#pids[@]}"
  "$bin/weir-upstream" --name "$name" --listen "$listen" "$@" >"$out" &
  pids+=($!)
  local pid=$! waited
  for waited in $(seq 100); do
    if grep -q "listening on" "$out"; then
      cat "$out"
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || { echo "run.sh: upstream $name did not start" >&2; exit 1; }
    sleep 0.05
  done
  echo "run.sh: upstream $name is not listening on $listen after 5 s" >&2
  exit 1
}

# The `$ ` lines of the README's console blocks, as a newcomer would type them.
print_steps() {
  local readme="$example_dir/README.md"
  [ -f "$readme" ] || return 0
  echo
  echo "Weir is starting. Try the steps of examples/$example/README.md:"
  echo
  awk '
    /^[[:space:]]*```/ { inside = ($0 ~ /```console[[:space:]]*$/); next }
    inside && (/^[[:space:]]*\$ / || more) { sub(/^[[:space:]]*/, "  "); print; more = /\\$/ }
  ' "$readme" | move_ports
  echo
}

# weir [CONFIG]: prints the steps, then runs Weir with CONFIG (default the example's weir.toml) until it
# exits or this script is stopped. Weir runs in the background and the script waits for it, because bash
# runs a trap only once the foreground command returns: a SIGTERM would otherwise wait for Weir to exit.
weir() {
  local config=${1:-$example_dir/weir.toml}
  if [ "$offset" != 0 ]; then
    moved_config="$(dirname "$config")/.port-offset-$$.$(basename "$config")"
    move_ports <"$config" >"$moved_config"
    config=$moved_config
  fi
  print_steps
  "$bin/weir" run -c "$config" &
  pids+=($!)
  wait "$!"
}
