#!/usr/bin/env bash
# Scenario 3: the token-authenticated service. Starts its upstream and Weir; Ctrl-C stops both.
# Run it through `make run EXAMPLE=token-service`, which builds everything first.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

# The service: echoes what it received, so the README can show the token never reaches it.
upstream service 127.0.0.1:9301 --mode mirror
weir
