//! The two error types a plugin returns: [`Error`] from a hook, [`ConfigError`] from `init`.

use core::fmt;

/// `Result` with the SDK's [`Error`] as the default error.
pub type Result<T, E = Error> = core::result::Result<T, E>;

/// An error from a hook, handed to the host as a value: the request fails as a plugin fault (a 500, or the
/// plugin is skipped, with its changes undone, if the route says `on_error = "skip"`), the message goes to
/// the log, and the instance goes on serving other requests. Only a panic throws an instance away.
///
/// The host's refusals (the `string` of a `result<_, string>`, such as an invalid header value) arrive as
/// this type through the [`Request`](crate::Request) and [`Response`](crate::Response) setters, so `?` passes
/// them on; a plugin's own message converts from `String` or `&str`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    message: String,
}

impl Error {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl From<String> for Error {
    fn from(message: String) -> Self {
        Self::new(message)
    }
}

impl From<&str> for Error {
    fn from(message: &str) -> Self {
        Self::new(message)
    }
}

/// A config the plugin refuses. `field` is the dotted path of the offending value inside the plugin's
/// `config` table (`keys.0.secret`), or empty when the config as a whole is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub field: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}
