//! The `password-hash` resource: argon2 and scrypt PHC strings and bcrypt hashes, checked natively.
//!
//! A check is slow on purpose (tens of milliseconds, and for argon2 tens of MiB), so it runs on tokio's
//! blocking pool, never on a worker thread that serves other connections, and at most one per core at a
//! time. The time a plugin spends waiting for it is not its CPU time. A candidate that matched is
//! remembered, process-wide, by an HMAC of the hash and the candidate under a key drawn at start-up, so a
//! client's repeated `Authorization` header costs microseconds. A candidate that did not match is never
//! remembered: each wrong guess costs the whole check, which is what makes guessing expensive.
//!
//! Neither a hash nor a candidate appears in an error, a log line or a `Debug` output.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash as Phc, PasswordVerifier};
use ring::rand::SystemRandom;
use ring::{digest, hmac};
use tokio::sync::Semaphore;
use wasmtime::component::Resource;

use crate::plugin::bindings::weir::plugin::crypto::HostPasswordHash;
use crate::sandbox::HostState;

/// Hashes live in host memory, outside the plugin's memory limit: a plugin loading them in a loop is
/// stopped here. A hash takes about 200 bytes, so 64 instances holding 4096 users each hold ~50 MiB.
pub const MAX_PER_INSTANCE: usize = 4096;
/// How long a matched candidate is remembered: a client's session of clicks, not a day. A password changed
/// in the config is a new hash, which remembers nothing, so this bounds only how long a password stays
/// cheap to present after it was last checked.
pub const REMEMBER_FOR: Duration = Duration::from_secs(10 * 60);
/// How many matched candidates are remembered, the oldest forgotten first: 10,000 × ~100 bytes is ~1 MiB.
pub const REMEMBERED: usize = 10_000;

/// Hash texts longer than this are refused: the longest PHC string of the supported schemes, with a
/// 64-byte salt and output, is under 200 bytes.
const MAX_TEXT: usize = 512;
/// Longer candidates are not checked: no person types one, and hashing megabytes is work for nothing.
const MAX_CANDIDATE: usize = 4096;
/// Memory of one check, in KiB: a check holds it for its whole run, and as many checks run as cores.
const MAX_MEMORY_KIB: u64 = 256 * 1024;
/// Memory × passes of one check, in KiB: past it one check takes about a second (argon2 fills ~1 GiB/s per
/// core), which ties up a core and outlasts a plugin's default `wall_timeout` under load.
const MAX_WORK_KIB: u64 = 1 << 20;
/// Argon2 lanes and scrypt's `p`; this implementation runs them one after another, so they multiply work.
const MAX_PARALLELISM: u32 = 16;
/// bcrypt's cost is a power of two: cost 12 is ~250 ms, cost 14 about a second.
const MAX_BCRYPT_COST: u32 = 14;
/// bcrypt uses the first 72 bytes of a password. Longer candidates are refused rather than truncated, so a
/// password and its 72-byte prefix never both pass, as Python's `bcrypt` refuses them too.
const BCRYPT_MAX_PASSWORD: usize = 72;

/// Why a hash text was refused. No variant holds the text: it may be a password written where its hash
/// belongs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    #[error(
        "not a password hash: give a PHC string ($argon2id$…, $scrypt$…) or a bcrypt hash ($2b$…); \
         plain-text passwords are refused"
    )]
    NotAHash,
    #[error(
        "an unknown `$…$` hash scheme: Weir checks argon2 ($argon2id$, $argon2i$, $argon2d$), \
         bcrypt ($2a$, $2b$, $2y$) and scrypt ($scrypt$)"
    )]
    UnknownScheme,
    #[error("{scheme} hashes are not supported: {advice}")]
    Unsupported {
        scheme: &'static str,
        advice: &'static str,
    },
    #[error("malformed {scheme} hash: {reason}")]
    Malformed {
        scheme: &'static str,
        reason: String,
    },
    #[error("the {scheme} hash costs too much to check: {limit}")]
    TooCostly { scheme: &'static str, limit: String },
    #[error("too many password hashes: a plugin instance holds at most {MAX_PER_INSTANCE}")]
    TooMany,
}

