//! From a parsed config to a running [`Proxy`]: validate it, build the sandbox, compile every plugin once,
//! make every (route, plugin) pool and run its first `init`. `weir check` and `weir run` both do all of it
//! through [`prepare`], and every failure is reported at once with the file, line, route, plugin and field.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::store::{Backend, StoreGrant};
use crate::config::upstream::SKIP_VERIFY;
use crate::config::{
    ByteSize, ConfigError, ConfigErrors, OnError, PluginEntry, ServerConfig, Source, Step,
    plugin_label, route_label,
};
use crate::exchange::PluginBounds;
use crate::inbound;
use crate::peers::PeerSet;
use crate::plugin::bindings::PluginPre;
use crate::plugin::{PluginError, PluginSlot, SlotSettings};
use crate::proxy::{Proxy, Route};
use crate::real_ip::RealIp;
use crate::request_id::RequestIds;
use crate::routes::RouteMatch;
use crate::sandbox::{
    EPOCH_TICK, HostState, InstanceLimits, Label, Sandbox, SandboxSettings, default_cache_dir,
};
use crate::stats::Stats;
use crate::store::{self, Namespace, Store, StoreAccess};
use crate::tls::upstream_anchors_passed;
use crate::upstream::{Upstream, Upstreams};

/// What `weir check` and `weir run` both do before serving, in one place so that they cannot differ:
/// validate, build the sandbox, load every plugin. A config that passes here is one `run` can serve.
pub async fn prepare(source: &Source, plugin_dir: &Path) -> Result<Loaded, ConfigErrors> {
    let stats = Arc::new(Stats::default());
    let sandbox = match sandbox(source) {
        Ok(sandbox) => sandbox,
        Err(refused) => {
            let mut errors = source.validate();
            errors.extend(refused);
            return Err(ConfigErrors(errors));
        }
    };
    let (proxy, warnings) = load(source, &sandbox, plugin_dir, &stats).await?;
    Ok(Loaded {
        proxy,
        sandbox,
        stats,
        warnings,
    })
}

/// A config ready to serve, and what it is allowed but should not do.
pub struct Loaded {
    pub proxy: Proxy,
    pub sandbox: Arc<Sandbox>,
    /// The counters this and every later generation count in.
    pub stats: Arc<Stats>,
    /// Each in the errors' format: file, line, route, plugin, field.
    pub warnings: Vec<ConfigError>,
}

/// The sandbox `[server]` asks for. The error is `None` when its settings are out of range, which
/// `validate` reports; otherwise the settings were in range but this machine has less address space (or a
/// lower `ulimit -v`) than the range allows for, and the error says so on `max_instances`.
fn sandbox(source: &Source) -> Result<Arc<Sandbox>, Option<ConfigError>> {
    let config = &source.config;
    if !config.sandbox_settings_in_range() {
        return Err(None);
    }
    let settings = sandbox_settings(&config.server, config.sandbox_slots(), Some(source));
    Sandbox::new(&settings).map_err(|e| {
        Some(source.field_error(
            &[Step::Key("server"), Step::Key("max_instances")],
            format!(
                "cannot reserve address space for {} plugin instances: {e:#}",
                settings.max_instances
            ),
        ))
    })
}

/// The sandbox's settings for `slots` instances; without a source (`weir plugin inspect`), the defaults.
pub fn sandbox_settings(
    server: &ServerConfig,
    slots: u64,
    source: Option<&Source>,
) -> SandboxSettings {
    SandboxSettings {
        max_instances: u32::try_from(slots).unwrap_or(u32::MAX),
        max_plugin_memory: server.max_plugin_memory.0,
        concurrency_support: server.concurrency_support,
        cache_dir: match (&server.cache_dir, source) {
            (Some(dir), Some(source)) => Some(source.resolve(dir)),
            _ => default_cache_dir(),
        },
    }
}

