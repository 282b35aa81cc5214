//! The TOML config file: typed, with the checks inside the types, so that the parser points at the line.
//!
//! Parsing here is pure: nothing is loaded or compiled. Ranges and cross-field rules live in
//! [`Source::validate`], which reports every problem at once, each with file, line and field; the ranges
//! themselves, and why each end is where it is, are in [`limits`].

mod access_log;
pub mod limits;
pub mod peers;
pub mod proxy_protocol;
pub mod real_ip;
pub mod request_id;
pub mod store;
pub mod tls;
mod units;
pub mod upstream;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::normalise::{self, PathPolicy};
pub use access_log::AccessLog;
use limits::{Bounds, Limit};
pub use units::{
    ByteSize, HeaderNameText, HostPattern, HttpGrant, MethodName, PathRegex, UpstreamUrl,
};
pub use upstream::UpstreamConfig;

/// The whole config file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub upstreams: BTreeMap<String, Spanned<UpstreamConfig>>,
    #[serde(default)]
    pub routes: Vec<Spanned<RouteConfig>>,
    /// The admin listener (`/healthz`, `/metrics`); none unless the table is there.
    pub admin: Option<AdminConfig>,
    /// Where the state that plugins granted `grants.store` share lives.
    #[serde(default)]
    pub store: store::StoreConfig,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Keep it on loopback or a private network: it tells what the proxy runs.
    pub listen: SocketAddr,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// A `tracing` filter (`info`, `weir=debug`); `RUST_LOG` wins when set.
    pub log_level: String,
    /// One line per request, as text or JSON, whatever `log_level` says.
    pub access_log: AccessLog,
    /// Where built-in plugins are found; defaults to `plugins/` beside the `weir` binary.
    pub plugin_dir: Option<PathBuf>,
    /// Where compiled plugins are cached; defaults to `$XDG_CACHE_HOME/weir` or `~/.cache/weir`.
    pub cache_dir: Option<PathBuf>,
    /// Tokio worker threads; defaults to the number of cores. Range: [`limits::WORKERS`].
    pub workers: Option<usize>,
    /// Instance slots the sandbox reserves across every plugin entry. By default each entry's
    /// `max_instances`, added up, twice, which no running proxy can exceed. Range:
    /// [`limits::MAX_INSTANCES`], and no fewer than the entries need.
    pub max_instances: Option<u32>,
    /// The largest memory any plugin may be granted (`memory` per plugin stays below it). Range:
    /// [`limits::PLUGIN_MEMORY`].
    pub max_plugin_memory: ByteSize,
    /// Wasmtime's component-model concurrency machinery. Weir's contract has no `async func`, and turning it
    /// off makes every plugin call cheaper (see README, "Design").
    pub concurrency_support: bool,
    /// How long a graceful shutdown waits for requests in flight. Range: [`limits::SHUTDOWN_TIMEOUT`].
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// What a `%2F` or `%5C` (an escaped `/` or `\`) in a request path does; see README, "Request
    /// normalisation".
    pub escaped_slashes: EscapedSlashes,
    /// Runs of `/` in a request path become one, as nginx does by default.
    pub merge_slashes: bool,
    /// Each upstream request also carries an RFC 7239 `Forwarded` element beside `X-Forwarded-*`. Off by
    /// default: an upstream that reads `Forwarded` from a proxy that never sent one would trust whatever a
    /// client wrote there.
    pub forwarded: bool,
    /// The request's header fields; a larger head gets 431 and the connection is closed. Range:
    /// [`limits::REQUEST_HEAD`].
    pub max_request_head: ByteSize,
    /// The request target; a longer one gets 414. Range: [`limits::REQUEST_TARGET`].
    pub max_request_target: ByteSize,
    /// Headers the plugins of a chain may add to one message, and their bytes; a `set-header` past either
    /// is refused to the plugin. Ranges: [`limits::PLUGIN_HEADERS`], [`limits::PLUGIN_HEADER_BYTES`].
    pub plugin_headers: u32,
    pub plugin_header_bytes: ByteSize,
    /// Keys and bytes of one request's context; a `set` past either is refused to the plugin. Ranges:
    /// [`limits::CONTEXT_KEYS`], [`limits::CONTEXT_BYTES`].
    pub context_keys: u32,
    pub context_bytes: ByteSize,
    /// Bytes one plugin call may log through the `log` interface; later lines of the call are dropped
    /// and counted. Range: [`limits::PLUGIN_LOG_BYTES`].
    pub plugin_log_bytes: ByteSize,
    /// A client that sends nothing of a request body it has begun for this long gets 408 and the
    /// connection is closed (nginx's `client_body_timeout`). Range: [`limits::CLIENT_BODY_TIMEOUT`].
    #[serde(with = "humantime_serde")]
    pub client_body_timeout: Duration,
    /// A request head must come whole within this long (from the accept, or from a later request's first
    /// byte): past it a head begun gets 408, and the connection is closed. Range:
    /// [`limits::HEADER_READ_TIMEOUT`].
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// A keep-alive connection idle this long between requests is closed; 0 turns keep-alive off. Range:
    /// [`limits::KEEPALIVE_TIMEOUT`].
    #[serde(with = "humantime_serde")]
    pub keepalive_timeout: Duration,
    /// A write to the client that makes no progress this long closes the connection (nginx's
    /// `send_timeout`): a client that reads nothing holds no upstream connection or plugin instance past
    /// it. Range: [`limits::SEND_TIMEOUT`].
    #[serde(with = "humantime_serde")]
    pub send_timeout: Duration,
    /// Client connections served at once; past it new ones wait in the listen backlog. By default as many
    /// as the open-file limit has room for (see `server::connection_limit`). Range:
    /// [`limits::MAX_CONNECTIONS`].
    pub max_connections: Option<u32>,
    /// Header fields in a request head; more gets 431. Range: [`limits::REQUEST_HEADERS`].
    pub max_request_headers: u32,
    /// Where the serving process writes its pid; after an upgrade, the new process's.
    pub pid_file: Option<PathBuf>,
    /// How often the config file is read for a change, which is then reloaded as SIGHUP would; off by
    /// default. Range: [`limits::WATCH_CONFIG`].
    #[serde(with = "humantime_serde")]
    pub watch_config: Option<Duration>,
    /// TLS on the listener; none serves clear text. See README, "TLS".
    pub tls: Option<tls::ListenerTls>,
    /// The load balancers whose connections open with a PROXY protocol header naming the client. See
    /// README, "Behind a load balancer".
    pub proxy_protocol: Option<proxy_protocol::ProxyProtocol>,
    /// The proxies in front whose `X-Forwarded-For` names the client. See README, "Behind an HTTP proxy".
    pub real_ip: Option<real_ip::RealIp>,
    /// An ID for each request, to the upstream, the client and the logs. See README, "Request IDs".
    pub request_id: Option<request_id::RequestId>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            log_level: "info".into(),
            access_log: AccessLog::Text,
            plugin_dir: None,
            cache_dir: None,
            workers: None,
            max_instances: None,
            max_plugin_memory: ByteSize(256 << 20),
            concurrency_support: false,
            shutdown_timeout: Duration::from_secs(10),
            escaped_slashes: EscapedSlashes::Keep,
            merge_slashes: true,
            forwarded: false,
            // Envoy's default is 60 KiB; nginx's 4 × 8 KiB buffers hold 32 KiB.
            max_request_head: ByteSize(64 << 10),
            // Twice the 8000 octets RFC 9112 §3 recommends supporting, and twice nginx's 8 KiB line.
            max_request_target: ByteSize(16 << 10),
            plugin_headers: 64,
            plugin_header_bytes: ByteSize(16 << 10),
            // A JWT of the default 8 KiB limit puts each claim in twice (a nested object whole and each
            // member), so its claims fit in 16 KiB; the rest is room for the other plugins.
            context_keys: 256,
            context_bytes: ByteSize(64 << 10),
            plugin_log_bytes: ByteSize(8 << 10),
            // nginx's default.
            client_body_timeout: Duration::from_secs(60),
            // hyper's default, which Weir had before it was a setting; nginx's is 60 s.
            header_read_timeout: Duration::from_secs(30),
            // nginx's default.
            keepalive_timeout: Duration::from_secs(75),
            // nginx's default.
            send_timeout: Duration::from_secs(60),
            max_connections: None,
            tls: None,
            proxy_protocol: None,
            real_ip: None,
            request_id: None,
            // Envoy's `max_headers_count` and hyper's default; up to 100 the parser needs no allocation.
            max_request_headers: 100,
            pid_file: None,
            watch_config: None,
        }
    }
}

