//! The `crypto` interface: keys and password hashes imported once by a plugin, signatures and passwords
//! verified natively.
//!
//! Verifying an RS256 signature costs ~0.9 ms inside Wasm and ~22 µs natively with ring on the machines
//! Weir is measured on, so plugins hand their keys to the host and verify by handle.

mod jwk;
mod key;
mod password;
mod pem;

pub use key::Key;
pub use password::PasswordHash;
use wasmtime::component::Resource;

use crate::plugin::bindings::weir::plugin::crypto::{Algorithm, Host, HostKey, KeySource};
use crate::sandbox::HostState;

/// Keys live in host memory, outside the plugin's memory limit: a plugin loading keys in a loop is
/// stopped here rather than growing the proxy. A JWKS rarely holds more than a handful.
const MAX_KEYS_PER_INSTANCE: usize = 256;

impl Host for HostState {}

impl HostKey for HostState {
    fn load(
        &mut self,
        algorithm: Algorithm,
        source: KeySource,
    ) -> wasmtime::Result<Result<Resource<Key>, String>> {
        if self.crypto_keys >= MAX_KEYS_PER_INSTANCE {
            return Ok(Err(format!(
                "too many keys: a plugin instance holds at most {MAX_KEYS_PER_INSTANCE}"
            )));
        }
        match Key::load(algorithm, source) {
            Ok(key) => {
                self.crypto_keys += 1;
                Ok(Ok(self.table.push(key)?))
            }
            Err(message) => Ok(Err(message)),
        }
    }

    fn algorithm(&mut self, key: Resource<Key>) -> wasmtime::Result<Algorithm> {
        Ok(self.table.get(&key)?.algorithm())
    }

    fn verify(
        &mut self,
        key: Resource<Key>,
        message: Vec<u8>,
        signature: Vec<u8>,
    ) -> wasmtime::Result<bool> {
        Ok(self.table.get(&key)?.verify(&message, &signature))
    }

    fn sign(
        &mut self,
        key: Resource<Key>,
        message: Vec<u8>,
    ) -> wasmtime::Result<Result<Vec<u8>, String>> {
        Ok(self.table.get(&key)?.sign(&message))
    }

    fn drop(&mut self, key: Resource<Key>) -> wasmtime::Result<()> {
        self.table.delete(key)?;
        self.crypto_keys -= 1;
        Ok(())
    }
}
