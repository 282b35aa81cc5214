//! The one wasmtime [`Engine`] and [`Linker`] of the process, and the single place where a plugin's
//! [`Store`] is made, so that every per-instance knob (memory cap, CPU deadline, WASI grants) is set in one
//! function.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use sha2::{Digest, Sha256};

use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, StoreLimits,
};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::compile_cache::CompileCache;
pub use crate::compile_cache::default_cache_dir;
use crate::config::HttpGrant;
use crate::cpu_time::Overtime;
pub use crate::epoch::EPOCH_TICK;
use crate::exchange::Exchange;
use crate::guest_output::{GuestOutput, Stream};
use crate::plugin::bindings::{CONTRACT, Plugin, PluginPre};
use crate::store::StoreAccess;

/// Process-wide sandbox settings, from the `[server]` table.
#[derive(Debug, Clone)]
pub struct SandboxSettings {
    pub max_instances: u32,
    pub max_plugin_memory: u64,
    pub concurrency_support: bool,
    pub cache_dir: Option<PathBuf>,
}

/// What one plugin instance is allowed: fixed per (route, plugin).
#[derive(Debug, Clone)]
pub struct InstanceLimits {
    pub memory: u64,
    pub deadline_ticks: u64,
    pub env: Vec<(String, String)>,
    /// Guest path → host directory, read-only.
    pub dirs: Vec<(String, PathBuf)>,
    /// Where the plugin may send HTTP requests.
    pub http: Arc<[HttpGrant]>,
    /// Wall-clock time per hook call.
    pub wall_timeout: std::time::Duration,
    /// Bytes the plugin may log per call (the `log` interface; its stdout and stderr are bounded apart).
    pub log_bytes: usize,
    /// The shared store, when the entry is granted it.
    pub store: Option<Arc<StoreAccess>>,
}

/// Names a plugin in logs: which route, which link of its chain.
#[derive(Debug)]
pub struct Label {
    pub route: String,
    pub plugin: String,
}

/// The data of one plugin instance's store.
pub struct HostState {
    wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    limits: StoreLimits,
    /// The exchange being handled; only set while a hook runs.
    pub exchange: Option<Box<Exchange>>,
    pub label: Arc<Label>,
    pub http_grants: Arc<[HttpGrant]>,
    /// The shared store, when the entry is granted it.
    pub(crate) store: Option<Arc<StoreAccess>>,
    /// Set when a host call waited on the network: the time spent waiting is not the plugin's CPU time,
    /// so the next epoch deadline is renewed once instead of trapping.
    pub waited_on_host: bool,
    /// CPU time used by the current call past its wall-clock deadline.
    pub(crate) overtime: Overtime,
    /// Live `crypto.key` resources, bounded by the crypto module.
    pub(crate) crypto_keys: usize,
    /// Live `crypto.password-hash` resources, bounded by the crypto module.
    pub(crate) password_hashes: usize,
    /// What the current call may still log, and what it was refused.
    pub(crate) log_left: usize,
    pub(crate) log_dropped: usize,
    log_bytes: usize,
}

