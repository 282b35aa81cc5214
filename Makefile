# Weir: `make run` starts the ERP gateway example (`make run EXAMPLE=<name>` another of examples/), `make test`
# runs every test.
CARGO       ?= cargo
WASM_TARGET := wasm32-wasip2
WASM_OUT    := target/$(WASM_TARGET)/release
# Built-in plugins: copied beside the `weir` binaries, where `plugin = "NAME"` finds them.
BUILTINS    := path-rewrite headers jwt-auth token-auth gzip spa-router jwt-login upstream-jwt claim-router basic-auth rate-limit
# Everything built for Wasm: the built-ins, the test fixture and the README's example plugin.
WASM_CRATES := $(BUILTINS) weir-fixture add-header
HOST_CRATES := weir weir-upstream
# Plugin crates whose pure logic has native unit tests.
GUEST_TESTED := weir-sdk path-rewrite headers jwt-auth token-auth gzip spa-router jwt-login upstream-jwt claim-router basic-auth rate-limit

# The example `make run` starts: a directory of examples/ with a run.sh.
EXAMPLE     ?= erp-gateway

.PHONY: build plugins wasm-target run example test test-deps lint fmt clean bench bench-smoke

build: plugins
	$(CARGO) build --release $(addprefix -p ,$(HOST_CRATES))

wasm-target:
	@rustup target list --installed | grep -qx $(WASM_TARGET) || rustup target add $(WASM_TARGET)

plugins: wasm-target
	$(CARGO) build --release --target $(WASM_TARGET) $(addprefix -p ,$(WASM_CRATES))
	@for dir in target/release/plugins target/debug/plugins; do \
	  mkdir -p $$dir; \
	  for p in $(BUILTINS); do cp $(WASM_OUT)/$$(echo $$p | tr - _).wasm $$dir/; done; \
	done

# Starts the example's upstreams and Weir in the foreground; Ctrl-C stops everything it started.
run: example build
	examples/$(EXAMPLE)/run.sh

# Checked before the build, so that a mistyped name fails at once and says what there is.
example:
	@test -x examples/$(EXAMPLE)/run.sh || { \
	  echo "make run: there is no example '$(EXAMPLE)' yet (no examples/$(EXAMPLE)/run.sh)."; \
	  echo "Start one of these with make run EXAMPLE=<name>:" $$(cd examples && ls -d */run.sh | sed 's,/run.sh,,'); \
	  exit 2; }

# Tests check Weir against libraries nobody here wrote: PyJWT mints tokens, Python's gzip decodes bodies,
# and the edge suite (tests/edge.rs) runs its hostile requests against nginx too. The examples' READMEs are
# replayed with curl, and their steps may use jq (tests/examples.rs). The SPA example is driven in Debian's
# headless Chromium over the DevTools protocol, from Python with `websockets` (tests/spa_browser.rs). The
# rate limiter shares its counts through Debian's redis-server, which tests/rate_limit.rs starts and kills,
# and Python's `http_sfv` parses its RateLimit fields as RFC 9651 says. `prometheus_client`'s two parsers
# read /metrics (tests/metrics.rs). kubernetes-validate checks examples/kubernetes against the Kubernetes
# schemas, offline (tests/kubernetes.rs); HAProxy, in front of Weir as a TCP load balancer, sends
# the PROXY protocol header (tests/proxy_protocol.rs); `openssl s_client` shows what a handshake staples
# (tests/ocsp.rs).
test-deps:
	python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore 'pyjwt[crypto]==2.*' 'argon2-cffi==25.*' 'bcrypt==5.*' 'websockets==15.*' 'grpcio==1.*' 'http_sfv==0.9.*' 'prometheus-client==0.*' 'kubernetes-validate==1.37.*' 'pyyaml==6.*' 'h2==4.*'
	@[ -x /usr/bin/chromium ] || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }
	@command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light; }
	@command -v curl >/dev/null && command -v jq >/dev/null && command -v openssl >/dev/null || { \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl jq openssl; }
	@command -v redis-server >/dev/null || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server; }
	@command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy; }

test: plugins test-deps
	$(CARGO) test $(addprefix -p ,$(HOST_CRATES) $(GUEST_TESTED))

# Weir against nginx and against itself; writes bench/results.md, bench/results.json and the README table.
bench: build
	bench/setup.sh
	python3 bench/run.py

# Every benchmark row for a second, failing on any error: CI runs it so the harness never rots.
bench-smoke: build
	bench/setup.sh
	python3 bench/run.py --smoke

lint: wasm-target
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets $(addprefix -p ,$(HOST_CRATES)) -- -D warnings
	$(CARGO) clippy --target $(WASM_TARGET) $(addprefix -p ,$(WASM_CRATES)) -- -D warnings

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