/// Schemes refused by name, with what to do instead.
const UNSUPPORTED: &[(&str, &str, &str)] = &[
    ("$apr1$", "Apache MD5 ($apr1$)", FAST),
    ("$1$", "MD5-crypt ($1$)", FAST),
    ("$5$", "SHA-256-crypt ($5$)", FAST),
    ("$6$", "SHA-512-crypt ($6$)", FAST),
    ("{SHA}", "SHA-1 ({SHA})", FAST),
    ("{SSHA}", "salted SHA-1 ({SSHA})", FAST),
    ("$pbkdf2", "PBKDF2", FAST),
    (
        "$2x$",
        "bcrypt $2x$",
        "the prefix marks hashes of the buggy crypt_blowfish of before 2011; hash the password again",
    ),
    (
        "$7$",
        "scrypt in crypt format ($7$)",
        "write it as a PHC string, $scrypt$ln=…,r=…,p=…$salt$hash",
    ),
    ("$y$", "yescrypt ($y$)", FAST),
];

const FAST: &str = "a guess costs an attacker microseconds; hash the password again with argon2id, or with \
                    bcrypt (`htpasswd -B`)";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Argon2id,
    Argon2i,
    Argon2d,
    Bcrypt,
    Scrypt,
}

impl Scheme {
    fn name(self) -> &'static str {
        match self {
            Scheme::Argon2id => "argon2id",
            Scheme::Argon2i => "argon2i",
            Scheme::Argon2d => "argon2d",
            Scheme::Bcrypt => "bcrypt",
            Scheme::Scrypt => "scrypt",
        }
    }

    fn of(text: &str) -> Result<Scheme, LoadError> {
        if let Some(&(_, scheme, advice)) = UNSUPPORTED.iter().find(|(p, ..)| text.starts_with(p)) {
            return Err(LoadError::Unsupported { scheme, advice });
        }
        let schemes = [
            ("$argon2id$", Scheme::Argon2id),
            ("$argon2i$", Scheme::Argon2i),
            ("$argon2d$", Scheme::Argon2d),
            ("$scrypt$", Scheme::Scrypt),
            ("$2a$", Scheme::Bcrypt),
            ("$2b$", Scheme::Bcrypt),
            ("$2y$", Scheme::Bcrypt),
        ];
        match schemes.iter().find(|(prefix, _)| text.starts_with(prefix)) {
            Some(&(_, scheme)) => Ok(scheme),
            None if text.starts_with('$') => Err(LoadError::UnknownScheme),
            None => Err(LoadError::NotAHash),
        }
    }
}

/// A hash a plugin loaded; cheap to clone, so that a check can take it to another thread.
#[derive(Clone)]
pub struct PasswordHash(Arc<Loaded>);

struct Loaded {
    scheme: Scheme,
    text: Box<str>,
    /// SHA-256 of the text: what the remembered candidates are keyed by, beside the candidate.
    identity: [u8; 32],
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordHash")
            .field("scheme", &self.0.scheme.name())
            .finish_non_exhaustive()
    }
}

/// How a verification went: remembered, or checked (and whether it matched).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Remembered,
    Checked(bool),
    /// Too long to be a password; not checked.
    Refused,
}

impl Outcome {
    pub fn matched(self) -> bool {
        matches!(self, Outcome::Remembered | Outcome::Checked(true))
    }
}

