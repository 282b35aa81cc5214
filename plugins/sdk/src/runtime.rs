//! The bridge between the generated `Guest` trait and a [`Plugin`]: the one plugin value of this instance,
//! the body transforms its header hooks set, and errors passed to the host as values.

use crate::bindings::exports::weir::plugin::handler::Guest;
use crate::bindings::weir::plugin::{request, response, types};
use crate::body::{self, Phase};
use crate::{Error, Hooks, Plugin, Request, Response, config, log};
use core::any::{Any, TypeId};
use core::cell::{Cell, RefCell};
use core::marker::PhantomData;

thread_local! {
    /// The plugin built by `init`. An instance serves one call at a time and is never re-entered, so the
    /// borrow inside a hook cannot clash. `Any` because a static cannot be generic over the plugin's type.
    static PLUGIN: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
    /// What `init` declared, to know which header hooks decide about a body.
    static HOOKS: Cell<Hooks> = const { Cell::new(Hooks::empty()) };
    /// Set by [`Plugin::on_response`]'s default body to the type whose default ran.
    static DEFAULT_ON_RESPONSE: Cell<Option<TypeId>> = const { Cell::new(None) };
}

/// Called by the default [`Plugin::on_response`] only: a Rust trait cannot tell whether a method was
/// overridden, so the default says so when it runs, and the host stops calling it. The type is kept so that
/// a plugin whose own `on_response` delegates to another type's default is not taken for one without a
/// response hook.
pub(crate) fn default_on_response_ran<P: Plugin>() {
    DEFAULT_ON_RESPONSE.set(Some(TypeId::of::<P>()));
}

/// The exported handler for plugin type `T`; [`export!`](crate::export) names it.
pub struct Handler<T>(PhantomData<T>);

impl<T: Plugin> Guest for Handler<T> {
    fn init(config: String) -> Result<types::Hooks, types::ConfigError> {
        std::panic::set_hook(Box::new(log_panic));
        let mut plugin: T = config::parse(&config).map_err(wit_config_error)?;
        plugin.init().map_err(wit_config_error)?;
        let hooks = plugin.hooks();
        HOOKS.set(hooks);
        PLUGIN.with_borrow_mut(|slot| *slot = Some(Box::new(plugin)));
        Ok(hooks)
    }

    fn on_request() -> Result<types::Action, String> {
        body::clear(Phase::Request);
        let action = with_plugin(|p: &T| p.on_request(&mut Request::current()));
        leave_unclaimed_body(Phase::Request, action.is_ok());
        action.map(Into::into).map_err(message)
    }

    fn on_response() -> Result<types::ResponseHook, String> {
        body::clear(Phase::Response);
        DEFAULT_ON_RESPONSE.set(None);
        let done =
            with_plugin(|p: &T| p.on_response(&Request::current(), &mut Response::current()));
        if DEFAULT_ON_RESPONSE.take() == Some(TypeId::of::<T>()) {
            // The default ran: nothing was changed, no body transform set, nothing to skip.
            return Ok(types::ResponseHook::Absent);
        }
        leave_unclaimed_body(Phase::Response, done.is_ok());
        done.map(|()| types::ResponseHook::Ran).map_err(message)
    }

    fn on_request_body(chunk: Vec<u8>, end: bool) -> Result<Vec<u8>, String> {
        body::run(Phase::Request, chunk, end).map_err(message)
    }

    fn on_response_body(chunk: Vec<u8>, end: bool) -> Result<Vec<u8>, String> {
        body::run(Phase::Response, chunk, end).map_err(message)
    }
}

/// After a header hook of a plugin that declared this phase's body hook: a body no transform claimed is
/// left alone, so the host streams it and frees the instance; after an error there is no body to serve.
fn leave_unclaimed_body(phase: Phase, ok: bool) {
    let declared = match phase {
        Phase::Request => Hooks::REQUEST_BODY,
        Phase::Response => Hooks::RESPONSE_BODY,
    };
    if !HOOKS.get().contains(declared) {
        return;
    }
    if !ok {
        body::clear(phase);
    }
    if !body::is_set(phase) {
        match phase {
            Phase::Request => request::skip_body(),
            Phase::Response => response::skip_body(),
        }
    }
}

fn with_plugin<T: Plugin, R>(hook: impl FnOnce(&T) -> R) -> R {
    PLUGIN.with_borrow(|slot| {
        let plugin = slot
            .as_ref()
            .expect("weir-sdk: a hook was called before a successful init");
        hook(
            plugin
                .downcast_ref()
                .expect("weir-sdk: the instance holds another plugin type"),
        )
    })
}

fn message(error: Error) -> String {
    error.message().to_owned()
}

/// A trap reaches the host as a bare "wasm trap" with a backtrace, and the guest's stderr may go nowhere:
/// the host's log is where the operator sees why, tagged with the route and the plugin.
fn log_panic(info: &std::panic::PanicHookInfo<'_>) {
    let message = info.payload_as_str().unwrap_or("a panic without a message");
    match info.location() {
        Some(at) => log::error(&format!(
            "plugin panicked at {}:{}: {message}",
            at.file(),
            at.line()
        )),
        None => log::error(&format!("plugin panicked: {message}")),
    }
}

fn wit_config_error(e: crate::ConfigError) -> types::ConfigError {
    types::ConfigError {
        field: e.field,
        message: e.message,
    }
}