/// Envoy's `path_with_escaped_slashes_action`: an escaped slash is never a segment boundary for routing
/// unless the config says to decode it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EscapedSlashes {
    /// Left escaped (hex upper-cased): part of a segment for routing, forwarded as sent.
    #[default]
    Keep,
    /// The request gets 400.
    Reject,
    /// Decoded to `/`, and the path normalised after, so the route sees the segments the upstream will.
    Decode,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    pub name: Option<String>,
    /// Exact path.
    pub path: Option<String>,
    /// Path prefix, matched on segment boundaries: `/api` matches `/api` and `/api/x`, not `/apix`.
    pub path_prefix: Option<String>,
    pub path_regex: Option<PathRegex>,
    pub methods: Option<Vec<MethodName>>,
    pub host: Option<HostPattern>,
    pub upstream: Spanned<String>,
    /// Requests with a larger body get 413; 0 allows no body at all. Any `u64`: the body is counted, never
    /// held whole.
    pub max_request_body: Option<ByteSize>,
    /// A request that came without a client certificate the listener verified gets 403: one listener may ask
    /// for certificates (`[server.tls] client_cert = "optional"`) and some of its routes require them.
    #[serde(default)]
    pub require_client_cert: bool,
    #[serde(default)]
    pub plugins: Vec<Spanned<PluginEntry>>,
}

