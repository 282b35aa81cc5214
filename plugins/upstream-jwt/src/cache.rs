//! Tokens already minted, by identity. An RSA-2048 signature costs about a millisecond, against a few
//! microseconds for the rest of a request: a client's requests reuse its token until a third of its lifetime
//! is left, so an upstream never receives one about to expire, and the proxy signs about once per identity
//! per two thirds of `ttl`.

use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use crate::claims::Identity;

pub struct Tokens {
    capacity: usize,
    entries: HashMap<Identity, Entry>,
    /// Insertion number → identity: the first is the oldest, evicted when the cache is full.
    order: BTreeMap<u64, Identity>,
    inserted: u64,
}

struct Entry {
    /// The whole header value, `Bearer …`.
    value: Rc<str>,
    /// From this second on, a fresh token is minted.
    refresh_at: u64,
    number: u64,
}

impl Tokens {
    pub fn new(capacity: usize) -> Tokens {
        Tokens {
            capacity,
            entries: HashMap::new(),
            order: BTreeMap::new(),
            inserted: 0,
        }
    }

    /// The token of `identity`, while it is still worth sending at `now`.
    pub fn get(&self, identity: &Identity, now: u64) -> Option<Rc<str>> {
        self.entries
            .get(identity)
            .filter(|entry| now < entry.refresh_at)
            .map(|entry| entry.value.clone())
    }

    /// Remembers a token just minted, replacing the identity's older one; when full, the oldest entry goes.
    /// An LRU would keep a busy identity's entry longer, but it is re-minted within two thirds of `ttl`
    /// anyway, which then makes it the newest.
    pub fn insert(&mut self, identity: Identity, value: Rc<str>, refresh_at: u64) {
        if self.capacity == 0 {
            return;
        }
        if let Some(old) = self.entries.get(&identity) {
            self.order.remove(&old.number);
        } else if self.entries.len() >= self.capacity
            && let Some((_, oldest)) = self.order.pop_first()
        {
            self.entries.remove(&oldest);
        }
        self.inserted += 1;
        let number = self.inserted;
        self.order.insert(number, identity.clone());
        self.entries.insert(
            identity,
            Entry {
                value,
                refresh_at,
                number,
            },
        );
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        debug_assert_eq!(self.entries.len(), self.order.len());
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(user: &str) -> Identity {
        Identity {
            user: user.into(),
            roles: vec!["ROLE_USER".into()],
        }
    }

    #[test]
    fn a_token_is_reused_until_its_refresh_time() {
        let mut tokens = Tokens::new(4);
        tokens.insert(who("alice"), "Bearer a".into(), 200);
        assert_eq!(tokens.get(&who("alice"), 0).as_deref(), Some("Bearer a"));
        assert_eq!(tokens.get(&who("alice"), 199).as_deref(), Some("Bearer a"));
        assert_eq!(tokens.get(&who("alice"), 200), None);
        let other_roles = Identity {
            user: "alice".into(),
            roles: vec![],
        };
        assert_eq!(tokens.get(&other_roles, 0), None, "roles are part of who");
        tokens.insert(who("alice"), "Bearer a2".into(), 400);
        assert_eq!(tokens.get(&who("alice"), 300).as_deref(), Some("Bearer a2"));
        assert_eq!(tokens.len(), 1);
    }

    #[test]
    fn a_full_cache_evicts_the_oldest() {
        let mut tokens = Tokens::new(2);
        tokens.insert(who("a"), "Bearer a".into(), 100);
        tokens.insert(who("b"), "Bearer b".into(), 100);
        // Re-minting `a` makes it the newest: `b` is now the oldest.
        tokens.insert(who("a"), "Bearer a2".into(), 100);
        tokens.insert(who("c"), "Bearer c".into(), 100);
        assert_eq!(tokens.len(), 2);
        assert_eq!(tokens.get(&who("b"), 0), None);
        assert!(tokens.get(&who("a"), 0).is_some() && tokens.get(&who("c"), 0).is_some());
    }

    #[test]
    fn size_zero_remembers_nothing() {
        let mut tokens = Tokens::new(0);
        tokens.insert(who("a"), "Bearer a".into(), 100);
        assert_eq!(tokens.get(&who("a"), 0), None);
        assert_eq!(tokens.len(), 0);
    }
}