impl PasswordHash {
    /// Parses and bounds a hash; nothing is hashed, so loading thousands of users is quick.
    pub fn load(text: &str) -> Result<PasswordHash, LoadError> {
        let scheme = Scheme::of(text)?;
        let malformed = |reason: &dyn fmt::Display| LoadError::Malformed {
            scheme: scheme.name(),
            reason: reason.to_string(),
        };
        if text.len() > MAX_TEXT {
            return Err(malformed(&format_args!("longer than {MAX_TEXT} bytes")));
        }
        match scheme {
            Scheme::Bcrypt => check_bcrypt(text).map_err(|e| match e {
                BcryptProblem::Malformed(reason) => malformed(&reason),
                BcryptProblem::Cost(cost) => LoadError::TooCostly {
                    scheme: "bcrypt",
                    limit: format!("cost {cost}, at most {MAX_BCRYPT_COST}"),
                },
            })?,
            Scheme::Scrypt => {
                let phc = Phc::new(text).map_err(|e| malformed(&e))?;
                let params = scrypt::Params::try_from(&phc).map_err(|e| malformed(&e))?;
                check_output(&phc).map_err(|e| malformed(&e))?;
                // 128 · r · 2^ln bytes; a sum past u64 is simply too much.
                let memory_kib = 1u64
                    .checked_shl(u32::from(params.log_n()))
                    .and_then(|n| n.checked_mul(128 * u64::from(params.r())))
                    .map_or(u64::MAX, |bytes| bytes >> 10);
                let work = memory_kib.saturating_mul(u64::from(params.p()));
                bounded(scheme, memory_kib, work, params.p())?;
            }
            Scheme::Argon2id | Scheme::Argon2i | Scheme::Argon2d => {
                let phc = Phc::new(text).map_err(|e| malformed(&e))?;
                let params = argon2::Params::try_from(&phc).map_err(|e| malformed(&e))?;
                argon2::Version::try_from(phc.version.unwrap_or(0x13))
                    .map_err(|e| malformed(&e))?;
                check_output(&phc).map_err(|e| malformed(&e))?;
                // A hash made with a secret key (a pepper) verifies only with that key, which the host
                // does not have: every password would fail, silently.
                if phc.params.get("keyid").is_some() {
                    return Err(malformed(
                        &"made with a secret key (`keyid`), which Weir does not hold",
                    ));
                }
                let memory_kib = u64::from(params.m_cost());
                let work = memory_kib.saturating_mul(u64::from(params.t_cost()));
                bounded(scheme, memory_kib, work, params.p_cost())?;
            }
        }
        let identity = digest::digest(&digest::SHA256, text.as_bytes());
        let mut id = [0u8; 32];
        id.copy_from_slice(identity.as_ref());
        Ok(PasswordHash(Arc::new(Loaded {
            scheme,
            text: text.into(),
            identity: id,
        })))
    }

    /// Whether `candidate` is the password: remembered, or checked on the blocking pool.
    pub async fn verify(&self, candidate: Vec<u8>) -> Outcome {
        if candidate.len() > MAX_CANDIDATE {
            return Outcome::Refused;
        }
        let memory = remembered();
        let tag = memory.map(|m| m.tag(&self.0.identity, &candidate));
        if let (Some(memory), Some(tag)) = (memory, &tag)
            && memory.contains(tag, Instant::now())
        {
            return Outcome::Remembered;
        }
        let matched = self.check_off_the_runtime(candidate).await;
        if matched && let (Some(memory), Some(tag)) = (memory, tag) {
            memory.insert(tag, Instant::now());
        }
        Outcome::Checked(matched)
    }

    async fn check_off_the_runtime(&self, candidate: Vec<u8>) -> bool {
        // More checks at once than cores would only share the cores, each holding its memory longer.
        let Ok(permit) = checks().clone().acquire_owned().await else {
            return false;
        };
        let loaded = self.0.clone();
        if tokio::runtime::Handle::try_current().is_err() {
            return loaded.check(&candidate);
        }
        let check = tokio::task::spawn_blocking(move || {
            // Held until the check ends, even when the call waiting for it was abandoned.
            let _permit = permit;
            loaded.check(&candidate)
        });
        check.await.unwrap_or_else(|e| {
            tracing::error!("a password check did not finish: {e}");
            false
        })
    }
}

impl Loaded {
    /// The check itself: slow by design.
    fn check(&self, candidate: &[u8]) -> bool {
        match self.scheme {
            // Python's bcrypt refuses NUL bytes, and C implementations stop at the first: refusing them
            // keeps one password from meaning two things.
            Scheme::Bcrypt => {
                candidate.len() <= BCRYPT_MAX_PASSWORD
                    && !candidate.contains(&0)
                    && bcrypt::verify(candidate, &self.text).unwrap_or(false)
            }
            Scheme::Scrypt => Phc::new(&self.text)
                .is_ok_and(|phc| scrypt::Scrypt.verify_password(candidate, &phc).is_ok()),
            Scheme::Argon2id | Scheme::Argon2i | Scheme::Argon2d => {
                Phc::new(&self.text).is_ok_and(|phc| {
                    argon2::Argon2::default()
                        .verify_password(candidate, &phc)
                        .is_ok()
                })
            }
        }
    }
}