/// One link of a route's chain.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginEntry {
    /// A built-in plugin by name (`path-rewrite`, `headers`, …).
    pub plugin: Option<String>,
    /// Any other plugin, by the path of its `.wasm` (relative to the config file).
    pub path: Option<PathBuf>,
    /// Handed to the plugin's `init` as JSON.
    #[serde(default)]
    pub config: toml::Table,
    #[serde(default)]
    pub on_error: OnError,
    /// CPU time per plugin call before the call is stopped. Range: [`limits::PLUGIN_TIMEOUT`].
    #[serde(default = "default_plugin_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Linear memory cap per instance. Range: [`limits::PLUGIN_MEMORY`], and at most
    /// `server.max_plugin_memory`.
    #[serde(default = "default_plugin_memory")]
    pub memory: ByteSize,
    #[serde(default)]
    pub isolation: Isolation,
    /// A pooled instance is retired after this many requests (bounds any leak inside the plugin). Range:
    /// [`limits::MAX_USES`].
    #[serde(default = "default_max_uses")]
    pub max_uses: u64,
    /// What the sandbox lets this plugin see. Nothing by default.
    #[serde(default)]
    pub grants: Grants,
    /// Instances of this entry serving a hook call or holding a body at once. A call that finds none free
    /// waits, within `wall_timeout`, then gets 503, on this entry's routes only. Range:
    /// [`limits::ENTRY_INSTANCES`].
    #[serde(default = "default_entry_instances")]
    pub max_instances: u32,
    /// Initialised instances kept ready between calls; by default all of `max_instances`, so that a
    /// burst's instances serve the next one. At most `max_instances`.
    pub max_idle: Option<u32>,
    /// An idle instance unused this long is dropped, down to one per worker thread: the memory a burst
    /// needed goes back once it is over. Range: [`limits::IDLE_INSTANCE_TIMEOUT`].
    #[serde(default = "default_idle_timeout", with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Wall-clock time per hook call from its first wait, and the longest wait for a free instance; past
    /// it the call fails as `on_error` says. Range: [`limits::WALL_TIMEOUT`].
    #[serde(default = "default_wall_timeout", with = "humantime_serde")]
    pub wall_timeout: Duration,
}

/// 64: a header hook holds an instance for microseconds, so a handful serve a core; bodies hold one each for
/// as long as they stream, and 64 bodies at once compress while later ones wait their turn.
fn default_entry_instances() -> u32 {
    64
}

/// 60 s: instances made for a burst outlive a lull between bursts (making one costs 30-60 µs and its
/// `init`, and a body transformer's first request also pays for its state's pages), and are gone a minute
/// after the last.
fn default_idle_timeout() -> Duration {
    Duration::from_secs(60)
}

/// 5 s: far above any hook's own work, and above jwt-auth's 2 s remote-JWKS timeout, so it only cuts a
/// plugin that waits without end.
fn default_wall_timeout() -> Duration {
    Duration::from_secs(5)
}

/// 20 ms: a header hook takes microseconds, so this only stops runaway plugins, while a gzip body hook on a
/// 64 KiB chunk (~0.4 ms measured) stays far below it.
fn default_plugin_timeout() -> Duration {
    Duration::from_millis(20)
}

/// 16 MiB: a Rust plugin with regexes and a JWKS needs about 1–2 MiB; gzip's window state under 1 MiB.
fn default_plugin_memory() -> ByteSize {
    ByteSize(16 << 20)
}

