//! The per-request context: values plugins hand along the chain (a JWT's claims, a user id), bounded so
//! that no plugin can make one request hold more host memory than the server allows.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

/// The context of one request, counted as it grows.
#[derive(Debug, Clone)]
pub struct Context {
    values: HashMap<String, String>,
    /// Bytes of every key and value held now.
    bytes: usize,
    max_bytes: usize,
    max_keys: usize,
}

impl Context {
    pub fn new(max_bytes: usize, max_keys: usize) -> Context {
        Context {
            values: HashMap::new(),
            bytes: 0,
            max_bytes,
            max_keys,
        }
    }

    pub fn get(&self, key: &str) -> Option<&String> {
        self.values.get(key)
    }

    /// Sets `key`, unless the context would pass its bounds; the error says which. The key is hashed once:
    /// jwt-auth sets a key a claim on every request.
    pub fn set(&mut self, key: String, value: String) -> Result<(), String> {
        let keys = self.values.len();
        let entry = self.values.entry(key);
        let held = match &entry {
            Entry::Occupied(old) => self.bytes - old.get().len(),
            Entry::Vacant(new) => self.bytes + new.key().len(),
        };
        let bytes = held + value.len();
        if bytes > self.max_bytes {
            return Err(format!(
                "the request's context would hold {bytes} bytes, over the server's context_bytes ({})",
                self.max_bytes
            ));
        }
        if matches!(entry, Entry::Vacant(_)) && keys >= self.max_keys {
            return Err(format!(
                "the request's context already holds {} keys, the server's context_keys",
                self.max_keys
            ));
        }
        self.bytes = bytes;
        entry.insert_entry(value);
        Ok(())
    }

    pub fn remove(&mut self, key: &str) {
        if let Some(old) = self.values.remove(key) {
            self.bytes -= key.len() + old.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_and_keys_are_bounded_and_freed() {
        let mut c = Context::new(10, 2);
        c.set("a".into(), "1234".into()).unwrap();
        c.set("a".into(), "123456789".into()).unwrap();
        assert!(c.set("a".into(), "1234567890".into()).is_err(), "11 bytes");
        c.set("b".into(), "".into()).unwrap_err(); // 10 + 1 bytes
        c.set("a".into(), "1".into()).unwrap();
        c.set("b".into(), "2".into()).unwrap();
        let keys = c.set("c".into(), "3".into()).unwrap_err();
        assert!(keys.contains("context_keys"), "{keys}");
        c.remove("a");
        c.set("c".into(), "3".into()).unwrap();
        assert_eq!(c.get("c").map(String::as_str), Some("3"));
    }
}