fn check_output(phc: &Phc<'_>) -> Result<(), &'static str> {
    if phc.salt.is_none() {
        return Err("no salt");
    }
    if phc.hash.is_none() {
        return Err("no hash output");
    }
    Ok(())
}

fn bounded(
    scheme: Scheme,
    memory_kib: u64,
    work_kib: u64,
    parallelism: u32,
) -> Result<(), LoadError> {
    let limit = if memory_kib > MAX_MEMORY_KIB {
        format!(
            "{} MiB per check, at most {} MiB",
            memory_kib >> 10,
            MAX_MEMORY_KIB >> 10
        )
    } else if work_kib > MAX_WORK_KIB {
        format!(
            "{} MiB of memory to fill (memory × passes), at most {} MiB",
            work_kib >> 10,
            MAX_WORK_KIB >> 10
        )
    } else if parallelism > MAX_PARALLELISM {
        format!("parallelism {parallelism}, at most {MAX_PARALLELISM}")
    } else {
        return Ok(());
    };
    Err(LoadError::TooCostly {
        scheme: scheme.name(),
        limit,
    })
}

const BCRYPT_ALPHABET: &[u8; 64] =
    b"./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

enum BcryptProblem {
    Malformed(&'static str),
    Cost(u32),
}

/// `$2b$NN$` then 22 characters of salt and 31 of output, in bcrypt's base64 alphabet.
fn check_bcrypt(text: &str) -> Result<(), BcryptProblem> {
    let bytes = text.as_bytes();
    if bytes.len() != 60 {
        return Err(BcryptProblem::Malformed("not 60 characters long"));
    }
    let cost = match (bytes[4], bytes[5], bytes[6]) {
        (tens @ b'0'..=b'9', units @ b'0'..=b'9', b'$') => {
            u32::from(tens - b'0') * 10 + u32::from(units - b'0')
        }
        _ => return Err(BcryptProblem::Malformed("no two-digit cost")),
    };
    if !(4..=31).contains(&cost) {
        return Err(BcryptProblem::Malformed("the cost is not from 04 to 31"));
    }
    if cost > MAX_BCRYPT_COST {
        return Err(BcryptProblem::Cost(cost));
    }
    let Some(digits) = bytes[7..]
        .iter()
        .map(|b| BCRYPT_ALPHABET.iter().position(|a| a == b))
        .collect::<Option<Vec<usize>>>()
    else {
        return Err(BcryptProblem::Malformed(
            "the salt and output are not bcrypt's base64",
        ));
    };
    // The last character of the salt (16 bytes in 22 characters) and of the output (23 bytes in 31) carry
    // padding bits a correct encoder leaves zero; the check's decoder refuses any other, and every
    // password would fail later with no word of why.
    if digits[21] % 16 != 0 || digits[52] % 4 != 0 {
        return Err(BcryptProblem::Malformed(
            "the salt or output is not canonical base64",
        ));
    }
    Ok(())
}

/// Candidates that matched, by an HMAC of (hash, candidate): neither can be read back from it, and its
/// key exists only in this process, so the map is no help in guessing either.
struct Remembered {
    key: hmac::Key,
    ttl: Duration,
    capacity: usize,
    entries: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    at: HashMap<[u8; 32], Instant>,
    /// Insertion order, oldest first: what is forgotten first.
    order: VecDeque<([u8; 32], Instant)>,
}

impl Remembered {
    /// `None` when the system gives no randomness for the key: then nothing is remembered and every
    /// request pays the whole check, which is slower but as safe.
    fn new(ttl: Duration, capacity: usize) -> Option<Remembered> {
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &SystemRandom::new()).ok()?;
        Some(Remembered {
            key,
            ttl,
            capacity,
            entries: Mutex::default(),
        })
    }

    fn tag(&self, identity: &[u8; 32], candidate: &[u8]) -> [u8; 32] {
        // The identity has a fixed length, so (identity, candidate) splits one way only.
        let mut context = hmac::Context::with_key(&self.key);
        context.update(identity);
        context.update(candidate);
        let mut tag = [0u8; 32];
        tag.copy_from_slice(context.sign().as_ref());
        tag
    }

    fn contains(&self, tag: &[u8; 32], now: Instant) -> bool {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries
            .at
            .get(tag)
            .is_some_and(|at| now.saturating_duration_since(*at) < self.ttl)
    }

    fn insert(&self, tag: [u8; 32], now: Instant) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let Entries { at, order } = &mut *entries;
        // Insertion order is time order, so the expired entries are all at the front.
        while let Some(&(old, when)) = order.front() {
            let expired = now.saturating_duration_since(when) >= self.ttl;
            if !expired && at.len() < self.capacity {
                break;
            }
            order.pop_front();
            if at.get(&old) == Some(&when) {
                at.remove(&old);
            }
        }
        // Two requests checking the same credentials at once both insert it; the first one stands.
        if at
            .get(&tag)
            .is_some_and(|when| now.saturating_duration_since(*when) < self.ttl)
        {
            return;
        }
        at.insert(tag, now);
        order.push_back((tag, now));
    }
}

