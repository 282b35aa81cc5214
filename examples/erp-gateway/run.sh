#!/usr/bin/env bash
# Scenario 1: the ERP partner gateway. Starts the two ERP services and Weir in front of them; Ctrl-C stops
# all three. Run it through `make run` (this is its default example), which builds everything first.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

# Each service requires its own key, which only weir.toml and these lines know: the clients never get it.
upstream transactions 127.0.0.1:9101 --mode erp-transactions --api-key transactions-secret-key-123
upstream inventory 127.0.0.1:9102 --mode erp-inventory --api-key inventory-secret-key-456
weir
