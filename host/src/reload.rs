//! The running generation of the config and its replacement: the one place a new generation is loaded and
//! swapped in, whether SIGHUP, `weir reload` or the admin listener asked.
//!
//! A reload reads and validates the file, refuses what cannot change without a restart, loads every plugin
//! and runs every `init`, and only then swaps the pointer the server reads for each request. Requests in
//! flight finish on the generation they started on; it is freed, instances and compiled plugins with it,
//! when the last of them ends. A config that fails anywhere before the swap changes nothing.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use arc_swap::ArcSwap;
use tokio::sync::watch;

use crate::config::{ConfigErrors, ConfigFile, ServerConfig, Source};
use crate::load;
use crate::proxy::Proxy;
use crate::sandbox::Sandbox;
use crate::stats::Stats;

/// The running generation, and what the admin listener and the metrics read of it.
pub struct Control {
    pub proxy: Arc<ArcSwap<Proxy>>,
    /// The listener's TLS (`[server.tls]`), read by each handshake and watched by each TLS connection: a
    /// reload swaps it with the proxy. None on a clear-text listener.
    pub tls: watch::Sender<Option<Arc<crate::tls::Listener>>>,
    /// The counters every generation counts in, so that a reload carries them on.
    pub stats: Arc<Stats>,
    sandbox: Arc<Sandbox>,
    file: PathBuf,
    plugin_dir: PathBuf,
    /// The config of the running generation, to tell what a new one changes.
    running: tokio::sync::Mutex<Source>,
    generation: AtomicU64,
    reloads_ok: AtomicU64,
    reloads_failed: AtomicU64,
    /// False until the listeners are bound, and again once shutdown has begun.
    ready: AtomicBool,
}

/// Why a reload changed nothing.
#[derive(Debug)]
pub enum ReloadError {
    /// The file's own errors, as `weir check` prints them.
    Config(ConfigErrors),
    /// Fields that only a restart can change.
    NotLive(Vec<String>),
}

