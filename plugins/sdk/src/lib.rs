//! Write Weir plugins in Rust.
//!
//! A Weir plugin is a WebAssembly component (`wasm32-wasip2`) that the proxy runs on every request of the
//! routes that list it. With this crate a plugin is a config type that implements [`Plugin`], plus one
//! [`export!`] line; the crate deserialises the route's `config` table into the type, keeps the value for the
//! life of the instance, and calls its hooks with `&self`.
//!
//! ```toml
//! [lib]
//! crate-type = ["cdylib"]
//!
//! [dependencies]
//! serde = { version = "1", features = ["derive"] }
//! weir-sdk = "0.1"
//! ```
//!
//! Build with `cargo build --release --target wasm32-wasip2`; the `.wasm` in
//! `target/wasm32-wasip2/release/` is the plugin. See [`Plugin`] for a complete example.

mod action;
mod body;
pub mod config;
pub mod context;
pub mod crypto;
pub mod decoy;
mod error;
pub mod exclude;
mod headers;
pub mod http;
pub mod jws;
pub mod log;
mod request;
mod response;
mod runtime;
pub mod store;
pub mod template;

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "plugin",
        pub_export_macro: true,
        export_macro_name: "__export_handler",
    });
}

pub use action::{Action, LocalResponse};
pub use bindings::weir::plugin::types::Hooks;
pub use body::Transform;
pub use config::read_config_file;
pub use error::{ConfigError, Error, Result};
pub use request::{BodyError, Request};
pub use response::Response;
pub use serde;

/// What [`export!`] expands to; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use crate::runtime::Handler;
}

/// A Weir plugin: its config type, and the hooks the proxy calls.
///
/// The proxy makes instances of the plugin as it needs them and pools them. Each instance deserialises the
/// route's `config` table into `Self` once and calls [`init`]; after that the hooks get `&self`. A request
/// holds an instance only for one hook call: its `on_request` and `on_response` may run on different
/// instances, and an instance serves many requests in turn. So a hook keeps nothing for its request in
/// `self`: what the response phase or later plugins must know goes in the [`context`]. What an instance
/// keeps across requests (a cache of verified tokens) is interior-mutable on purpose (`RefCell`), and is
/// shared by every request that instance serves. A body transformer keeps its per-body state in the
/// [`Transform`] its header hook sets, which lives exactly as long as that body.
///
/// A hook that returns an error fails the request it was serving as a plugin fault (a 500, or the plugin
/// is skipped, with its changes undone, if the route says `on_error = "skip"`); the error is logged and the
/// instance goes on serving. A panic is a trap: the instance is thrown away.
///
/// # Example
///
/// A plugin that refuses requests without an API key and tags the answers. Its route config is
/// `config = { header = "x-api-key", keys = ["k1", "k2"] }`.
///
/// ```no_run
/// use weir_sdk::{Action, ConfigError, Hooks, LocalResponse, Plugin, Request, Response, Result};
///
/// #[derive(serde::Deserialize)]
/// struct ApiKey {
///     #[serde(default = "default_header")]
///     header: String,
///     keys: Vec<String>,
/// }
///
/// fn default_header() -> String {
///     "x-api-key".into()
/// }
///
/// impl Plugin for ApiKey {
///     // It decides who may pass: `weir check` warns if a route skips it on errors.
///     const HOOKS: Hooks = Hooks::GUARD;
///
///     fn init(&mut self) -> core::result::Result<(), ConfigError> {
///         if self.keys.is_empty() {
///             return Err(ConfigError::new("keys", "list at least one key"));
///         }
///         Ok(())
///     }
///
///     fn on_request(&self, req: &mut Request) -> Result<Action> {
///         match req.header_str(&self.header) {
///             Some(key) if self.keys.contains(&key) => {
///                 // The upstream never sees the key.
///                 req.remove_header(&self.header)?;
///                 Ok(Action::Continue)
///             }
///             _ => Ok(LocalResponse::new(401).body("missing or unknown API key\n").into()),
///         }
///     }
///
///     fn on_response(&self, _req: &Request, resp: &mut Response) -> Result<()> {
///         resp.set_header("x-checked-by", "api-key")
///     }
/// }
///
/// weir_sdk::export!(ApiKey);
/// ```
///
/// [`init`]: Plugin::init
pub trait Plugin: serde::de::DeserializeOwned + 'static {
    /// What the plugin declares: the body hooks it wants, [`Hooks::REQUEST_BODY`] and
    /// [`Hooks::RESPONSE_BODY`] (the hook then runs the [`Transform`] its header hook sets), and
    /// [`Hooks::GUARD`] for a plugin that decides whether requests pass. Combine with
    /// `Hooks::REQUEST_BODY.union(Hooks::GUARD)`. Body hooks are only called when declared, so that a chain
    /// where no plugin asks for bodies streams them without copying them into Wasm.
    const HOOKS: Hooks = Hooks::empty();

    /// Runs once per instance, after the config was deserialised into `self` (unknown fields are already
    /// refused, whether or not the type says `deny_unknown_fields`). Check the rules serde cannot express
    /// (one of two fields, a valid regex) and build derived state. An error names the field
    /// (`ConfigError::new("keys.0", "empty key")`) and stops the proxy from loading the config.
    ///
    /// The default accepts the config as deserialised.
    fn init(&mut self) -> core::result::Result<(), ConfigError> {
        Ok(())
    }

    /// The hooks of this instance, asked once after [`init`](Plugin::init). Override it only when the
    /// config decides which body hooks are needed; the default is [`HOOKS`](Plugin::HOOKS).
    fn hooks(&self) -> Hooks {
        Self::HOOKS
    }

    /// Runs before the upstream is called, in chain order. It may read and change the request (path,
    /// query, headers, upstream) and the [`context`], and, with `REQUEST_BODY` declared, set a
    /// [`Transform`] for the request body.
    ///
    /// Return [`Action::Continue`] to go on with the next plugin and then the upstream, or
    /// [`Action::Respond`] to answer the client at once: the plugins after this one and the upstream are
    /// skipped. The default continues without changing anything.
    #[allow(unused_variables)]
    fn on_request(&self, req: &mut Request) -> Result<Action> {
        Ok(Action::Continue)
    }

    /// Runs once the response headers are known (from the upstream, or a plugin's local answer), in reverse
    /// chain order, for every plugin whose `on_request` ran. It may change the status and the response
    /// headers, and, with `RESPONSE_BODY` declared, set a [`Transform`] for the response body; `req` reads
    /// the request as the upstream received it (`req.path()` is the rewritten path, `req.original_uri()`
    /// the client's), and can no longer be changed.
    ///
    /// The default changes nothing, and tells the host so: a plugin that does not override it is called
    /// once at most, and then left out of the response phase.
    #[allow(unused_variables)]
    fn on_response(&self, req: &Request, resp: &mut Response) -> Result<()> {
        runtime::default_on_response_ran::<Self>();
        Ok(())
    }
}

/// Exports a [`Plugin`] type as the component's `weir:plugin/handler`. Use it once, in the plugin crate's
/// `lib.rs`: `weir_sdk::export!(MyPlugin);`
#[macro_export]
macro_rules! export {
    ($plugin:ty) => {
        // The generated export macro takes an identifier, not a generic type: name the handler first.
        #[doc(hidden)]
        type __WeirHandler = $crate::__private::Handler<$plugin>;
        $crate::bindings::__export_handler!(__WeirHandler with_types_in $crate::bindings);
    };
}