/// Loads every route with a sandbox already built, its counters taken from `stats`; [`prepare`] is the
/// whole of it.
pub async fn load(
    source: &Source,
    sandbox: &Arc<Sandbox>,
    plugin_dir: &Path,
    stats: &Stats,
) -> Result<(Proxy, Vec<ConfigError>), ConfigErrors> {
    let config = &source.config;
    let mut errors = source.validate();
    let mut warnings = Vec::new();
    let upstreams = Arc::new(upstreams(source, stats, &mut errors, &mut warnings));
    // The listener's certificates are loaded by the server when it starts; here they are checked, so that
    // `weir check` and a reload refuse a file that would not serve.
    match crate::tls::listener_config(source) {
        Err(failures) => errors.extend(failures.0),
        Ok(listener) => {
            // Past it, the file refuses clients: served all the same, as nginx does, and said (a stale OCSP
            // response is the exception: crate::tls leaves it unstapled).
            let now = std::time::SystemTime::now();
            for deadline in listener.iter().flat_map(|l| &l.deadlines) {
                if let Some(why) = deadline.passed(now) {
                    warnings.push(source.field_error(&deadline.field, why));
                }
            }
        }
    }
    let mut compiled: HashMap<PathBuf, Result<Arc<PluginPre<HostState>>, String>> = HashMap::new();
    let mut routes = Vec::new();
    // Made when the first entry granted the store is loaded: a config without one never makes it.
    let mut shared_store = None;
    for (index, spanned) in config.routes.iter().enumerate() {
        let route = spanned.get_ref();
        let route_name = route
            .name
            .clone()
            .unwrap_or_else(|| format!("#{}", index + 1));
        let mut chain = Vec::new();
        for (position, entry) in route.plugins.iter().enumerate() {
            let at = entry.span().start;
            let label = format!(
                "{}, {}",
                route_label(index, route),
                plugin_label(position, entry.get_ref())
            );
            let wasm = match wasm_path(source, entry.get_ref(), plugin_dir) {
                Ok(path) => path,
                Err(message) => {
                    errors.push(source.error(at, label, message));
                    continue;
                }
            };
            let pre = compiled
                .entry(wasm.clone())
                .or_insert_with(|| sandbox.load(&wasm).map_err(|e| e.to_string()));
            let pre = match pre {
                Ok(pre) => pre.clone(),
                Err(message) => {
                    errors.push(source.error(at, label, message.clone()));
                    continue;
                }
            };
            if !entry.get_ref().limits_in_range(&config.server) {
                continue; // reported by the config's own validation
            }
            let store = store_access(
                source,
                &mut shared_store,
                &route_name,
                (index, position),
                &pre,
                sandbox,
            );
            let store = match store {
                Ok(store) => store,
                Err(error) => {
                    errors.push(error);
                    continue;
                }
            };
            let settings = match slot_settings(source, entry.get_ref(), store) {
                Ok(settings) => settings,
                Err(message) => {
                    errors.push(source.error(at, format!("{label}, field \"grants\""), message));
                    continue;
                }
            };
            let plugin_config = match serde_json::to_string(&entry.get_ref().config) {
                Ok(json) => json,
                Err(e) => {
                    let location = format!("{label}, field \"config\"");
                    errors.push(source.error(at, location, format!("cannot be made JSON: {e}")));
                    continue;
                }
            };
            let log_label = Arc::new(Label {
                route: route_name.clone(),
                plugin: plugin_label(position, entry.get_ref()),
            });
            let entry_stats = stats.plugin(&log_label);
            let slot = PluginSlot::new(
                log_label,
                sandbox.clone(),
                pre,
                plugin_config,
                settings,
                entry_stats,
            );
            match slot.await {
                Ok(slot) => {
                    if slot.is_guard() && entry.get_ref().on_error == OnError::Skip {
                        warnings.push(source.field_error(
                            &[
                                Step::Key("routes"),
                                Step::Index(index),
                                Step::Key("plugins"),
                                Step::Index(position),
                                Step::Key("on_error"),
                            ],
                            "\"skip\" on a plugin that decides who may pass fails open: when a call \
                             fails, the request goes on as if the plugin had let it through",
                        ));
                    }
                    chain.push(slot);
                }
                Err(PluginError::Config { field, message }) => {
                    // An empty field means the config as a whole (say, none of the alternatives was set).
                    let field = if field.is_empty() {
                        "config".into()
                    } else {
                        format!("config.{field}")
                    };
                    errors.push(source.error(at, format!("{label}, field \"{field}\""), message));
                }
                Err(e) if memory_refused(&e) => {
                    let field = [
                        Step::Key("routes"),
                        Step::Index(index),
                        Step::Key("plugins"),
                        Step::Index(position),
                        Step::Key("memory"),
                    ];
                    let memory = entry.get_ref().memory;
                    let message = format!("{memory} is too little for this plugin: {e}");
                    errors.push(source.field_error(&field, message));
                }
                Err(e) => errors.push(source.error(at, label, format!("init failed: {e}"))),
            }
        }
        let Some(upstream) = upstreams.get(route.upstream.get_ref()) else {
            continue; // reported by the config's own validation
        };
        routes.push(Route {
            stats: stats.route(&route_name),
            name: route_name.into(),
            matcher: RouteMatch::new(route),
            upstream: upstream.clone(),
            chain,
            max_request_body: route.max_request_body.map(|b| b.0),
            require_client_cert: route.require_client_cert,
        });
    }
    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    let proxy = Proxy {
        routes,
        upstreams,
        access_log: config.server.access_log,
        unrouted: stats.unrouted().clone(),
        inbound: inbound::Rules {
            path: source.path_policy(),
            max_target: bytes(config.server.max_request_target),
            max_head: bytes(config.server.max_request_head),
        },
        plugin_bounds: PluginBounds {
            headers: usize::try_from(config.server.plugin_headers).unwrap_or(usize::MAX),
            header_bytes: bytes(config.server.plugin_header_bytes),
            context_keys: usize::try_from(config.server.context_keys).unwrap_or(usize::MAX),
            context_bytes: bytes(config.server.context_bytes),
        },
        client_body_timeout: config.server.client_body_timeout,
        proxy_protocol: config
            .server
            .proxy_protocol
            .as_ref()
            .map(|balancers| PeerSet::new(&balancers.from)),
        real_ip: config.server.real_ip.as_ref().map(RealIp::new),
        request_id: config.server.request_id.as_ref().map(RequestIds::new),
    };
    Ok((proxy, warnings))
}