fn default_max_uses() -> u64 {
    10_000
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// The request fails with 500.
    #[default]
    Deny,
    /// The plugin is left out of this request and the chain goes on.
    Skip,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Isolation {
    /// Instances are reused, one request at a time each.
    #[default]
    Pooled,
    /// A fresh instance for every request.
    Request,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grants {
    /// Environment variables passed through by name, with the values the proxy has.
    #[serde(default)]
    pub env: Vec<String>,
    /// Read-only directories: guest path → host path (relative to the config file).
    #[serde(default)]
    pub dirs: BTreeMap<String, PathBuf>,
    /// Hosts the plugin may call over HTTP: `"auth.example.com"` (any port) or `"127.0.0.1:8080"`.
    #[serde(default)]
    pub http: Vec<HttpGrant>,
    /// The shared store (`weir:plugin/store`): `true` for a namespace of the entry's own, or a namespace's
    /// name that entries share.
    #[serde(default)]
    pub store: store::StoreGrant,
}

/// A problem found in a config file: where it is and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based line and column, when the problem has a place in the file.
    pub position: Option<(usize, usize)>,
    /// `route "api", plugin #1 (path-rewrite), field "config.prefix"`: the path to the problem.
    pub location: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some((line, col)) = self.position {
            write!(f, ":{line}:{col}")?;
        }
        if self.location.is_empty() {
            write!(f, ": {}", self.message)
        } else {
            write!(f, ": {}: {}", self.location, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found, reported together.
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "error: {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// A parsed config with its source, so that later stages can point at lines too.
pub struct Source {
    pub file: PathBuf,
    pub text: String,
    pub config: ConfigFile,
}

/// One step from the top of the file to a value: a key, or a position in an array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

use Step::{Index, Key};

impl Source {
    pub fn read(file: &Path) -> Result<Source, ConfigErrors> {
        let text = std::fs::read_to_string(file).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                file: file.to_owned(),
                position: None,
                location: String::new(),
                message: format!("cannot read the config file: {e}"),
            }])
        })?;
        Self::parse(file, text)
    }

    pub fn parse(file: &Path, text: String) -> Result<Source, ConfigErrors> {
        let config: ConfigFile = toml::from_str(&text).map_err(|e| {
            let start = e.span().map(|s| s.start);
            // The parser knows where the bad value is but not whose it is: the field is found from where.
            let location = start.and_then(|offset| {
                let tree = DeTable::parse_recoverable(&text).0.into_inner();
                field_location(&tree, &path_at(&tree, offset))
            });
            ConfigErrors(vec![ConfigError {
                file: file.to_owned(),
                position: start.map(|offset| line_col(&text, offset)),
                location: location.unwrap_or_default(),
                message: e.message().trim_end().to_owned(),
            }])
        })?;
        Ok(Source {
            file: file.to_owned(),
            text,
            config,
        })
    }

    /// A path written in the config is relative to the config file's directory.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        match self.file.parent() {
            Some(dir) if path.is_relative() => dir.join(path),
            _ => path.to_owned(),
        }
    }

    pub fn error(
        &self,
        span_start: usize,
        location: String,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError {
            file: self.file.clone(),
            position: Some(line_col(&self.text, span_start)),
            location,
            message: message.into(),
        }
    }

    /// An error about the field at `path` (`[Key("server"), Key("max_instances")]`), placed on its value,
    /// or where its table starts when the file leaves the field to its default.
    pub fn field_error(&self, path: &[Step], message: impl Into<String>) -> ConfigError {
        self.field_error_in(&self.tree(), path, message.into())
    }

    fn field_error_in(&self, tree: &DeTable, path: &[Step], message: String) -> ConfigError {
        let start = (1..=path.len())
            .rev()
            .find_map(|len| lookup(tree, &path[..len]))
            .map(|value| value.span().start);
        ConfigError {
            file: self.file.clone(),
            position: start.map(|offset| line_col(&self.text, offset)),
            location: field_location(tree, path).unwrap_or_default(),
            message,
        }
    }

    /// How request paths are normalised, from `[server]`.
    pub fn path_policy(&self) -> PathPolicy {
        PathPolicy {
            escaped_slashes: self.config.server.escaped_slashes,
            merge_slashes: self.config.server.merge_slashes,
        }
    }

    /// The file as a tree of spanned values: where each value is written.
    fn tree(&self) -> DeTable<'_> {
        DeTable::parse_recoverable(&self.text).0.into_inner()
    }

    /// The ranges and the cross-field rules the types cannot express. `weir check` and `weir run` both run
    /// them (loading does, and `run` once more before it sizes its runtime), so that run never meets a value
    /// check let through; loading also reports these together with the plugins' own errors.
    pub fn validate(&self) -> Vec<ConfigError> {
        let c = &self.config;
        let tree = self.tree();
        let mut found = Findings {
            source: self,
            tree: &tree,
            errors: Vec::new(),
        };

        let server = &c.server;
        let field = |name| [Key("server"), Key(name)];
        if let Some(workers) = server.workers {
            found.bound(&field("workers"), &limits::WORKERS, workers);
        }
        // Every entry may have all its instances alive at once; fewer slots than that would turn a burst
        // on one route into 503s on another.
        let needed = c.instance_slots();
        match server.max_instances {
            Some(total) => {
                found.bound(&field("max_instances"), &limits::MAX_INSTANCES, total);
                if limits::MAX_INSTANCES.contains(total) && u64::from(total) < needed {
                    found.refuse(
                        &field("max_instances"),
                        format!(
                            "{total} is fewer than the {needed} the plugin entries need (their \
                             max_instances, added up)"
                        ),
                    );
                }
            }
            None if needed > u64::from(limits::MAX_INSTANCES.max) => found.refuse(
                &field("max_instances"),
                format!(
                    "the plugin entries need {needed} instance slots (their max_instances, added \
                     up), over the {} the address space allows: lower their max_instances",
                    limits::MAX_INSTANCES.max
                ),
            ),
            None => {}
        }
        found.bound(
            &field("max_plugin_memory"),
            &limits::PLUGIN_MEMORY,
            server.max_plugin_memory,
        );
        found.bound(
            &field("max_request_head"),
            &limits::REQUEST_HEAD,
            server.max_request_head,
        );
        found.bound(
            &field("max_request_target"),
            &limits::REQUEST_TARGET,
            server.max_request_target,
        );
        found.bound(
            &field("plugin_headers"),
            &limits::PLUGIN_HEADERS,
            server.plugin_headers,
        );
        found.bound(
            &field("plugin_header_bytes"),
            &limits::PLUGIN_HEADER_BYTES,
            server.plugin_header_bytes,
        );
        found.bound(
            &field("context_keys"),
            &limits::CONTEXT_KEYS,
            server.context_keys,
        );
        found.bound(
            &field("context_bytes"),
            &limits::CONTEXT_BYTES,
            server.context_bytes,
        );
        found.bound(
            &field("plugin_log_bytes"),
            &limits::PLUGIN_LOG_BYTES,
            server.plugin_log_bytes,
        );
        found.bound(
            &field("shutdown_timeout"),
            &limits::SHUTDOWN_TIMEOUT,
            server.shutdown_timeout,
        );
        found.bound(
            &field("client_body_timeout"),
            &limits::CLIENT_BODY_TIMEOUT,
            server.client_body_timeout,
        );
        found.bound(
            &field("header_read_timeout"),
            &limits::HEADER_READ_TIMEOUT,
            server.header_read_timeout,
        );
        found.bound(
            &field("keepalive_timeout"),
            &limits::KEEPALIVE_TIMEOUT,
            server.keepalive_timeout,
        );
        found.bound(
            &field("send_timeout"),
            &limits::SEND_TIMEOUT,
            server.send_timeout,
        );
        if let Some(connections) = server.max_connections {
            found.bound(
                &field("max_connections"),
                &limits::MAX_CONNECTIONS,
                connections,
            );
        }
        found.bound(
            &field("max_request_headers"),
            &limits::REQUEST_HEADERS,
            server.max_request_headers,
        );
        if let Some(every) = server.watch_config {
            found.bound(&field("watch_config"), &limits::WATCH_CONFIG, every);
        }
        // `run` would drop a bad directive silently; `check` says so.
        if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(&server.log_level) {
            found.refuse(
                &field("log_level"),
                format!("\"{}\" is not a log filter: {e}", server.log_level),
            );
        }

        if let Some(tls) = &server.tls {
            tls.validate(&mut found);
        }
        if let Some(proxy_protocol) = &server.proxy_protocol {
            proxy_protocol.validate(&mut found);
        }
        if let Some(real_ip) = &server.real_ip {
            real_ip.validate(&mut found);
        }
        if let Some(request_id) = &server.request_id {
            request_id.validate(&mut found);
        }
        c.store.validate(&mut found);

        for (name, upstream) in &c.upstreams {
            upstream.get_ref().validate(name, &mut found);
        }

        for (index, route) in c.routes.iter().enumerate() {
            let r = route.get_ref();
            let where_ = route_label(index, r);
            let matchers = [
                r.path.is_some(),
                r.path_prefix.is_some(),
                r.path_regex.is_some(),
            ];
            if matchers.iter().filter(|m| **m).count() > 1 {
                found.at(
                    route.span().start,
                    where_.clone(),
                    "set at most one of \"path\", \"path_prefix\" and \"path_regex\"",
                );
            }
            // Requests are matched in the normal form, so a path written otherwise could never match.
            for (field, value) in [("path", &r.path), ("path_prefix", &r.path_prefix)] {
                let Some(p) = value else { continue };
                let at = [Key("routes"), Index(index), Key(field)];
                match normalise::path(p, self.path_policy()) {
                    Err(e) => found.refuse(&at, format!("\"{p}\" is not a request path: {e}")),
                    Ok(normal) if normal != p.as_str() => found.refuse(
                        &at,
                        format!(
                            "\"{p}\" never matches: requests are matched in normal form, write \"{normal}\""
                        ),
                    ),
                    Ok(_) => {}
                }
            }
            let asks = server.tls.as_ref().is_some_and(|t| t.client_ca.is_some());
            if r.require_client_cert && !asks {
                found.refuse(
                    &[Key("routes"), Index(index), Key("require_client_cert")],
                    "no client could ever pass: the listener asks for no certificate (set `client_ca` \
                     in `[server.tls]`)",
                );
            }
            if !c.upstreams.contains_key(r.upstream.get_ref()) {
                found.at(
                    r.upstream.span().start,
                    format!("{where_}, field \"upstream\""),
                    format!(
                        "no upstream named \"{}\" (known: {})",
                        r.upstream.get_ref(),
                        known(c.upstreams.keys())
                    ),
                );
            }
            for (position, entry) in r.plugins.iter().enumerate() {
                let p = entry.get_ref();
                let label = format!("{where_}, {}", plugin_label(position, p));
                let field = |name| {
                    [
                        Key("routes"),
                        Index(index),
                        Key("plugins"),
                        Index(position),
                        Key(name),
                    ]
                };
                match (&p.plugin, &p.path) {
                    (Some(_), Some(_)) | (None, None) => found.at(
                        entry.span().start,
                        label.clone(),
                        "set exactly one of \"plugin\" (a built-in name) and \"path\" (a .wasm file)",
                    ),
                    _ => {}
                }
                if let Some(refusal) = limits::PLUGIN_MEMORY.refuse(p.memory) {
                    found.refuse(&field("memory"), refusal);
                } else if p.memory > c.server.max_plugin_memory {
                    found.refuse(
                        &field("memory"),
                        format!(
                            "{} is above server.max_plugin_memory ({})",
                            p.memory, c.server.max_plugin_memory
                        ),
                    );
                }
                found.bound(&field("timeout"), &limits::PLUGIN_TIMEOUT, p.timeout);
                found.bound(&field("max_uses"), &limits::MAX_USES, p.max_uses);
                found.bound(
                    &field("max_instances"),
                    &limits::ENTRY_INSTANCES,
                    p.max_instances,
                );
                if let Some(idle) = p.max_idle
                    && idle > p.max_instances
                {
                    found.refuse(
                        &field("max_idle"),
                        format!(
                            "{idle} is above this entry's max_instances ({})",
                            p.max_instances
                        ),
                    );
                }
                found.bound(
                    &field("wall_timeout"),
                    &limits::WALL_TIMEOUT,
                    p.wall_timeout,
                );
                found.bound(
                    &field("idle_timeout"),
                    &limits::IDLE_INSTANCE_TIMEOUT,
                    p.idle_timeout,
                );
                for host_dir in p.grants.dirs.values() {
                    if !self.resolve(host_dir).is_dir() {
                        found.at(
                            entry.span().start,
                            format!("{label}, field \"grants.dirs\""),
                            format!("{} is not a directory", host_dir.display()),
                        );
                    }
                }
            }
        }
        found.errors
    }
}

