//! State shared by every instance and worker of the proxy and, with the `redis` backend of the server's
//! `[store]`, by every replica: rate-limit counters ([`throttle`]) and small values with a time to live
//! ([`get`], [`set`], [`delete`]). Only a route entry granted `grants.store = true` may use it, and its keys
//! are its own: the host puts the entry's namespace before every key.
//!
//! Every call is bounded by the store's `deadline`; [`StoreError::Unavailable`] says the backend did not
//! answer (down, slow, or known to be down), and what the request gets then is the plugin's decision.
//!
//! ```no_run
//! use weir_sdk::store::{self, Limit};
//! let limits = [Limit {
//!     name: "10/s".into(),
//!     key: "client:192.0.2.7".into(),
//!     rate: 10,
//!     period_ms: 1000,
//!     burst: 20,
//! }];
//! match store::throttle(&limits, 1) {
//!     Ok(verdicts) if verdicts.iter().all(|v| v.allowed) => { /* let it through */ }
//!     Ok(_) => { /* 429 */ }
//!     Err(e) => { /* the store is unavailable, or the call was wrong: `e` says which */ }
//! }
//! ```

pub use crate::bindings::weir::plugin::store::{
    Limit, StoreError, Verdict, delete, get, set, throttle, throttle_local,
};

/// `unavailable: …` or `refused: …`, the reason the host gave.
impl From<StoreError> for crate::Error {
    fn from(error: StoreError) -> Self {
        crate::Error::new(match error {
            StoreError::Unavailable(reason) => format!("the store is unavailable: {reason}"),
            StoreError::Invalid(reason) => format!("the store refused the call: {reason}"),
        })
    }
}
