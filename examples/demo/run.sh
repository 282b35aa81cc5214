#!/usr/bin/env bash
# The demo: one upstream and Weir in front of it; Ctrl-C stops both. Run it through `make run EXAMPLE=demo`.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

upstream demo 127.0.0.1:9001
proxy=$(addr 127.0.0.1:8080)
cat <<TRY

Weir is starting on http://$proxy in front of the demo upstream. Try:

  curl -i http://$proxy/api/orders?page=2        # prefix stripped, x-api-key added, debug headers back
  curl -i -H 'Cookie: session=1' http://$proxy/api/me   # the cookie never reaches the upstream
  curl -i http://$proxy/json                     # empty chain: straight through
  curl -s http://$proxy/stream/10000000 | wc -c  # 10 MB streamed

TRY
weir