impl ConfigFile {
    /// The instance slots the plugin entries can have alive at once: each entry's `max_instances`. Its idle
    /// instances count in it: an entry makes an instance only when none is idle, and only under a lease.
    pub fn instance_slots(&self) -> u64 {
        self.routes
            .iter()
            .flat_map(|r| &r.get_ref().plugins)
            .map(|e| u64::from(e.get_ref().max_instances))
            .sum()
    }

    /// The slots the sandbox reserves: `server.max_instances`, or twice what the entries need, so that a
    /// reload's new generation fits beside the old one while it drains (at least one slot, as a pooling
    /// allocator of none is refused; never more than the address space allows).
    pub fn sandbox_slots(&self) -> u64 {
        self.server.max_instances.map_or_else(
            || {
                let needed = self.instance_slots();
                needed
                    .saturating_mul(2)
                    .min(u64::from(limits::MAX_INSTANCES.max))
                    .max(needed)
                    .max(1)
            },
            u64::from,
        )
    }

    /// True when the settings the sandbox is built from are in range. Out of range they may ask for more
    /// address space than exists, so the sandbox is not even tried (`validate` reports them).
    pub fn sandbox_settings_in_range(&self) -> bool {
        u32::try_from(self.sandbox_slots()).is_ok_and(|n| limits::MAX_INSTANCES.contains(n))
            && limits::PLUGIN_MEMORY.contains(self.server.max_plugin_memory)
    }
}

