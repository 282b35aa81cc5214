//! A plugin in one route's chain: its compiled component, its config, and its pool of initialised instances.
//!
//! A request leases an instance for one hook call, or for one body when the plugin transforms it, and gives
//! it back at once: instances follow the calls in flight, which the cores bound, not the connections. Each
//! entry has its own budget of busy instances, so a burst on one route waits or gets 503 there only.
//!
//! An instance is marked unhealthy before every call and healthy again only when the call returns, so a
//! trap, a deadline, a memory-limit trap or a call abandoned half-way (the client went away, the wall-clock
//! bound passed) all leave it unhealthy, and the pool never takes it back. A hook's error is a value: the
//! call returned, and the instance goes back.

pub mod bindings;
mod host_api;

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::Poll;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::Store;

use crate::config::{Isolation, OnError};
use crate::epoch::CallGuard;
use crate::exchange::Exchange;
use crate::sandbox::{HostState, InstanceLimits, Label, Sandbox};
use crate::stats::PluginStats;
use bindings::{Action, Hooks, Plugin, PluginPre, ResponseHook};

/// How a plugin of one route behaves, from its config entry.
#[derive(Debug, Clone)]
pub struct SlotSettings {
    pub limits: InstanceLimits,
    pub on_error: OnError,
    pub isolation: Isolation,
    pub max_uses: u64,
    /// Instances leased at once; more callers wait.
    pub max_instances: usize,
    /// Idle instances kept ready; more are dropped when they come back.
    pub max_idle: usize,
    /// Idle instances kept however long they go unused.
    pub warm: usize,
    /// Past it unused, an idle instance beyond `warm` is dropped.
    pub idle_timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("cannot create an instance: {0:#}")]
    Instantiate(wasmtime::Error),
    #[error("field \"{field}\": {message}")]
    Config { field: String, message: String },
    #[error("{0}")]
    Trap(String),
    /// The epoch deadline interrupted the call.
    #[error("exceeded its CPU time limit (`timeout`)")]
    CpuLimit,
    /// The instance asked for memory past its `memory` cap, which traps.
    #[error("trapped: {0}")]
    MemoryLimit(String),
    /// The hook returned an error: the plugin's own verdict, and its instance is fine.
    #[error("returned an error: {0}")]
    Failed(String),
    #[error("did not return within its wall-clock bound (`wall_timeout`, {0:?})")]
    WallTimeout(Duration),
    /// Every instance of the entry stayed busy for the whole wall-clock bound.
    #[error("no instance came free within {0:?} (`max_instances`)")]
    Busy(Duration),
    #[error("answered with an invalid response: {0}")]
    InvalidAnswer(String),
}

impl PluginError {
    /// The entry or the sandbox had no instance to give: the proxy is overloaded, the plugin is not at
    /// fault.
    pub fn is_overload(&self) -> bool {
        match self {
            PluginError::Busy(_) => true,
            PluginError::Instantiate(e) => e
                .downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
                .is_some(),
            _ => false,
        }
    }

    fn from_trap(err: wasmtime::Error) -> PluginError {
        if err.downcast_ref::<wasmtime::Trap>() == Some(&wasmtime::Trap::Interrupt) {
            return PluginError::CpuLimit;
        }
        let message = format!("{err:#}");
        // The limiter refuses a grow with an error that only its text tells apart ("forcing trap when
        // growing memory to N bytes", in the pinned wasmtime 48).
        if message.contains("growing memory") {
            PluginError::MemoryLimit(message)
        } else {
            PluginError::Trap(format!("trapped: {message}"))
        }
    }
}

/// Which body a body hook transforms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    Request,
    Response,
}

