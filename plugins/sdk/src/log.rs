//! Logging through the host's logger, which tags every line with the route and the plugin.
//!
//! Check [`enabled`] before building an expensive message: the call crosses into the host either way.

use crate::bindings::weir::plugin::log as host;

pub use host::Level;

pub fn enabled(level: Level) -> bool {
    host::enabled(level)
}

pub fn log(level: Level, message: &str) {
    host::log(level, message)
}

pub fn trace(message: &str) {
    log(Level::Trace, message)
}

pub fn debug(message: &str) {
    log(Level::Debug, message)
}

pub fn info(message: &str) {
    log(Level::Info, message)
}

pub fn warn(message: &str) {
    log(Level::Warn, message)
}

pub fn error(message: &str) {
    log(Level::Error, message)
}