impl ServerConfig {
    /// The tokio worker threads: `workers`, or one per core.
    pub fn worker_threads(&self) -> usize {
        self.workers.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        })
    }
}

impl PluginEntry {
    /// True when the limits its instances are made with are in range. Out of range they can overflow the
    /// sandbox's deadline arithmetic, so loading makes no instance (`validate` reports them).
    pub fn limits_in_range(&self, server: &ServerConfig) -> bool {
        limits::PLUGIN_MEMORY.contains(self.memory)
            && self.memory <= server.max_plugin_memory
            && limits::PLUGIN_TIMEOUT.contains(self.timeout)
            && limits::MAX_USES.contains(self.max_uses)
            && limits::ENTRY_INSTANCES.contains(self.max_instances)
            && self.idle() <= self.max_instances
            && limits::WALL_TIMEOUT.contains(self.wall_timeout)
            && limits::IDLE_INSTANCE_TIMEOUT.contains(self.idle_timeout)
    }

    /// Idle instances kept: `max_idle`, or all of `max_instances`.
    pub fn idle(&self) -> u32 {
        self.max_idle.unwrap_or(self.max_instances)
    }

    /// Idle instances kept past `idle_timeout`: one per worker thread, as many as run calls at once
    /// unless they wait on the network, never more than are kept at all.
    pub fn warm(&self, server: &ServerConfig) -> u32 {
        u32::try_from(server.worker_threads())
            .unwrap_or(u32::MAX)
            .min(self.idle())
    }
}

/// `validate`'s errors so far, each placed where the file says what is wrong.
struct Findings<'s, 't> {
    source: &'s Source,
    tree: &'t DeTable<'s>,
    errors: Vec<ConfigError>,
}

impl Findings<'_, '_> {
    fn refuse(&mut self, path: &[Step], message: impl Into<String>) {
        let error = self.source.field_error_in(self.tree, path, message.into());
        self.errors.push(error);
    }

    fn bound<T: Limit>(&mut self, path: &[Step], bounds: &Bounds<T>, value: T) {
        if let Some(refusal) = bounds.refuse(value) {
            self.refuse(path, refusal);
        }
    }

    fn at(&mut self, span_start: usize, location: String, message: impl Into<String>) {
        let error = self.source.error(span_start, location, message);
        self.errors.push(error);
    }
}

/// `route "api"` or `route #2` when it has no name.
pub fn route_label(index: usize, route: &RouteConfig) -> String {
    route_label_named(index, route.name.as_deref())
}

fn route_label_named(index: usize, name: Option<&str>) -> String {
    match name {
        Some(name) => format!("route \"{name}\""),
        None => format!("route #{}", index + 1),
    }
}

/// `plugin #1 (path-rewrite)`.
pub fn plugin_label(position: usize, entry: &PluginEntry) -> String {
    let path = entry.path.as_ref().map(|p| p.display().to_string());
    plugin_label_named(position, entry.plugin.as_deref().or(path.as_deref()))
}