pub struct PluginSlot {
    pub label: Arc<Label>,
    pub hooks: Hooks,
    pub settings: SlotSettings,
    sandbox: Arc<Sandbox>,
    pre: Arc<PluginPre<HostState>>,
    config: String,
    /// The least recently used first: instances are taken and given back at the end.
    idle: Mutex<Vec<Resting>>,
    /// One permit per instance that may be leased at once.
    leases: Arc<Semaphore>,
    /// This entry's counters, which outlive the slot across reloads.
    pub stats: Arc<PluginStats>,
    /// Cleared once a call says the plugin has no `on-response`: the response phase then leaves it out.
    response_hook: AtomicBool,
    /// The reaper's rounds so far: an instance coming back is stamped with it rather than with the time,
    /// which would cost every call a clock read.
    round: AtomicU64,
}

impl PluginSlot {
    /// Makes the first instance and runs its `init`, so that a bad config fails at load, not on the first
    /// request.
    pub async fn new(
        label: Arc<Label>,
        sandbox: Arc<Sandbox>,
        pre: Arc<PluginPre<HostState>>,
        config: String,
        settings: SlotSettings,
        stats: Arc<PluginStats>,
    ) -> Result<Arc<PluginSlot>, PluginError> {
        let (first, hooks) =
            Instance::create(&sandbox, &pre, &settings.limits, &label, &config).await?;
        stats.instance_created();
        let slot = Arc::new(PluginSlot {
            label,
            hooks,
            leases: Arc::new(Semaphore::new(settings.max_instances)),
            settings,
            sandbox,
            pre,
            config,
            idle: Mutex::new(Vec::new()),
            stats,
            response_hook: AtomicBool::new(true),
            round: AtomicU64::new(0),
        });
        slot.give_back(first);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(reap_idle(
                Arc::downgrade(&slot),
                slot.settings.idle_timeout / 2,
            ));
        }
        Ok(slot)
    }

    pub fn wants_body(&self, kind: BodyKind) -> bool {
        self.hooks.contains(match kind {
            BodyKind::Request => Hooks::REQUEST_BODY,
            BodyKind::Response => Hooks::RESPONSE_BODY,
        })
    }

    /// Whether `on-response` is to be called: until a call answers that the plugin has none.
    pub fn has_response_hook(&self) -> bool {
        self.response_hook.load(Ordering::Relaxed)
    }

    /// What an `on-response` call said of the hook; `absent` holds for every instance of the entry, as they
    /// all run the same code with the same config.
    pub fn response_hook_is(&self, hook: ResponseHook) {
        if matches!(hook, ResponseHook::Absent) {
            self.response_hook.store(false, Ordering::Relaxed);
        }
    }

    /// The plugin says it decides whether requests pass.
    pub fn is_guard(&self) -> bool {
        self.hooks.contains(Hooks::GUARD)
    }

    /// Instances leased right now, and instances idle.
    pub fn instances_in_use(&self) -> (usize, usize) {
        let leased = self.settings.max_instances - self.leases.available_permits();
        (leased, self.idle().len())
    }

    /// An initialised instance to call: a pooled one if any is idle, else a new one. Waits while the entry's
    /// every instance is leased, at most its wall-clock bound.
    pub async fn lease(&self) -> Result<Lease, PluginError> {
        let wait = self.settings.limits.wall_timeout;
        // A free instance is taken without a timer; only a wait for one is bounded.
        let permit = match self.leases.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => match tokio::time::timeout(wait, self.leases.clone().acquire_owned()).await {
                Ok(Ok(permit)) => permit,
                // The semaphore is never closed; a closed one would mean the slot is going away.
                Ok(Err(_)) | Err(_) => return Err(PluginError::Busy(wait)),
            },
        };
        let pooled = (self.settings.isolation == Isolation::Pooled)
            .then(|| self.idle().pop())
            .flatten()
            .map(|resting| resting.instance);
        let instance = match pooled {
            Some(instance) => instance,
            None => {
                // Boxed: instantiation's future is kilobytes, and inline it would make every request's
                // future that large for the whole exchange, though it is rarely awaited.
                let (instance, _) = Box::pin(Instance::create(
                    &self.sandbox,
                    &self.pre,
                    &self.settings.limits,
                    &self.label,
                    &self.config,
                ))
                .await?;
                self.stats.instance_created();
                instance
            }
        };
        Ok(Lease {
            instance,
            _permit: permit,
        })
    }

    /// Ends a lease: the instance goes back to the pool, unless it failed, is used up, the route wants a
    /// fresh instance per request, or the pool is full.
    pub fn release(&self, lease: Lease) {
        self.give_back(lease.instance);
    }

    fn give_back(&self, mut instance: Instance) {
        instance.uses += 1;
        if !instance.healthy
            || self.settings.isolation == Isolation::Request
            || instance.uses >= self.settings.max_uses
        {
            return;
        }
        let mut idle = self.idle();
        if idle.len() < self.settings.max_idle {
            idle.push(Resting {
                instance,
                round: self.round.load(Ordering::Relaxed),
            });
        }
    }

    /// Called every half `idle_timeout`: drops the instances unused for at least `idle_timeout`, keeping
    /// `warm` of them. One that came back during round `r` has been idle for one to one and a half
    /// `idle_timeout` when round `r + 3` begins.
    fn reap(&self) {
        let now = self.round.fetch_add(1, Ordering::Relaxed) + 1;
        let expired: Vec<Resting> = {
            let mut idle = self.idle();
            let spare = idle.len().saturating_sub(self.settings.warm);
            let stale = idle[..spare]
                .iter()
                .take_while(|r| now - r.round >= 3)
                .count();
            idle.drain(..stale).collect()
        };
        // Dropped outside the lock: a store's drop gives its memory back to the pool.
        drop(expired);
    }

    /// The idle instances. Nothing panics while holding the lock, but were it poisoned the list is still
    /// sound (a push or a pop either happened or did not), so the pool keeps working.
    fn idle(&self) -> MutexGuard<'_, Vec<Resting>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Looks at `slot`'s idle instances every `every` (half its `idle_timeout`), for as long as the slot is
