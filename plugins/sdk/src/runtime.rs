//! The bridge between the generated `Guest` trait and a [`Plugin`]: the one plugin value of this instance,
//! and what happens to a hook's error.

use crate::bindings::exports::weir::plugin::handler::Guest;
use crate::bindings::weir::plugin::types;
use crate::{Error, Plugin, Request, Response, config, log};
use core::any::Any;
use core::cell::RefCell;
use core::marker::PhantomData;

thread_local! {
    /// The plugin built by `init`. An instance serves one call at a time and is never re-entered, so the
    /// borrow inside a hook cannot clash. `Any` because a static cannot be generic over the plugin's type.
    static PLUGIN: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
}

/// The exported handler for plugin type `T`; [`export!`](crate::export) names it.
pub struct Handler<T>(PhantomData<T>);

impl<T: Plugin> Guest for Handler<T> {
    fn init(config: String) -> Result<types::Hooks, types::ConfigError> {
        std::panic::set_hook(Box::new(log_panic));
        let mut plugin: T = config::parse(&config).map_err(wit_config_error)?;
        plugin.init().map_err(wit_config_error)?;
        let hooks = plugin.hooks();
        PLUGIN.with_borrow_mut(|slot| *slot = Some(Box::new(plugin)));
        Ok(hooks)
    }

    fn on_request() -> types::Action {
        let action = with_plugin(|p: &mut T| p.on_request(&mut Request::current()));
        or_trap("on_request", action).into()
    }

    fn on_response() {
        let done =
            with_plugin(|p: &mut T| p.on_response(&Request::current(), &mut Response::current()));
        or_trap("on_response", done)
    }

    fn on_request_body(chunk: Vec<u8>, end: bool) -> Vec<u8> {
        or_trap(
            "on_request_body",
            with_plugin(|p: &mut T| p.on_request_body(chunk, end)),
        )
    }

    fn on_response_body(chunk: Vec<u8>, end: bool) -> Vec<u8> {
        or_trap(
            "on_response_body",
            with_plugin(|p: &mut T| p.on_response_body(chunk, end)),
        )
    }
}

fn with_plugin<T: Plugin, R>(hook: impl FnOnce(&mut T) -> R) -> R {
    PLUGIN.with_borrow_mut(|slot| {
        let plugin = slot
            .as_mut()
            .expect("weir-sdk: a hook was called before a successful init");
        hook(
            plugin
                .downcast_mut()
                .expect("weir-sdk: the instance holds another plugin type"),
        )
    })
}

/// A hook's error traps, like a panic: the host answers as a plugin fault and drops the instance, whose
/// state may be half-changed. The panic hook logs the error first.
fn or_trap<R>(hook: &str, result: Result<R, Error>) -> R {
    result.unwrap_or_else(|e| panic!("{hook} failed: {e}"))
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
