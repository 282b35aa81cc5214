//! The `crypto` interface: keys imported once by a plugin, signatures verified and made natively.

use wasmtime::component::Resource;

use crate::plugin::bindings::weir::plugin::crypto::{Algorithm, Host, HostKey, KeySource};
use crate::sandbox::HostState;

/// A key bound to one algorithm.
pub struct Key {
    algorithm: Algorithm,
}

impl Host for HostState {}

impl HostKey for HostState {
    fn load(
        &mut self,
        algorithm: Algorithm,
        source: KeySource,
    ) -> wasmtime::Result<Result<Resource<Key>, String>> {
        let _ = source;
        let _ = algorithm;
        Ok(Err("not implemented yet".into()))
    }

    fn algorithm(&mut self, key: Resource<Key>) -> wasmtime::Result<Algorithm> {
        Ok(self.table.get(&key)?.algorithm)
    }

    fn verify(
        &mut self,
        key: Resource<Key>,
        message: Vec<u8>,
        signature: Vec<u8>,
    ) -> wasmtime::Result<bool> {
        let _ = (key, message, signature);
        Ok(false)
    }

    fn sign(
        &mut self,
        key: Resource<Key>,
        message: Vec<u8>,
    ) -> wasmtime::Result<Result<Vec<u8>, String>> {
        let _ = (key, message);
        Ok(Err("not implemented yet".into()))
    }

    fn drop(&mut self, key: Resource<Key>) -> wasmtime::Result<()> {
        self.table.delete(key)?;
        Ok(())
    }
}