/// alive (its generation ends with the last request that uses it). An instance is thus dropped between one
/// and one and a half `idle_timeout` after its last call.
async fn reap_idle(slot: Weak<PluginSlot>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        match slot.upgrade() {
            Some(slot) => slot.reap(),
            None => return,
        }
    }
}

/// An idle instance, and the reaper's round when it came back.
struct Resting {
    instance: Instance,
    round: u64,
}

/// An instance leased from its slot, counted against the entry's `max_instances` until released.
pub struct Lease {
    pub instance: Instance,
    _permit: OwnedSemaphorePermit,
}

pub struct Instance {
    store: Store<HostState>,
    plugin: Plugin,
    deadline_ticks: u64,
    wall_timeout: Duration,
    uses: u64,
    healthy: bool,
}

impl Instance {
    async fn create(
        sandbox: &Sandbox,
        pre: &PluginPre<HostState>,
        limits: &InstanceLimits,
        label: &Arc<Label>,
        config: &str,
    ) -> Result<(Instance, Hooks), PluginError> {
        let _running = CallGuard::enter();
        let mut store = sandbox
            .new_store(limits, label.clone())
            .map_err(|e| PluginError::Instantiate(wasmtime::Error::from_anyhow(e)))?;
        let plugin = pre
            .instantiate_async(&mut store)
            .await
            .map_err(PluginError::Instantiate)?;
        store.set_epoch_deadline(limits.deadline_ticks);
        let hooks = plugin
            .weir_plugin_handler()
            .call_init(&mut store, config)
            .await
            .map_err(PluginError::from_trap)?
            .map_err(|e| PluginError::Config {
                field: e.field,
                message: e.message,
            })?;
        let instance = Instance {
            store,
            plugin,
            deadline_ticks: limits.deadline_ticks,
            wall_timeout: limits.wall_timeout,
            uses: 0,
            healthy: true,
        };
        Ok((instance, hooks))
    }

    /// Arms the instance for one call: unhealthy until the call returns, with a fresh CPU deadline and
    /// fresh per-call budgets.
    fn begin(&mut self, mut exchange: Option<Box<Exchange>>) {
        self.healthy = false;
        if let Some(ex) = exchange.as_deref_mut() {
            ex.skip_body = false;
        }
        let state = self.store.data_mut();
        state.exchange = exchange;
        state.begin_call();
        self.store.set_epoch_deadline(self.deadline_ticks);
    }

