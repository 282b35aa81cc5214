#!/usr/bin/env bash
# Scenario 5: the single-page app behind a JWT. Starts the app's server and Weir; Ctrl-C stops both.
# Run it through `make run EXAMPLE=spa`, which builds everything first, then open http://127.0.0.1:8085/
# in a browser (user alice, password wonderland).
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

# The app: its two pages, script and style sheet, and an echo of any `…_api` call.
upstream app 127.0.0.1:9501 --mode spa
weir
