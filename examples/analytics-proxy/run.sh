#!/usr/bin/env bash
# Scenario 2: the analytics server's /proxy. Starts the data platform (a mirror) and Weir; Ctrl-C stops both.
# Run it through `make run EXAMPLE=analytics-proxy`, which builds everything first.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

# The data platform: echoes what it received, so the README can show the token the proxy minted for it and
# that a binary body arrives byte for byte.
upstream platform 127.0.0.1:9201 --mode mirror
weir
