//! Tokens already verified, as Envoy's `jwt_cache_config`: a client sends the same token on every request
//! until it expires, and a second look-up costs a map probe instead of decoding and a signature check.
//! The time claims are checked again on every hit; the cache is forgotten whenever the key set changes
//! (a remote JWKS refreshed), so a withdrawn key stops its tokens at once.

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::rc::Rc;

use serde_json::{Map, Value};

/// A verified token: its claims, and the context entries they make, rendered once for all the requests
/// that bring the token again.
pub struct Token {
    pub claims: Map<String, Value>,
    pub context: Vec<(String, String)>,
}

pub type Known = Rc<Token>;

pub struct Verified {
    capacity: usize,
    /// By [`key`]; the token itself is kept to be compared whole.
    tokens: HashMap<u64, (String, Known)>,
    /// The key set's generation the entries were verified with.
    generation: u64,
}

impl Verified {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            tokens: HashMap::new(),
            generation: 0,
        }
    }

    /// Forgets every entry when the keys they were verified with are no longer the current ones.
    pub fn track(&mut self, generation: u64) {
        if generation != self.generation {
            self.tokens.clear();
            self.generation = generation;
        }
    }

    pub fn get(&self, token: &str) -> Option<Known> {
        match self.tokens.get(&key(token)) {
            Some((seen, known)) if seen == token => Some(known.clone()),
            _ => None,
        }
    }

    /// Remembers a verified token. When full, everything is forgotten at once: simpler than an LRU and,
    /// since only good tokens get here, not something a client can exploit.
    pub fn insert(&mut self, token: &str, known: Known) {
        if self.capacity == 0 {
            return;
        }
        if self.tokens.len() >= self.capacity {
            self.tokens.clear();
        }
        self.tokens.insert(key(token), (token.to_owned(), known));
    }
}

/// Hashes the token's last bytes (signature bytes, as good as random): hashing a kilobyte-long token
/// whole would cost more than the rest of a cache hit. Two tokens with the same key only evict each other.
fn key(token: &str) -> u64 {
    let bytes = token.as_bytes();
    let mut hasher = DefaultHasher::new();
    bytes[bytes.len().saturating_sub(16)..].hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_key_generation_or_a_full_cache_forgets_everything() {
        let known = Known::new(Token {
            claims: Map::new(),
            context: Vec::new(),
        });
        let mut cache = Verified::new(2);
        cache.insert("a", known.clone());
        cache.insert("b", known.clone());
        assert!(cache.get("a").is_some() && cache.get("b").is_some());
        let c = "c".repeat(20);
        cache.insert(&c, known.clone());
        assert!(cache.get("a").is_none() && cache.get(&c).is_some());
        let twin = "x".repeat(20) + &"c".repeat(16);
        assert!(cache.get(&twin).is_none(), "same key, another token");
        cache.track(0);
        assert!(cache.get(&c).is_some(), "the same generation keeps entries");
        cache.track(1);
        assert!(cache.get(&c).is_none());
        let mut off = Verified::new(0);
        off.insert("a", known);
        assert!(off.get("a").is_none());
    }
}