/// Every upstream of the config. One that cannot be made (a CA file that does not load) is an error on the
/// field at fault; one that checks no certificate is a warning on the option that says so.
fn upstreams(
    source: &Source,
    stats: &Stats,
    errors: &mut Vec<ConfigError>,
    warnings: &mut Vec<ConfigError>,
) -> Upstreams {
    let mut built = BTreeMap::new();
    for (name, upstream) in &source.config.upstreams {
        let config = upstream.get_ref();
        let field = |f| [Step::Key("upstreams"), Step::Key(name), Step::Key(f)];
        if config.tls_insecure_skip_verify && config.is_tls() {
            warnings.push(source.field_error(
                &field(SKIP_VERIFY),
                "no certificate is checked: anyone on the way to this upstream can read and change \
                 its traffic",
            ));
        }
        match Upstream::new(name, config, &|f| source.resolve(f), stats.upstream(name)) {
            Ok(mut made) => {
                // Its endpoints are refused from then on: a config that served before is better warned
                // than met by 502s.
                let now = std::time::SystemTime::now();
                let expired = made
                    .ca_expires()
                    .and_then(|at| upstream_anchors_passed(at, now));
                if let Some(why) = expired {
                    warnings.push(source.field_error(&field("ca_file"), why));
                }
                made.send_forwarded(source.config.server.forwarded);
                // A config with errors is never served: nothing to check for.
                if errors.is_empty() {
                    made.start_health_checks();
                }
                built.insert(name.clone(), Arc::new(made));
            }
            Err(e) => errors.push(source.field_error(&field(e.field), e.message)),
        }
    }
    Upstreams::new(built)
}

/// True when instantiating or initialising a plugin failed because its `memory` cap refused a grow, which
/// wasmtime's `StoreLimits` reports only as text ("forcing trap when growing memory to N bytes", in the
/// pinned wasmtime 48).
fn memory_refused(error: &PluginError) -> bool {
    match error {
        PluginError::MemoryLimit(_) => true,
        PluginError::Instantiate(_) => error.to_string().contains("growing memory"),
        _ => false,
    }
}

/// Where a plugin's `.wasm` is: a built-in by name in the plugin directory, or a path from the config.
fn wasm_path(source: &Source, entry: &PluginEntry, plugin_dir: &Path) -> Result<PathBuf, String> {
    match (&entry.plugin, &entry.path) {
        (Some(name), None) => {
            let file = plugin_dir.join(format!("{}.wasm", name.replace('-', "_")));
            if file.is_file() {
                Ok(file)
            } else {
                Err(format!(
                    "unknown built-in plugin \"{name}\" (built-ins in {}: {})",
                    plugin_dir.display(),
                    builtin_names(plugin_dir)
                ))
            }
        }
        (None, Some(path)) => {
            let file = source.resolve(path);
            if file.is_file() {
                Ok(file)
            } else {
                Err(format!("no plugin file at {}", file.display()))
            }
        }
        _ => Err("set exactly one of \"plugin\" and \"path\"".into()),
    }
}