impl HostState {
    /// Resets what is counted per call.
    pub(crate) fn begin_call(&mut self) {
        self.waited_on_host = false;
        self.overtime.reset();
        self.log_left = self.log_bytes;
        self.log_dropped = 0;
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not a valid WebAssembly component: {source:#}", path.display())]
    Compile {
        path: PathBuf,
        source: wasmtime::Error,
    },
    #[error("{} does not fit the {CONTRACT} contract: {source:#}", path.display())]
    Contract {
        path: PathBuf,
        source: wasmtime::Error,
    },
}

pub struct Sandbox {
    engine: Engine,
    linker: Linker<HostState>,
    cache: Option<CompileCache>,
    /// The instance slots of the pooling allocator, fixed for the life of the engine.
    slots: u32,
    /// Plugins a running generation holds, by the SHA-256 of their `.wasm`: a reload of an unchanged file
    /// reuses them. Once no generation holds one it is freed, and the next load of that file compiles it
    /// again (from the disk cache).
    loaded: Mutex<HashMap<[u8; 32], Weak<PluginPre<HostState>>>>,
}

impl Sandbox {
    pub fn new(settings: &SandboxSettings) -> anyhow::Result<Arc<Sandbox>> {
        let mut pool = PoolingAllocationConfig::new();
        let n = settings.max_instances;
        pool.total_component_instances(n)
            .total_memories(n)
            .total_tables(n.saturating_mul(2))
            // A Rust component is a handful of core instances (the module plus canonical-ABI shims).
            .total_core_instances(n.saturating_mul(8))
            // One fiber stack per plugin call in flight.
            .total_stacks(n)
            .max_memory_size(usize::try_from(settings.max_plugin_memory)?)
            // No `linear_memory_keep_resident`: it resets the first bytes of a freed memory with memset, and
            // a Rust plugin's first MiB is its stack, touched only at the top. Measured with a fresh instance
            // per request: 2x the requests per second and a third of the peak RSS without it.
            .table_keep_resident(1 << 16);

        let mut config = Config::new();
        config
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
            .memory_init_cow(true)
            .epoch_interruption(true)
            .concurrency_support(settings.concurrency_support);
        // `perf` can then name the functions of plugins (it reads /tmp/perf-PID.map).
        if std::env::var_os("WEIR_PERF_MAP").is_some_and(|v| v == "1") {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let engine = Engine::new(&config)?;
        crate::epoch::tick(&engine)?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        Plugin::add_to_linker::<_, wasmtime::component::HasSelf<_>>(&mut linker, |s| s)?;

        Ok(Arc::new(Sandbox {
            engine,
            linker,
            cache: settings.cache_dir.clone().map(CompileCache::new),
            slots: n,
            loaded: Mutex::new(HashMap::new()),
        }))
    }

    /// The instance slots the sandbox reserved when it started; a reload cannot grow them.
    pub fn slots(&self) -> u32 {
        self.slots
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Compile (or load from the on-disk cache) and type-check a plugin against the contract; a plugin a
    /// running generation already holds is shared, not loaded again.
    pub fn load(&self, path: &Path) -> Result<Arc<PluginPre<HostState>>, LoadError> {
        let bytes = read(path)?;
        let digest: [u8; 32] = Sha256::digest(&bytes).into();
        if let Some(pre) = self.loaded().get(&digest).and_then(Weak::upgrade) {
            return Ok(pre);
        }
        let component = self.compile_bytes(path, &bytes)?;
        let contract = |source| LoadError::Contract {
            path: path.to_owned(),
            source,
        };
        let pre = self.linker.instantiate_pre(&component).map_err(contract)?;
        let pre = Arc::new(PluginPre::new(pre).map_err(contract)?);
        let mut loaded = self.loaded();
        loaded.retain(|_, held| held.strong_count() > 0);
        loaded.insert(digest, Arc::downgrade(&pre));
        Ok(pre)
    }

    /// Nothing panics while the lock is held, so a poisoned map is still a sound one.
    fn loaded(&self) -> MutexGuard<'_, HashMap<[u8; 32], Weak<PluginPre<HostState>>>> {
        self.loaded.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The component, compiled once per content and engine configuration: a restart loads the cached
    /// machine code instead of compiling again.
    pub fn compile(&self, path: &Path) -> Result<Component, LoadError> {
        self.compile_bytes(path, &read(path)?)
    }

    fn compile_bytes(&self, path: &Path, bytes: &[u8]) -> Result<Component, LoadError> {
        match &self.cache {
            Some(cache) => cache.component(&self.engine, bytes),
            None => Component::new(&self.engine, bytes),
        }
        .map_err(|source| LoadError::Compile {
            path: path.to_owned(),
            source,
        })
    }

    /// A store for one plugin instance, with every limit of that instance set.
    pub fn new_store(
        &self,
        limits: &InstanceLimits,
        label: Arc<Label>,
    ) -> anyhow::Result<Store<HostState>> {
        let mut wasi = WasiCtx::builder();
        wasi.stdout(GuestOutput {
            label: label.clone(),
            stream: Stream::Stdout,
        })
        .stderr(GuestOutput {
            label: label.clone(),
            stream: Stream::Stderr,
        });
        for (name, value) in &limits.env {
            wasi.env(name, value);
        }
        for (guest, host) in &limits.dirs {
            wasi.preopened_dir(host, guest, wasmtime_wasi::FsPerms::ReadOnly)?;
        }
        let state = HostState {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            limits: wasmtime::StoreLimitsBuilder::new()
                .memory_size(usize::try_from(limits.memory)?)
                .trap_on_grow_failure(true)
                .instances(64)
                .build(),
            exchange: None,
            label,
            http_grants: limits.http.clone(),
            store: limits.store.clone(),
            waited_on_host: false,
            crypto_keys: 0,
            password_hashes: 0,
            overtime: Overtime::default(),
            log_left: limits.log_bytes,
            log_dropped: 0,
            log_bytes: limits.log_bytes,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        let ticks = limits.deadline_ticks;
        let budget = EPOCH_TICK * u32::try_from(ticks).unwrap_or(u32::MAX);
        store.epoch_deadline_callback(move |mut store| {
            let state = store.data_mut();
            Ok(if std::mem::take(&mut state.waited_on_host) {
                wasmtime::UpdateDeadline::Continue(ticks)
            } else if state.overtime.exhausted(budget) {
                wasmtime::UpdateDeadline::Interrupt
            } else {
                // Look again at the next tick.
                wasmtime::UpdateDeadline::Continue(1)
            })
        });
        store.set_epoch_deadline(ticks);
        Ok(store)
    }
}

fn read(path: &Path) -> Result<Vec<u8>, LoadError> {
    std::fs::read(path).map_err(|source| LoadError::Read {
        path: path.to_owned(),
        source,
    })
}