impl fmt::Display for ReloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReloadError::Config(errors) => write!(f, "{errors}"),
            ReloadError::NotLive(changes) => {
                for (i, change) in changes.iter().enumerate() {
                    if i > 0 {
                        writeln!(f)?;
                    }
                    write!(f, "error: {change}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for ReloadError {}

/// What the process has done with its configs, for `/metrics`.
pub struct Counts {
    pub generation: u64,
    pub reloads_ok: u64,
    pub reloads_failed: u64,
}

impl Control {
    pub fn new(loaded: load::Loaded, source: Source, plugin_dir: PathBuf) -> Control {
        Control {
            proxy: Arc::new(ArcSwap::from_pointee(loaded.proxy)),
            tls: watch::Sender::new(None),
            stats: loaded.stats,
            sandbox: loaded.sandbox,
            file: source.file.clone(),
            plugin_dir,
            running: tokio::sync::Mutex::new(source),
            generation: AtomicU64::new(1),
            reloads_ok: AtomicU64::new(0),
            reloads_failed: AtomicU64::new(0),
            ready: AtomicBool::new(false),
        }
    }

    /// Loads the config file again and swaps it in, or changes nothing and says why. One reload at a
    /// time; the generation number it brought in on success.
    pub async fn reload(&self) -> Result<u64, ReloadError> {
        let mut running = self.running.lock().await;
        let result = self.load_next(&running.config).await;
        match result {
            Ok((proxy, tls, source)) => {
                self.proxy.store(Arc::new(proxy));
                if let Some(mut next) = tls {
                    let running = self.tls.borrow().clone();
                    let recheck = match running {
                        // The running allocation, so that each connection's Peer finds it unchanged by
                        // pointer, not by comparing every anchor and list.
                        Some(running) if running.clients == next.clients => {
                            next.clients = running.clients.clone();
                            false
                        }
                        running => running.is_some(),
                    };
                    self.tls.send_replace(Some(Arc::new(next)));
                    if recheck {
                        // Logged once the connections can see it: crate::tls::Peer.
                        tracing::info!(
                            "clients' certificates are checked anew: TLS connections and WebSocket \
                             tunnels whose client the new check refuses are drained"
                        );
                    }
                }
                *running = source;
                self.reloads_ok.fetch_add(1, Ordering::Relaxed);
                let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
                tracing::info!(generation, file = %self.file.display(), "config reloaded");
                Ok(generation)
            }
            Err(e) => {
                self.reloads_failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(file = %self.file.display(), "config not reloaded; the running one stays:\n{e}");
                Err(e)
            }
        }
    }

    async fn load_next(
        &self,
        running: &ConfigFile,
    ) -> Result<(Proxy, Option<crate::tls::Listener>, Source), ReloadError> {
        let source = Source::read(&self.file).map_err(ReloadError::Config)?;
        let errors = source.validate();
        if !errors.is_empty() {
            return Err(ReloadError::Config(ConfigErrors(errors)));
        }
        let changes = restart_only_changes(running, &source.config, self.sandbox.slots());
        if !changes.is_empty() {
            let file = self.file.display();
            return Err(ReloadError::NotLive(
                changes
                    .into_iter()
                    .map(|c| format!("{file}: {c}"))
                    .collect(),
            ));
        }
        let (proxy, warnings) = load::load(&source, &self.sandbox, &self.plugin_dir, &self.stats)
            .await
            .map_err(ReloadError::Config)?;
        for warning in warnings {
            tracing::warn!("{warning}");
        }
        // `load` checked the certificate files; read again here, one that changed since is refused.
        let tls = crate::tls::listener_config(&source).map_err(ReloadError::Config)?;
        Ok((proxy, tls, source))
    }

    pub fn file(&self) -> &Path {
        &self.file
    }

    /// The config text of the running generation.
    pub async fn running_text(&self) -> String {
        self.running.lock().await.text.clone()
    }

    pub fn counts(&self) -> Counts {
        Counts {
            generation: self.generation.load(Ordering::Relaxed),
            reloads_ok: self.reloads_ok.load(Ordering::Relaxed),
            reloads_failed: self.reloads_failed.load(Ordering::Relaxed),
        }
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }
}

/// What a new config changes that the running process cannot take without a restart: the sockets, the
/// runtime and the sandbox are made once, at start.
fn restart_only_changes(old: &ConfigFile, new: &ConfigFile, sandbox_slots: u32) -> Vec<String> {
    // Every field named, none left to `..`: a field added to `ServerConfig` does not compile here until it
    // is put on one side or the other, rather than becoming live by omission.
    let ServerConfig {
        listen,
        workers,
        max_instances,
        max_plugin_memory,
        concurrency_support,
        cache_dir,
        plugin_dir,
        log_level,
        shutdown_timeout,
        max_request_head,
        max_request_target,
        header_read_timeout,
        keepalive_timeout,
        send_timeout,
        max_connections,
        max_request_headers,
        pid_file,
        watch_config,
        tls,
        // Live: each request reads them from the generation it started on.
        access_log: _,
        escaped_slashes: _,
        merge_slashes: _,
        forwarded: _,
        plugin_headers: _,
        plugin_header_bytes: _,
        context_keys: _,
        context_bytes: _,
        plugin_log_bytes: _,
        client_body_timeout: _,
        // Live: each connection is judged by the generation running when it is accepted.
        proxy_protocol: _,
        // Live: each request is read by the generation it started on.
        real_ip: _,
        request_id: _,
    } = &old.server;
    let n = &new.server;
    let mut changes = Vec::new();
    let mut check = |field: &str, same: bool| {
        if !same {
            changes.push(format!(
                "server, field \"{field}\": changed, and only a restart applies it"
            ));
        }
    };
    check("listen", *listen == n.listen);
    check("workers", *workers == n.workers);
    check("max_instances", *max_instances == n.max_instances);
    check(
        "max_plugin_memory",
        *max_plugin_memory == n.max_plugin_memory,
    );
    check(
        "concurrency_support",
        *concurrency_support == n.concurrency_support,
    );
    check("cache_dir", *cache_dir == n.cache_dir);
    check("plugin_dir", *plugin_dir == n.plugin_dir);
    check("log_level", *log_level == n.log_level);
    check("shutdown_timeout", *shutdown_timeout == n.shutdown_timeout);
    check("max_request_head", *max_request_head == n.max_request_head);
    check(
        "max_request_target",
        *max_request_target == n.max_request_target,
    );
    // The server's connection settings are read once, when it starts serving.
    check(
        "header_read_timeout",
        *header_read_timeout == n.header_read_timeout,
    );
    check(
        "keepalive_timeout",
        *keepalive_timeout == n.keepalive_timeout,
    );
    check("send_timeout", *send_timeout == n.send_timeout);
    check("max_connections", *max_connections == n.max_connections);
    check(
        "max_request_headers",
        *max_request_headers == n.max_request_headers,
    );
    check("pid_file", *pid_file == n.pid_file);
    check("watch_config", *watch_config == n.watch_config);
    // The listener speaks TLS or not from the start; its certificates change with a reload.
    check("tls", tls.is_some() == n.tls.is_some());
    let admin = |c: &ConfigFile| c.admin.as_ref().map(|a| a.listen);
    if admin(old) != admin(new) {
        changes.push("admin, field \"listen\": changed, and only a restart applies it".into());
    }
    let needed = new.instance_slots();
    if needed > u64::from(sandbox_slots) {
        changes.push(format!(
            "the plugin entries need {needed} instance slots (their max_instances, added up), \
             more than the {sandbox_slots} the running sandbox reserved: only a restart can grow it"
        ));
    }
    changes
}