fn plugin_label_named(position: usize, name: Option<&str>) -> String {
    format!("plugin #{} ({})", position + 1, name.unwrap_or("?"))
}

/// `route "api", plugin #1 (path-rewrite), field "timeout"` for the value at `path`, named as the typed
/// labels above name it; `None` when the path ends above any field (a whole route, or the key of an unknown
/// field, which the parser's message names already).
fn field_location(tree: &DeTable, path: &[Step]) -> Option<String> {
    let text = |path: &[Step]| lookup(tree, path).and_then(|v| v.get_ref().as_str());
    let (owner, field) = match path {
        [Key("server"), field @ ..] => ("server".to_owned(), field),
        [Key("store"), field @ ..] => ("store".to_owned(), field),
        [Key("upstreams"), Key(name), field @ ..] => (format!("upstream \"{name}\""), field),
        [
            Key("routes"),
            Index(route),
            Key("plugins"),
            Index(entry),
            field @ ..,
        ] => {
            let key = |key| {
                text(&[
                    Key("routes"),
                    Index(*route),
                    Key("plugins"),
                    Index(*entry),
                    Key(key),
                ])
            };
            let route_name = text(&[Key("routes"), Index(*route), Key("name")]);
            let owner = format!(
                "{}, {}",
                route_label_named(*route, route_name),
                plugin_label_named(*entry, key("plugin").or_else(|| key("path")))
            );
            (owner, field)
        }
        [Key("routes"), Index(route), field @ ..] => {
            let route_name = text(&[Key("routes"), Index(*route), Key("name")]);
            (route_label_named(*route, route_name), field)
        }
        _ => return None,
    };
    if field.is_empty() {
        return None;
    }
    let field: Vec<String> = field
        .iter()
        .map(|step| match step {
            Key(key) => (*key).to_owned(),
            Index(index) => index.to_string(),
        })
        .collect();
    Some(format!("{owner}, field \"{}\"", field.join(".")))
}

/// The value at `path`, if the file writes one.
fn lookup<'t>(tree: &'t DeTable, path: &[Step]) -> Option<&'t Spanned<DeValue<'t>>> {
    let (Key(first), rest) = path.split_first()? else {
        return None;
    };
    let mut value = tree.get(*first)?;
    for step in rest {
        value = match (step, value.get_ref()) {
            (Key(key), DeValue::Table(table)) => table.get(*key)?,
            (Index(index), DeValue::Array(array)) => array.get(*index)?,
            _ => return None,
        };
    }
    Some(value)
}

/// The path of the innermost value whose text holds `offset`.
fn path_at<'t>(tree: &'t DeTable, offset: usize) -> Vec<Step<'t>> {
    let mut path = Vec::new();
    in_table(tree, offset, &mut path);
    path
}

fn in_table<'t>(table: &'t DeTable, offset: usize, path: &mut Vec<Step<'t>>) -> bool {
    table.iter().any(|(key, value)| {
        path.push(Key(key.get_ref()));
        let found = in_value(value, offset, path);
        if !found {
            path.pop();
        }
        found
    })
}

fn in_value<'t>(value: &'t Spanned<DeValue>, offset: usize, path: &mut Vec<Step<'t>>) -> bool {
    let inside = match value.get_ref() {
        DeValue::Table(table) => in_table(table, offset, path),
        DeValue::Array(array) => array.iter().enumerate().any(|(index, item)| {
            path.push(Index(index));
            let found = in_value(item, offset, path);
            if !found {
                path.pop();
            }
            found
        }),
        _ => false,
    };
    inside || value.span().contains(&offset)
}