fn remembered() -> Option<&'static Remembered> {
    static REMEMBERED_CANDIDATES: OnceLock<Option<Remembered>> = OnceLock::new();
    REMEMBERED_CANDIDATES
        .get_or_init(|| Remembered::new(REMEMBER_FOR, REMEMBERED))
        .as_ref()
}

/// One check per core at a time, process-wide.
fn checks() -> &'static Arc<Semaphore> {
    static CHECKS: OnceLock<Arc<Semaphore>> = OnceLock::new();
    CHECKS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        Arc::new(Semaphore::new(cores))
    })
}

impl HostPasswordHash for HostState {
    fn load(&mut self, text: String) -> wasmtime::Result<Result<Resource<PasswordHash>, String>> {
        if self.password_hashes >= MAX_PER_INSTANCE {
            return Ok(Err(LoadError::TooMany.to_string()));
        }
        match PasswordHash::load(&text) {
            Ok(hash) => {
                let handle = self.table.push(hash)?;
                self.password_hashes += 1;
                Ok(Ok(handle))
            }
            Err(error) => Ok(Err(error.to_string())),
        }
    }

    async fn verify(
        &mut self,
        hash: Resource<PasswordHash>,
        candidate: Vec<u8>,
    ) -> wasmtime::Result<bool> {
        let hash = self.table.get(&hash)?.clone();
        let outcome = hash.verify(candidate).await;
        if let Outcome::Checked(_) = outcome {
            // The check ran on another thread: not this plugin's CPU time.
            self.waited_on_host = true;
        }
        Ok(outcome.matched())
    }

