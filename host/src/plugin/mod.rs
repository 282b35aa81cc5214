//! A plugin in one route's chain: its compiled component, its config, and its pool of initialised instances.
//!
//! An instance serves one request at a time. It is marked unhealthy before every call and healthy again only
//! when the call returns, so a trap, a deadline, a memory-limit trap or a call abandoned half-way (the
//! client went away) all leave it unhealthy, and the pool never takes it back.

pub mod bindings;
mod host_api;

use std::sync::{Arc, Mutex};

use wasmtime::Store;

use crate::config::{Isolation, OnError};
use crate::exchange::Exchange;
use crate::sandbox::{HostState, InstanceLimits, Label, Sandbox};
use bindings::{Action, Hooks, Plugin, PluginPre};

/// How a plugin of one route behaves, from its config entry.
#[derive(Debug, Clone)]
pub struct SlotSettings {
    pub limits: InstanceLimits,
    pub on_error: OnError,
    pub isolation: Isolation,
    pub max_uses: u64,
    /// Idle instances kept ready; more are made under load and dropped when the pool is full.
    pub max_idle: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("cannot create an instance: {0:#}")]
    Instantiate(wasmtime::Error),
    #[error("field \"{field}\": {message}")]
    Config { field: String, message: String },
    #[error("{0}")]
    Trap(String),
    #[error("answered with an invalid response: {0}")]
    InvalidAnswer(String),
}

impl PluginError {
    /// Instantiation failed because every instance slot is in use: the proxy is overloaded, the plugin is
    /// not at fault.
    pub fn is_overload(&self) -> bool {
        matches!(self, PluginError::Instantiate(e) if e.downcast_ref::<wasmtime::PoolConcurrencyLimitError>().is_some())
    }

    fn from_call(err: wasmtime::Error) -> PluginError {
        if err.downcast_ref::<wasmtime::Trap>() == Some(&wasmtime::Trap::Interrupt) {
            return PluginError::Trap("exceeded its CPU time limit (`timeout`)".into());
        }
        PluginError::Trap(format!("trapped: {err:#}"))
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
    pre: PluginPre<HostState>,
    config: String,
    idle: Mutex<Vec<Instance>>,
}

impl PluginSlot {
    /// Makes the first instance and runs its `init`, so that a bad config fails at load, not on the first
    /// request.
    pub async fn new(
        label: Arc<Label>,
        sandbox: Arc<Sandbox>,
        pre: PluginPre<HostState>,
        config: String,
        settings: SlotSettings,
    ) -> Result<Arc<PluginSlot>, PluginError> {
        let (first, hooks) =
            Instance::create(&sandbox, &pre, &settings.limits, &label, &config).await?;
        let slot = Arc::new(PluginSlot {
            label,
            hooks,
            settings,
            sandbox,
            pre,
            config,
            idle: Mutex::new(Vec::new()),
        });
        slot.checkin(first);
        Ok(slot)
    }

    /// The idle instances. Nothing panics while holding the lock, but were it poisoned the list is still
    /// sound (a push or a pop either happened or did not), so the pool keeps working.
    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Instance>> {
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn wants_body(&self, kind: BodyKind) -> bool {
        self.hooks.contains(match kind {
            BodyKind::Request => Hooks::REQUEST_BODY,
            BodyKind::Response => Hooks::RESPONSE_BODY,
        })
    }

    /// An initialised instance for one request: a pooled one if any is idle, else a new one.
    pub async fn checkout(&self) -> Result<Instance, PluginError> {
        if self.settings.isolation == Isolation::Pooled
            && let Some(instance) = self.idle().pop()
        {
            return Ok(instance);
        }
        let (instance, _) = Instance::create(
            &self.sandbox,
            &self.pre,
            &self.settings.limits,
            &self.label,
            &self.config,
        )
        .await?;
        Ok(instance)
    }

    /// Gives an instance back after its request; it is dropped instead if it failed, is used up, or the
    /// route wants a fresh instance per request.
    pub fn checkin(&self, mut instance: Instance) {
        instance.uses += 1;
        if !instance.healthy
            || self.settings.isolation == Isolation::Request
            || instance.uses >= self.settings.max_uses
        {
            return;
        }
        let mut idle = self.idle();
        if idle.len() < self.settings.max_idle {
            idle.push(instance);
        }
    }
}

pub struct Instance {
    store: Store<HostState>,
    plugin: Plugin,
    deadline_ticks: u64,
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
            .map_err(PluginError::from_call)?
            .map_err(|e| PluginError::Config {
                field: e.field,
                message: e.message,
            })?;
        let instance = Instance {
            store,
            plugin,
            deadline_ticks: limits.deadline_ticks,
            uses: 0,
            healthy: true,
        };
        Ok((instance, hooks))
    }

    /// Arms the instance for one call: unhealthy until the call returns, with a fresh CPU deadline.
    fn begin(&mut self, mut exchange: Option<Box<Exchange>>) {
        self.healthy = false;
        if let Some(ex) = exchange.as_deref_mut() {
            ex.skip_body = false;
        }
        let state = self.store.data_mut();
        state.exchange = exchange;
        state.waited_on_host = false;
        state.overtime.reset();
        self.store.set_epoch_deadline(self.deadline_ticks);
    }

    fn finish<R>(&mut self, result: wasmtime::Result<R>) -> Result<R, PluginError> {
        let value = result.map_err(PluginError::from_call)?;
        self.healthy = true;
        Ok(value)
    }

    /// Keeps the instance from going back to its pool (its state is mid-request).
    pub fn retire(&mut self) {
        self.healthy = false;
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
        let result = self
            .plugin
            .weir_plugin_handler()
            .call_on_request(&mut self.store)
            .await;
        let exchange = self.take_exchange();
        (exchange, self.finish(result))
    }

    /// Runs `on-response`; `exchange.response` is set.
    pub async fn on_response(
        &mut self,
        exchange: Box<Exchange>,
    ) -> (Box<Exchange>, Result<(), PluginError>) {
        self.begin(Some(exchange));
        let result = self
            .plugin
            .weir_plugin_handler()
            .call_on_response(&mut self.store)
            .await;
        let exchange = self.take_exchange();
        (exchange, self.finish(result))
    }

    /// Runs a body hook on one chunk. Body hooks see no exchange: plugins decide in the header hooks.
    pub async fn on_body(
        &mut self,
        kind: BodyKind,
        chunk: &[u8],
        end: bool,
    ) -> Result<Vec<u8>, PluginError> {
        self.begin(None);
        let handler = self.plugin.weir_plugin_handler();
        let result = match kind {
            BodyKind::Request => {
                handler
                    .call_on_request_body(&mut self.store, chunk, end)
                    .await
            }
            BodyKind::Response => {
                handler
                    .call_on_response_body(&mut self.store, chunk, end)
                    .await
            }
        };
        self.finish(result)
    }
}