fn known<'a>(names: impl Iterator<Item = &'a String>) -> String {
    let names: Vec<&str> = names.map(String::as_str).collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> Vec<String> {
        match Source::parse(Path::new("weir.toml"), text.into()) {
            Ok(source) => source.validate().iter().map(ToString::to_string).collect(),
            Err(e) => e.0.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn unknown_key_names_line() {
        let e = errors("[server]\nlisten = \"127.0.0.1:1\"\nlistn = 3\n");
        assert_eq!(e.len(), 1);
        assert!(
            e[0].starts_with("weir.toml:3:1: unknown field `listn`"),
            "{}",
            e[0]
        );
    }

    #[test]
    fn unknown_upstream_and_bad_prefix_are_both_reported() {
        let e = errors(
            "[upstreams.a]\nurl = \"http://127.0.0.1:1\"\n\n[[routes]]\nname = \"r\"\npath_prefix = \"api\"\nupstream = \"b\"\n",
        );
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(
            e.iter()
                .any(|m| m.contains("route \"r\", field \"path_prefix\""))
        );
        assert!(e.iter().any(|m| m.starts_with("weir.toml:7:12: route \"r\", field \"upstream\": no upstream named \"b\" (known: a)")), "{e:?}");
    }

    #[test]
    fn route_paths_must_be_in_the_normal_form_requests_are_matched_in() {
        let e = errors(
            "[upstreams.a]\nurl = \"http://127.0.0.1:1\"\n[[routes]]\npath_prefix = \"/%7euser/../api\"\nupstream = \"a\"\n[[routes]]\npath = \"/a/%2e%2e/..\"\nupstream = \"a\"\n",
        );
        assert_eq!(
            e,
            [
                "weir.toml:4:15: route #1, field \"path_prefix\": \"/%7euser/../api\" never matches: requests are matched in normal form, write \"/api\"",
                "weir.toml:7:8: route #2, field \"path\": \"/a/%2e%2e/..\" is not a request path: the path climbs above the root",
            ]
        );
    }

    #[test]
    fn plugin_needs_exactly_one_source() {
        let e = errors(
            "[upstreams.a]\nurl = \"http://127.0.0.1:1\"\n[[routes]]\nupstream = \"a\"\n[[routes.plugins]]\nconfig = {}\n",
        );
        assert_eq!(e.len(), 1);
        assert!(e[0].contains("route #1, plugin #1 (?)"), "{}", e[0]);
    }

    const ONE_ROUTE: &str = "[upstreams.a]\nurl = \"http://127.0.0.1:1\"\n[[routes]]\nname = \"api\"\nupstream = \"a\"\n[[routes.plugins]]\nplugin = \"path-rewrite\"\n";

    #[test]
    fn ranges_are_refused_on_the_value_naming_the_field() {
        let e = errors(&format!("{ONE_ROUTE}timeout = \"0ms\"\nmax_uses = 0\n"));
        assert_eq!(
            e,
            [
                "weir.toml:8:11: route \"api\", plugin #1 (path-rewrite), field \"timeout\": must be above zero: at least 1ms (one epoch tick)",
                "weir.toml:9:12: route \"api\", plugin #1 (path-rewrite), field \"max_uses\": must be above zero",
            ]
        );
        let e = errors(&format!("[server]\nworkers = 0\n{ONE_ROUTE}"));
        assert_eq!(
            e,
            ["weir.toml:2:11: server, field \"workers\": must be above zero"]
        );
    }

    #[test]
    fn cross_field_rules_point_at_the_value_or_its_table() {
        let e = errors(&format!(
            "[server]\nlisten = \"127.0.0.1:1\"\nworkers = 2\n{ONE_ROUTE}memory = \"1GiB\"\n"
        ));
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with("weir.toml:11:10: route \"api\", plugin #1 (path-rewrite), field \"memory\": 1GiB is above server.max_plugin_memory (256MiB)"),
            "{e:?}"
        );
        // Two entries of two instances each need four slots; their idle instances are among them.
        let e = errors(&format!(
            "[server]\nworkers = 2\nmax_instances = 3\n{ONE_ROUTE}max_instances = 2\n[[routes.plugins]]\nplugin = \"headers\"\nmax_instances = 2\nmax_idle = 2\n"
        ));
        assert_eq!(
            e,
            [
                "weir.toml:3:17: server, field \"max_instances\": 3 is fewer than the 4 the plugin entries need (their max_instances, added up)"
            ]
        );
        // A field the file leaves to its default is placed on its table.
        let source =
            Source::parse(Path::new("weir.toml"), format!("[server]\n{ONE_ROUTE}")).unwrap();
        let error = source.field_error(&[Key("server"), Key("max_instances")], "too many");
        assert_eq!(
            error.to_string(),
            "weir.toml:1:1: server, field \"max_instances\": too many"
        );
    }

    #[test]
    fn parse_errors_name_the_field_they_are_in() {
        let e = errors("[server]\nworkers = -1\n");
        assert_eq!(e.len(), 1);
        assert!(
            e[0].starts_with("weir.toml:2:11: server, field \"workers\": invalid value"),
            "{e:?}"
        );
        let e = errors(&format!(
            "{ONE_ROUTE}grants.http = [\"ok.example\", \"http://x\"]\n"
        ));
        assert_eq!(
            e,
            [
                "weir.toml:8:30: route \"api\", plugin #1 (path-rewrite), field \"grants.http.1\": \"http://x\" is a URL: write host or host:port"
            ]
        );
        let e = errors("[upstreams.a]\nurl = \"http://127.0.0.1:1\"\nconnect_timeout = \"soon\"\n");
        assert!(
            e[0].starts_with("weir.toml:3:19: upstream \"a\", field \"connect_timeout\": "),
            "{e:?}"
        );
    }

    #[test]
    fn an_upstream_needs_a_url_unless_it_is_disabled() {
        let route = "[[routes]]\nupstream = \"a\"\n";
        let e = errors(&format!("[upstreams.a]\nconnect_timeout = \"1s\"\n{route}"));
        assert_eq!(
            e,
            [
                "weir.toml:1:1: upstream \"a\", field \"url\": missing: give the upstream's url, or `disabled = true` to answer its routes with 501"
            ]
        );
        assert!(errors(&format!("[upstreams.a]\ndisabled = true\n{route}")).is_empty());
        let kept = format!("[upstreams.a]\ndisabled = true\nurl = \"http://127.0.0.1:1\"\n{route}");
        assert!(errors(&kept).is_empty());
    }

    #[test]
    fn line_col_counts_from_one() {
        assert_eq!(line_col("ab\ncd", 0), (1, 1));
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
    }
}