    fn drop(&mut self, hash: Resource<PasswordHash>) -> wasmtime::Result<()> {
        self.table.delete(hash)?;
        self.password_hashes -= 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::password_hash::{PasswordHasher, SaltString};

    const PASSWORD: &[u8] = b"correct horse";

    /// Small parameters: the tests run unoptimised.
    fn argon2id_salted(salt: &[u8]) -> String {
        let argon = argon2::Argon2::new(
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            argon2::Params::new(1024, 1, 1, None).unwrap(),
        );
        let salt = SaltString::encode_b64(salt).unwrap();
        argon.hash_password(PASSWORD, &salt).unwrap().to_string()
    }

    fn argon2id() -> String {
        argon2id_salted(b"0123456789abcdef")
    }

    fn scrypt() -> String {
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        scrypt::Scrypt
            .hash_password_customized(
                PASSWORD,
                None,
                None,
                scrypt::Params::new(4, 8, 1, 32).unwrap(),
                &salt,
            )
            .unwrap()
            .to_string()
    }

    fn bcrypt() -> String {
        bcrypt::hash_with_salt(PASSWORD, 4, *b"0123456789abcdef")
            .unwrap()
            .format_for_version(bcrypt::Version::TwoB)
    }

    #[tokio::test]
    async fn each_scheme_verifies_its_password_only() {
        for text in [argon2id(), scrypt(), bcrypt()] {
            let hash = PasswordHash::load(&text).unwrap();
            assert!(hash.verify(PASSWORD.to_vec()).await.matched(), "{text}");
            assert!(
                !hash.verify(b"wrong horse".to_vec()).await.matched(),
                "{text}"
            );
            assert!(!hash.verify(Vec::new()).await.matched(), "{text}");
        }
    }

    #[tokio::test]
    async fn a_match_is_remembered_and_a_miss_never_is() {
        let hash = PasswordHash::load(&argon2id()).unwrap();
        // A password no other test uses: the memory is the process's.
        let wrong = b"remembered? never".to_vec();
        assert_eq!(hash.verify(wrong.clone()).await, Outcome::Checked(false));
        assert_eq!(hash.verify(wrong).await, Outcome::Checked(false));
        let first = hash.verify(PASSWORD.to_vec()).await;
        assert!(matches!(
            first,
            Outcome::Checked(true) | Outcome::Remembered
        ));
        assert_eq!(hash.verify(PASSWORD.to_vec()).await, Outcome::Remembered);
        // Another hash of the same password remembers nothing.
        let other = PasswordHash::load(&argon2id_salted(b"another salt....")).unwrap();
        assert_eq!(
            other.verify(PASSWORD.to_vec()).await,
            Outcome::Checked(true)
        );
    }

    #[test]
    fn bcrypt_refuses_what_it_would_truncate_or_cut_at_nul() {
        let long = [b'a'; 72];
        let text = bcrypt::hash_with_salt(long, 4, *b"0123456789abcdef")
            .unwrap()
            .format_for_version(bcrypt::Version::TwoB);
        let hash = PasswordHash::load(&text).unwrap();
        assert!(hash.0.check(&long));
        assert!(!hash.0.check(&[&long[..], b"b"].concat()));
        assert!(!hash.0.check(b"correct\0horse"));
    }

    #[test]
    fn the_memory_forgets_the_oldest_and_the_expired() {
        let memory = Remembered::new(Duration::from_secs(60), 2).unwrap();
        let identity = [7u8; 32];
        let (a, b, c) = (
            memory.tag(&identity, b"a"),
            memory.tag(&identity, b"b"),
            memory.tag(&identity, b"c"),
        );
        assert_ne!(
            a,
            memory.tag(&[8u8; 32], b"a"),
            "the hash is part of the key"
        );
        let start = Instant::now();
        memory.insert(a, start);
        memory.insert(b, start + Duration::from_secs(1));
        assert!(memory.contains(&a, start + Duration::from_secs(2)));
        memory.insert(c, start + Duration::from_secs(2));
        assert!(
            !memory.contains(&a, start + Duration::from_secs(2)),
            "the oldest went"
        );
        assert!(memory.contains(&b, start + Duration::from_secs(2)));
        assert!(
            !memory.contains(&b, start + Duration::from_secs(61)),
            "expired"
        );
        memory.insert(a, start + Duration::from_millis(61_500));
        let entries = memory.entries.lock().unwrap();
        assert_eq!(entries.at.len(), 2, "b expired and was dropped, c was not");
        assert_eq!(entries.order.len(), 2);
    }

    #[test]
    fn refusals_never_repeat_the_text() {
        let argon = argon2id();
        let bcrypt = bcrypt();
        let huge_memory = argon.replace("m=1024", "m=4194304");
        let many_passes = argon.replace("t=1", "t=2000");
        let cases = [
            ("hunter2".to_string(), "not a password hash"),
            ("$ecret$password".into(), "unknown `$…$` hash scheme"),
            ("$apr1$abcdefgh$0123456789abcdefghijkl".into(), "Apache MD5"),
            ("{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=".into(), "SHA-1"),
            ("$6$salt$secret".into(), "SHA-512-crypt"),
            (
                "$2x$05$abcdefghijklmnopqrstuuNqZCLHz2Cn7wx7Ue3tXhS2cnY7ATLyO".into(),
                "crypt_blowfish",
            ),
            (bcrypt.replace("$04$", "$15$"), "cost 15, at most 14"),
            (bcrypt.replace("$04$", "$03$"), "from 04 to 31"),
            (bcrypt[..59].to_string(), "60 characters"),
            (format!("{}!", &bcrypt[..59]), "bcrypt's base64"),
            (huge_memory, "4096 MiB per check, at most 256 MiB"),
            (many_passes, "memory to fill"),
            (
                argon.replace("$argon2id$", "$argon2id$v=99$"),
                "malformed argon2id",
            ),
            (
                argon.rsplit_once('$').unwrap().0.to_string(),
                "malformed argon2id",
            ),
            (
                format!("{argon}{}", "A".repeat(600)),
                "longer than 512 bytes",
            ),
            (scrypt().replace("ln=4", "ln=30"), "costs too much"),
            (scrypt().replace("ln=4", "ln=62"), ""),
            (argon.replace("p=1$", "p=1,keyid=AAAA$"), "secret key"),
        ];
        for (text, wanted) in cases {
            let error = PasswordHash::load(&text).unwrap_err().to_string();
            assert!(error.contains(wanted), "{text}: {error}");
            // The scheme's own prefix may be named; nothing after it.
            let secret_part = text.rsplit('$').next().unwrap_or(&text);
            assert!(
                secret_part.len() < 4 || !error.contains(secret_part),
                "{error} repeats {secret_part}"
            );
            assert!(!error.contains(&text), "{error}");
        }
    }

    #[test]
    fn debug_shows_the_scheme_only() {
        let text = argon2id();
        let shown = format!("{:?}", PasswordHash::load(&text).unwrap());
        assert_eq!(shown, "PasswordHash { scheme: \"argon2id\", .. }");
    }
}