fn builtin_names(plugin_dir: &Path) -> String {
    let mut names: Vec<String> = std::fs::read_dir(plugin_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            Some(name.strip_suffix(".wasm")?.replace('_', "-"))
        })
        .collect();
    names.sort();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

/// The way into the shared store of the entry at `(route, position)`: `None` without `grants.store`. A
/// plugin that uses the store without the grant is refused here, at load, rather than on every request.
fn store_access(
    source: &Source,
    shared: &mut Option<Arc<Store>>,
    route_name: &str,
    (route, position): (usize, usize),
    pre: &PluginPre<HostState>,
    sandbox: &Sandbox,
) -> Result<Option<Arc<StoreAccess>>, ConfigError> {
    let entry = source.config.routes[route].get_ref().plugins[position].get_ref();
    let namespace = match &entry.grants.store {
        StoreGrant::None if store::imports_store(pre, sandbox.engine()) => {
            let field = [
                Step::Key("routes"),
                Step::Index(route),
                Step::Key("plugins"),
                Step::Index(position),
                Step::Key("grants"),
                Step::Key("store"),
            ];
            return Err(source.field_error(
                &field,
                "this plugin uses the shared store: grant it with `grants.store = true`",
            ));
        }
        StoreGrant::None => return Ok(None),
        StoreGrant::Own => Namespace::Entry {
            route: route_name.to_owned(),
            position,
        },
        StoreGrant::Named(name) => Namespace::Named(name.clone()),
    };
    if source.config.store.backend == Backend::Redis && source.config.store.url.is_none() {
        return Ok(None); // reported by the config's own validation
    }
    let store = match shared {
        Some(store) => store.clone(),
        None => {
            let made = Store::for_config(&source.config.store)
                .map_err(|e| source.field_error(&[Step::Key("store"), Step::Key("url")], e))?;
            shared.insert(made).clone()
        }
    };
    let plugin = plugin_label(position, entry);
    let access = StoreAccess::new(store, &namespace, (route_name, &plugin));
    Ok(Some(Arc::new(access)))
}

fn slot_settings(
    source: &Source,
    entry: &PluginEntry,
    store: Option<Arc<StoreAccess>>,
) -> Result<SlotSettings, String> {
    let env = entry
        .grants
        .env
        .iter()
        .map(|name| {
            std::env::var(name)
                .map(|value| (name.clone(), value))
                .map_err(|_| format!("environment variable {name} is not set"))
        })
        .collect::<Result<_, _>>()?;
    let dirs = entry
        .grants
        .dirs
        .iter()
        .map(|(guest, host)| (guest.clone(), source.resolve(host)))
        .collect();
    let tick = EPOCH_TICK.as_nanos();
    Ok(SlotSettings {
        limits: InstanceLimits {
            memory: entry.memory.0,
            deadline_ticks: u64::try_from(entry.timeout.as_nanos().div_ceil(tick))
                .unwrap_or(u64::MAX),
            env,
            dirs,
            http: entry.grants.http.clone().into(),
            wall_timeout: entry.wall_timeout,
            log_bytes: bytes(source.config.server.plugin_log_bytes),
            store,
        },
        on_error: entry.on_error,
        isolation: entry.isolation,
        max_uses: entry.max_uses,
        max_instances: usize::try_from(entry.max_instances).unwrap_or(usize::MAX),
        max_idle: usize::try_from(entry.idle()).unwrap_or(usize::MAX),
        warm: usize::try_from(entry.warm(&source.config.server)).unwrap_or(usize::MAX),
        idle_timeout: entry.idle_timeout,
    })
}

/// A size from the config as a count of bytes in memory (ranges keep them far below `usize::MAX`).
fn bytes(size: ByteSize) -> usize {
    usize::try_from(size.0).unwrap_or(usize::MAX)
}

/// The built-in plugin directory: `WEIR_PLUGIN_DIR`, else `plugins/` beside the `weir` binary.
pub fn default_plugin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("WEIR_PLUGIN_DIR") {
        return PathBuf::from(dir);
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("plugins")))
        .unwrap_or_else(|| PathBuf::from("plugins"))
}
