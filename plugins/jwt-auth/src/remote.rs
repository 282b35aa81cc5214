//! A JWKS fetched by URL through the host's `http-client` (the host only lets the plugin reach the hosts
//! its `grants.http` lists), cached for `cache_duration_seconds`.
//!
//! Each plugin instance keeps its own copy. A token whose `kid` is in no cached key makes a refetch, at
//! most once per [`MIN_REFETCH`], which is how a key published after the last fetch is picked up; when a
//! fetch fails the keys already cached stay in use.

use std::time::{Duration, Instant};

use serde::Deserialize;
use weir_sdk::jws::KeyEntry;
use weir_sdk::{http, log};

use crate::keys::Jwks;

const MIN_REFETCH: Duration = Duration::from_secs(30);

#[derive(Deserialize)]
pub struct RemoteConfig {
    /// `http://host[:port]/path`; the host must be in the route entry's `grants.http`.
    pub url: String,
    #[serde(default = "default_cache_duration")]
    pub cache_duration_seconds: u64,
    #[serde(default = "default_timeout")]
    pub timeout_ms: u32,
}

fn default_cache_duration() -> u64 {
    300
}

fn default_timeout() -> u32 {
    2000
}

pub struct RemoteJwks {
    url: String,
    cache_duration: Duration,
    timeout_ms: u32,
    entries: Vec<KeyEntry>,
    fetched_at: Option<Instant>,
    attempted_at: Option<Instant>,
    /// Counts successful fetches: what was verified with an older generation is not trusted any more.
    generation: u64,
}

impl RemoteJwks {
    pub fn new(config: &RemoteConfig) -> Self {
        Self {
            url: config.url.clone(),
            cache_duration: Duration::from_secs(config.cache_duration_seconds),
            timeout_ms: config.timeout_ms,
            entries: Vec::new(),
            fetched_at: None,
            attempted_at: None,
            generation: 0,
        }
    }

    /// The cached keys, fetched first when there are none yet or they are older than the cache duration.
    pub fn entries(&mut self) -> &[KeyEntry] {
        let stale = self
            .fetched_at
            .is_none_or(|at| at.elapsed() >= self.cache_duration);
        if stale && self.may_attempt() {
            self.fetch();
        }
        &self.entries
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Fetches again for a `kid` the cached keys lack. True when the keys changed.
    pub fn refetch_for_unknown_kid(&mut self) -> bool {
        self.may_attempt() && self.fetch()
    }

    /// Not again within moments of the last attempt, so that neither a down JWKS server nor a stream of
    /// tokens with made-up `kid`s turns into one fetch per request.
    fn may_attempt(&self) -> bool {
        let interval = MIN_REFETCH.min(self.cache_duration);
        self.attempted_at.is_none_or(|at| at.elapsed() >= interval)
    }

    fn fetch(&mut self) -> bool {
        self.attempted_at = Some(Instant::now());
        match self.download() {
            Ok(entries) => {
                self.entries = entries;
                self.fetched_at = self.attempted_at;
                self.generation += 1;
                true
            }
            Err(e) => {
                let kept = if self.entries.is_empty() {
                    "no keys cached".to_string()
                } else {
                    format!("keeping the {} keys cached", self.entries.len())
                };
                log::warn(&format!(
                    "fetching the JWKS {} failed: {e}; {kept}",
                    self.url
                ));
                false
            }
        }
    }

    fn download(&self) -> Result<Vec<KeyEntry>, String> {
        let response = http::get(&self.url, self.timeout_ms)?;
        if response.status != 200 {
            return Err(format!("status {}", response.status));
        }
        let text = String::from_utf8(response.body).map_err(|_| "the body is not UTF-8")?;
        Jwks::parse(&text)?.load()
    }
}
