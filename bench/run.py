#!/usr/bin/env python3
"""`make bench`: Weir against nginx and against itself, in one run, on one machine.

Every row proxies the same loopback upstream (`weir-upstream`). Load comes from wrk with fixed connections
and duration; the proxy is pinned to core 0, wrk and the upstream to core 1 where the machine has two
cores. Results go to bench/results.md and bench/results.json, and the summary table into the README.

Ratios, not absolute numbers, are what compare across machines: this machine is small and noisy.

`--smoke` runs every row for a second and fails if any row served errors: CI runs it so the harness
never rots.
"""

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / "target" / "release"
PLUGINS = BIN / "plugins"
JWT_SECRET = "bench-secret-that-is-long-enough-for-hs256"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=10.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


def pinned(core):
    """A taskset prefix for one core, when the machine has the cores to spare."""
    if os.cpu_count() and os.cpu_count() >= 2 and shutil.which("taskset"):
        return ["taskset", "-c", str(core)]
    return []


class Process:
    def __init__(self, argv, core, log):
        self.log = open(log, "wb")
        self.proc = subprocess.Popen(pinned(core) + argv, stdout=self.log, stderr=subprocess.STDOUT)

    def peak_rss(self):
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            pass
        return None

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def mint_tokens(work):
    """HS256 and RS256 tokens made by PyJWT, and the RSA public key for the RS256 rows."""
    import jwt
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    claims = {"sub": "bench", "user_id": 7, "exp": int(time.time()) + 3600}
    hs = jwt.encode(claims, JWT_SECRET, algorithm="HS256")
    rs = jwt.encode(claims, key, algorithm="RS256")
    return hs, rs, public_pem


def weir_config(upstream_port, chain, extra_server=""):
    return f"""[server]
listen = "127.0.0.1:{{port}}"
workers = 1
access_log = false
log_level = "warn"
{extra_server}
[upstreams.u]
url = "http://127.0.0.1:{upstream_port}"

[[routes]]
upstream = "u"
{chain}
"""


def plugin(name, config, extra=""):
    return f'[[routes.plugins]]\nplugin = "{name}"\nconfig = {config}\n{extra}'


def nginx_config(work, upstream_port, verifier_port, mode):
    location = {
        "proxy": "proxy_pass http://up;",
        "auth": "auth_request /_auth; proxy_pass http://up;",
        "gzip": "gzip on; gzip_comp_level 6; gzip_types text/plain application/json; gzip_min_length 1024; proxy_pass http://up;",
    }[mode]
    return f"""worker_processes 1;
daemon off;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    upstream up {{ server 127.0.0.1:{upstream_port}; keepalive 128; }}
    upstream verifier {{ server 127.0.0.1:{verifier_port}; keepalive 128; }}
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    server {{
        listen 127.0.0.1:{{port}};
        location = /_auth {{
            internal;
            proxy_pass http://verifier/verify;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
        }}
        location / {{ {location} }}
    }}
}}
"""


