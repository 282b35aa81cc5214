//! The TOML config file: typed, with the checks inside the types, so that the parser points at the line.
//!
//! Parsing here is pure: nothing is loaded or compiled. Cross-field rules live in [`ConfigFile::validate`],
//! which reports every problem at once, each with file, line and field.

mod units;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

pub use units::{ByteSize, HostPattern, MethodName, PathRegex, UpstreamUrl};

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
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// A `tracing` filter (`info`, `weir=debug`); `RUST_LOG` wins when set.
    pub log_level: String,
    /// One line per request at `info` on the `weir::access` target.
    pub access_log: bool,
    /// Where built-in plugins are found; defaults to `plugins/` beside the `weir` binary.
    pub plugin_dir: Option<PathBuf>,
    /// Where compiled plugins are cached; defaults to `$XDG_CACHE_HOME/weir` or `~/.cache/weir`.
    pub cache_dir: Option<PathBuf>,
    /// Tokio worker threads; defaults to the number of cores.
    pub workers: Option<usize>,
    /// Plugin instances alive at once, pooled or in flight, across all routes. Requests beyond it get 503.
    pub max_instances: u32,
    /// The largest memory any plugin may be granted (`memory` per plugin stays below it).
    pub max_plugin_memory: ByteSize,
    /// Wasmtime's component-model concurrency machinery. Weir's contract has no `async func`, and turning it
    /// off makes every plugin call cheaper (see README, "Design").
    pub concurrency_support: bool,
    /// How long a graceful shutdown waits for requests in flight.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            log_level: "info".into(),
            access_log: true,
            plugin_dir: None,
            cache_dir: None,
            workers: None,
            max_instances: 1000,
            max_plugin_memory: ByteSize(256 << 20),
            concurrency_support: false,
            shutdown_timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    pub url: UpstreamUrl,
    /// Connecting longer than this gives 504.
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Waiting longer than this for the response head gives 504.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Send the client's `Host` instead of the upstream's own authority (nginx's default is the latter).
    #[serde(default)]
    pub preserve_host: bool,
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(5)
}

fn default_timeout() -> Duration {
    Duration::from_secs(60)
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
    /// Requests with a larger body get 413.
    pub max_request_body: Option<ByteSize>,
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
    /// CPU time per plugin call before the call is stopped.
    #[serde(default = "default_plugin_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Linear memory cap per instance.
    #[serde(default = "default_plugin_memory")]
    pub memory: ByteSize,
    #[serde(default)]
    pub isolation: Isolation,
    /// A pooled instance is retired after this many requests (bounds any leak inside the plugin).
    #[serde(default = "default_max_uses")]
    pub max_uses: u64,
    /// What the sandbox lets this plugin see. Nothing by default.
    #[serde(default)]
    pub grants: Grants,
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
    pub http: Vec<String>,
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
            let position = e.span().map(|s| line_col(&text, s.start));
            ConfigErrors(vec![ConfigError {
                file: file.to_owned(),
                position,
                location: String::new(),
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

    /// The cross-field rules the types cannot express. Loading runs them too, so that `weir check` reports
    /// these and the plugins' own errors together.
    pub fn validate(&self) -> Vec<ConfigError> {
        let c = &self.config;
        let mut errors = Vec::new();
        for (name, upstream) in &c.upstreams {
            if upstream.get_ref().timeout.is_zero() {
                errors.push(self.error(
                    upstream.span().start,
                    format!("upstream \"{name}\", field \"timeout\""),
                    "must be above zero",
                ));
            }
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
                errors.push(self.error(
                    route.span().start,
                    where_.clone(),
                    "set at most one of \"path\", \"path_prefix\" and \"path_regex\"",
                ));
            }
            for (field, value) in [("path", &r.path), ("path_prefix", &r.path_prefix)] {
                if let Some(p) = value
                    && !p.starts_with('/')
                {
                    errors.push(self.error(
                        route.span().start,
                        format!("{where_}, field \"{field}\""),
                        format!("\"{p}\" must start with '/'"),
                    ));
                }
            }
            if !c.upstreams.contains_key(r.upstream.get_ref()) {
                errors.push(self.error(
                    r.upstream.span().start,
                    format!("{where_}, field \"upstream\""),
                    format!(
                        "no upstream named \"{}\" (known: {})",
                        r.upstream.get_ref(),
                        known(c.upstreams.keys())
                    ),
                ));
            }
            for (position, entry) in r.plugins.iter().enumerate() {
                let p = entry.get_ref();
                let label = format!("{where_}, {}", plugin_label(position, p));
                match (&p.plugin, &p.path) {
                    (Some(_), Some(_)) | (None, None) => errors.push(self.error(
                        entry.span().start,
                        label.clone(),
                        "set exactly one of \"plugin\" (a built-in name) and \"path\" (a .wasm file)",
                    )),
                    _ => {}
                }
                if p.memory > c.server.max_plugin_memory {
                    errors.push(self.error(
                        entry.span().start,
                        format!("{label}, field \"memory\""),
                        format!(
                            "{} is above server.max_plugin_memory ({})",
                            p.memory, c.server.max_plugin_memory
                        ),
                    ));
                }
                if p.timeout.is_zero() || p.max_uses == 0 {
                    let field = if p.timeout.is_zero() {
                        "timeout"
                    } else {
                        "max_uses"
                    };
                    errors.push(self.error(
                        entry.span().start,
                        format!("{label}, field \"{field}\""),
                        "must be above zero",
                    ));
                }
                for host_dir in p.grants.dirs.values() {
                    if !self.resolve(host_dir).is_dir() {
                        errors.push(self.error(
                            entry.span().start,
                            format!("{label}, field \"grants.dirs\""),
                            format!("{} is not a directory", host_dir.display()),
                        ));
                    }
                }
            }
        }
        errors
    }
}

/// `route "api"` or `route #2` when it has no name.
pub fn route_label(index: usize, route: &RouteConfig) -> String {
    match &route.name {
        Some(name) => format!("route \"{name}\""),
        None => format!("route #{}", index + 1),
    }
}

/// `plugin #1 (path-rewrite)`.
pub fn plugin_label(position: usize, entry: &PluginEntry) -> String {
    let name = match (&entry.plugin, &entry.path) {
        (Some(name), _) => name.clone(),
        (None, Some(path)) => path.display().to_string(),
        (None, None) => "?".into(),
    };
    format!("plugin #{} ({name})", position + 1)
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
    fn plugin_needs_exactly_one_source() {
        let e = errors(
            "[upstreams.a]\nurl = \"http://127.0.0.1:1\"\n[[routes]]\nupstream = \"a\"\n[[routes.plugins]]\nconfig = {}\n",
        );
        assert_eq!(e.len(), 1);
        assert!(e[0].contains("route #1, plugin #1 (?)"), "{}", e[0]);
    }

    #[test]
    fn line_col_counts_from_one() {
        assert_eq!(line_col("ab\ncd", 0), (1, 1));
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
    }
}
