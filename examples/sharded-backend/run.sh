#!/usr/bin/env bash
# Scenario 4: the sharded backend. Starts shards a and b and Weir in front of them; Ctrl-C stops all three.
# Run it through `make run EXAMPLE=sharded-backend`, which builds everything first.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

# The two shards: each answers with its name and the request line it received.
upstream a 127.0.0.1:9401 --mode shard
upstream b 127.0.0.1:9402 --mode shard
weir
