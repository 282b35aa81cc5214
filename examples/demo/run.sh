#!/usr/bin/env bash
# Starts the demo upstream and Weir in front of it; Ctrl-C stops both. Run through `make run`.
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=target/release

"$bin/weir-upstream" --listen 127.0.0.1:9001 --name demo &
upstream=$!
trap 'kill $upstream 2>/dev/null' EXIT

cat <<'TRY'

Weir is starting on http://127.0.0.1:8080 in front of the demo upstream on :9001. Try:

  curl -i http://127.0.0.1:8080/api/orders?page=2        # prefix stripped, x-api-key added, debug headers back
  curl -i -H 'Cookie: session=1' http://127.0.0.1:8080/api/me   # the cookie never reaches the upstream
  curl -i http://127.0.0.1:8080/json                     # empty chain: straight through
  curl -s http://127.0.0.1:8080/stream/10000000 | wc -c  # 10 MB streamed

TRY
"$bin/weir" run -c examples/demo/weir.toml
