#!/usr/bin/env bash
# What the benchmark needs beyond the build: wrk (load), h2load (HTTP/2 load), nginx (the peer), openssl (the
# TLS rows' certificate), Redis (the rate limiter's store), PyJWT (tokens).
set -euo pipefail
missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v h2load >/dev/null || missing+=(nghttp2-client)
command -v openssl >/dev/null || missing+=(openssl)
command -v nginx >/dev/null || missing+=(nginx-light)
command -v taskset >/dev/null || missing+=(util-linux)
command -v redis-server >/dev/null || missing+=(redis-server)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi
python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore 'pyjwt[crypto]==2.*'