def wrk(port, path, duration, connections, headers):
    argv = pinned(1) + ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency"]
    for h in headers:
        argv += ["-H", h]
    argv.append(f"http://127.0.0.1:{port}{path}")
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)

    def percentile(p):
        m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)", out, re.M)
        if not m:
            return None
        value, unit = float(m.group(1)), m.group(2)
        return value * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    return {
        "rps": rps,
        "p50_ms": percentile(50),
        "p99_ms": percentile(99),
        "errors": int(errors.group(1)) if errors else 0,
        "socket_errors": socket_errors.group(1) if socket_errors else None,
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--smoke", action="store_true", help="one second per row; fail on any error")
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    duration = 1 if args.smoke else args.duration
    out_dir = ROOT / ("target/bench-smoke" if args.smoke else "bench")
    out_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="weir-bench-"))

    hs, rs, rsa_public = mint_tokens(work)
    (work / "rsa.pem").write_text(rsa_public)
    upstream_port, verifier_port = free_port(), free_port()
    upstream = Process([str(BIN / "weir-upstream"), "--listen", f"127.0.0.1:{upstream_port}", "--name", "bench"], 1, work / "upstream.log")
    verifier = Process(
        [str(BIN / "weir-upstream"), "--listen", f"127.0.0.1:{verifier_port}", "--name", "verifier", "--jwt-secret", JWT_SECRET],
        1,
        work / "verifier.log",
    )
    wait_port(upstream_port)
    wait_port(verifier_port)

    bearer_hs = f"Authorization: Bearer {hs}"
    bearer_rs = f"Authorization: Bearer {rs}"
    gzip_ok = "Accept-Encoding: gzip"
    jwt_hs = plugin("jwt-auth", f'{{ keys = [{{ alg = "HS256", secret = "{JWT_SECRET}" }}] }}')
    jwt_rs = plugin("jwt-auth", f'{{ keys = [{{ alg = "RS256", pem = """{rsa_public}""" }}] }}')
    jwt_rs_uncached = plugin("jwt-auth", f'{{ keys = [{{ alg = "RS256", pem = """{rsa_public}""" }}], cache_size = 0 }}')
    rewrite = plugin("path-rewrite", '{ strip_prefix = "/api" }')
    headers = plugin("headers", '{ request = { set = { "x-api-key" = "secret" } }, response = { set = { "x-upstream" = "{upstream}" } } }')
    token = plugin("token-auth", '{ tokens = { bench = "bench-token" } }')
    gzip = plugin("gzip", "{ level = 6 }")
    full = jwt_hs + rewrite + headers
    fresh = "".join(p + 'isolation = "request"\n' for p in [jwt_hs, rewrite, headers])

    rows = [
        # name, kind, weir chain or nginx mode, path, request headers
        ("upstream directly", "direct", None, "/json", []),
        ("nginx proxy_pass", "nginx", "proxy", "/json", []),
        ("nginx + auth_request (native HS256 verifier)", "nginx", "auth", "/json", [bearer_hs]),
        ("nginx gzip on, level 6 (64 KiB text)", "nginx", "gzip", "/text/65536", [gzip_ok]),
        ("weir, empty chain", "weir", "", "/json", []),
        ("weir + headers", "weir", headers, "/json", []),
        ("weir + path-rewrite", "weir", rewrite, "/api/json", []),
        ("weir + jwt-auth HS256", "weir", jwt_hs, "/json", [bearer_hs]),
        ("weir + jwt-auth RS256", "weir", jwt_rs, "/json", [bearer_rs]),
        ("weir + jwt-auth RS256, token cache off", "weir", jwt_rs_uncached, "/json", [bearer_rs]),
        ("weir + token-auth", "weir", token, "/json", ["Authorization: Token bench-token"]),
        ("weir + gzip level 6 (64 KiB text)", "weir", gzip, "/text/65536", [gzip_ok]),
        ("weir, full chain (jwt HS256 + path-rewrite + headers)", "weir", full, "/api/json", [bearer_hs]),
        ("weir, full chain + gzip (64 KiB text)", "weir", full + gzip, "/api/text/65536", [bearer_hs, gzip_ok]),
        ("weir, full chain, isolation = request", "weir", fresh, "/api/json", [bearer_hs]),
        ("weir, full chain, concurrency_support = true", "weir", ("concurrency", full), "/api/json", [bearer_hs]),
    ]

    # Rows are run in interleaved rounds and each row's median round is kept: on a noisy machine a slow
    # minute then hurts every row a little instead of one row a lot.
    rounds = 1 if args.smoke else args.rounds
    runs = {name: [] for name, *_ in rows}
    for round_no in range(rounds):
        for index, (name, kind, spec, path, hdrs) in enumerate(rows):
            row = run_row(work, index, kind, spec, path, hdrs, upstream_port, verifier_port, duration, args.connections)
            runs[name].append(row)
            print(f"[{round_no + 1}/{rounds}] {name:58} {row['rps']:>10.0f} req/s  errors={row['errors']}", flush=True)
    results, failures = [], []
    for name, *_ in rows:
        ordered = sorted(runs[name], key=lambda r: r["rps"])
        row = dict(ordered[len(ordered) // 2])
        row["name"] = name
        row["rps_rounds"] = [round(r["rps"]) for r in runs[name]]
        rss = [r["peak_rss_mb"] for r in runs[name] if r["peak_rss_mb"] is not None]
        row["peak_rss_mb"] = max(rss) if rss else None
        if any(r["errors"] != 0 or r["rps"] == 0 for r in runs[name]):
            failures.append(name)
        results.append(row)

    upstream.stop()
    verifier.stop()
    by_name = {r["name"]: r for r in results}
    empty = by_name["weir, empty chain"]["rps"] or 1
    nginx = by_name["nginx proxy_pass"]["rps"] or 1
    for r in results:
        r["vs_empty_chain"] = round(r["rps"] / empty, 3)
        r["vs_nginx"] = round(r["rps"] / nginx, 3)

    meta = machine()
    (out_dir / "results.json").write_text(json.dumps({"machine": meta, "duration_s": duration, "rounds": rounds, "connections": args.connections, "rows": results}, indent=2) + "\n")
    table = render(results) + "\n" + targets(by_name)
    (out_dir / "results.md").write_text(
        "# Weir benchmark\n\n"
        + "\n".join(f"- {k}: {v}" for k, v in meta.items())
        + f"\n- wrk: 1 thread, {args.connections} connections, {duration} s per row after a 1 s warm-up, {rounds} interleaved rounds, the median round kept; proxy on core 0, wrk and upstream on core 1\n\n"
        + "Ratios, not absolute numbers, compare across machines.\n\n"
        + table
        + analysis()
    )
    if not args.smoke:
        update_readme(table, meta)
    shutil.rmtree(work, ignore_errors=True)
    if failures:
        print("rows with errors: " + ", ".join(failures), file=sys.stderr)
        sys.exit(1)


# The throughput targets: (what, row, peer row, least ratio).
TARGETS = [
    ("empty chain vs nginx proxy_pass", "weir, empty chain", "nginx proxy_pass", 1.0),
    ("full chain vs empty chain", "weir, full chain (jwt HS256 + path-rewrite + headers)", "weir, empty chain", 0.7),
    ("jwt-auth HS256 vs nginx + auth_request", "weir + jwt-auth HS256", "nginx + auth_request (native HS256 verifier)", 1.25),
    ("gzip vs nginx gzip on", "weir + gzip level 6 (64 KiB text)", "nginx gzip on, level 6 (64 KiB text)", 1.0),
]


def targets(by_name):
    lines = ["| target | ratio | wanted | |", "|---|---:|---:|---|"]
    for what, row, peer, least in TARGETS:
        ratio = by_name[row]["rps"] / (by_name[peer]["rps"] or 1)
        lines.append(f"| {what} | {ratio:.2f} | ≥ {least:.2f} | {'met' if ratio >= least else 'missed'} |")
    return "\n".join(lines) + "\n"


def analysis():
    """The hand-written analysis of the targets missed, kept in bench/analysis.md."""
    path = ROOT / "bench" / "analysis.md"
    return "\n" + path.read_text() if path.exists() else ""


def run_row(work, index, kind, spec, path, hdrs, upstream_port, verifier_port, duration, connections):
    """One row once: its proxy started fresh, a warm-up, then the measured wrk run."""
    port = free_port()
    proxy = None
    if kind == "direct":
        port = upstream_port
    elif kind == "nginx":
        conf = work / f"nginx-{spec}.conf"
        conf.write_text(nginx_config(work, upstream_port, verifier_port, spec).replace("{port}", str(port)))
        proxy = Process(["nginx", "-p", str(work), "-c", str(conf)], 0, work / f"nginx-{spec}.log")
    else:
        extra = ""
        if isinstance(spec, tuple):
            extra, spec = "concurrency_support = true\n", spec[1]
        conf = work / f"weir-{index}.toml"
        conf.write_text(weir_config(upstream_port, spec, extra).replace("{port}", str(port)))
        proxy = Process([str(BIN / "weir"), "run", "-c", str(conf)], 0, work / f"weir-{index}.log")
    try:
        wait_port(port)
        wrk(port, path, 1, 8, hdrs)  # warm-up: pools filled, code paged in
        row = wrk(port, path, duration, connections, hdrs)
    except Exception as e:  # a row that cannot run is reported, not hidden
        row = {"rps": 0.0, "p50_ms": None, "p99_ms": None, "errors": -1, "socket_errors": str(e)}
    row["peak_rss_mb"] = round(proxy.peak_rss() / 2**20, 1) if proxy and proxy.peak_rss() else None
    if proxy:
        proxy.stop()
    return row


def render(results):
    lines = [
        "| row | req/s | rounds (req/s) | p50 ms | p99 ms | peak RSS MB | × empty chain | × nginx proxy_pass |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    fmt = lambda v: "–" if v is None else (f"{v:.2f}" if isinstance(v, float) else str(v))
    for r in results:
        lines.append(
            f"| {r['name']} | {r['rps']:.0f} | {' / '.join(map(str, r['rps_rounds']))} | {fmt(r['p50_ms'])} | {fmt(r['p99_ms'])} | {fmt(r['peak_rss_mb'])} | {r['vs_empty_chain']:.2f} | {r['vs_nginx']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def machine():
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    nginx = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip()
    weir = subprocess.run([str(BIN / "weir"), "--version"], capture_output=True, text=True).stdout.strip()
    return {
        "date": datetime.date.today().isoformat(),
        "cpu": f"{os.cpu_count()} cores, {model}",
        "kernel": platform.release(),
        "weir": weir,
        "nginx": nginx,
    }


def update_readme(table, meta):
    readme = ROOT / "README.md"
    text = readme.read_text()
    start, end = "<!-- bench:start -->", "<!-- bench:end -->"
    if start not in text:
        return
    body = f"{start}\nMeasured {meta['date']} on {meta['cpu']} (see bench/results.md):\n\n{table}{end}"
    text = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: body, text, flags=re.S)
    readme.write_text(text)


if __name__ == "__main__":
    main()