    /// What a call that ran to its end (or past its wall-clock bound) comes to. A hook's error is a value:
    /// the instance is healthy again; a trap or an abandoned call leaves it unhealthy.
    fn finish<R>(
        &mut self,
        outcome: Option<wasmtime::Result<Result<R, String>>>,
    ) -> Result<R, PluginError> {
        let returned = match outcome {
            None => return Err(PluginError::WallTimeout(self.wall_timeout)),
            Some(call) => call.map_err(PluginError::from_trap)?,
        };
        self.healthy = true;
        returned.map_err(PluginError::Failed)
    }

    fn take_exchange(&mut self) -> Box<Exchange> {
        self.store
            .data_mut()
            .exchange
            .take()
            .expect("the exchange is in the store during a hook")
    }

    /// Runs `on-request`. The exchange comes back whatever happened.
    pub async fn on_request(
        &mut self,
        exchange: Box<Exchange>,
    ) -> (Box<Exchange>, Result<Action, PluginError>) {
        self.begin(Some(exchange));
        let outcome = {
            let _running = CallGuard::enter();
            let call = Box::pin(
                self.plugin
                    .weir_plugin_handler()
                    .call_on_request(&mut self.store),
            );
            within(self.wall_timeout, call).await
        };
        let exchange = self.take_exchange();
        (exchange, self.finish(outcome))
    }

    /// Runs `on-response`; `exchange.response` is set.
    pub async fn on_response(
        &mut self,
        exchange: Box<Exchange>,
    ) -> (Box<Exchange>, Result<ResponseHook, PluginError>) {
        self.begin(Some(exchange));
        let outcome = {
            let _running = CallGuard::enter();
            let call = Box::pin(
                self.plugin
                    .weir_plugin_handler()
                    .call_on_response(&mut self.store),
            );
            within(self.wall_timeout, call).await
        };
        let exchange = self.take_exchange();
        (exchange, self.finish(outcome))
    }

    /// Runs a body hook on one chunk. Body hooks see no exchange: plugins decide in the header hooks.
    pub async fn on_body(
        &mut self,
        kind: BodyKind,
        chunk: &[u8],
        end: bool,
    ) -> Result<Vec<u8>, PluginError> {
        self.begin(None);
        let _running = CallGuard::enter();
        let handler = self.plugin.weir_plugin_handler();
        let outcome = match kind {
            BodyKind::Request => {
                let call = Box::pin(handler.call_on_request_body(&mut self.store, chunk, end));
                within(self.wall_timeout, call).await
            }
            BodyKind::Response => {
                let call = Box::pin(handler.call_on_response_body(&mut self.store, chunk, end));
                within(self.wall_timeout, call).await
            }
        };
        self.finish(outcome)
    }
}

/// Runs `call` within `wall` of wall-clock time; `None` when it did not return in time. The timer is armed,
/// and the bound counted, from the call's first wait (on the network, the client, a password hash): a call
/// that runs through without yielding, as most do, pays for no timer and no clock read; until it first
/// waits, only its CPU time is bounded (`timeout`).
///
/// The call comes boxed, made in its box by the caller: a wasmtime call's future is ~1.4 KB, and inline
/// (as this function's argument, too) it would size every request's future, which each connection holds
/// while it waits on the upstream, not only during the microseconds of the call; and it would be copied
/// into place once more per call.
async fn within<F: Future>(wall: Duration, mut call: Pin<Box<F>>) -> Option<F::Output> {
    let mut timer: Option<Pin<Box<tokio::time::Sleep>>> = None;
    std::future::poll_fn(|cx| {
        if let Poll::Ready(output) = call.as_mut().poll(cx) {
            return Poll::Ready(Some(output));
        }
        let timer = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(wall)));
        timer.as_mut().poll(cx).map(|()| None)
    })
    .await
}
