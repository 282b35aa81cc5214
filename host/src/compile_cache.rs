//! The on-disk cache of compiled components, so that a restart loads machine code instead of compiling.
//!
//! Loading a cached file runs it as native code (`Component::deserialize` is unsafe for that reason), so a
//! file is loaded only if Weir wrote it: each file ends with an HMAC-SHA256 of its contents, keyed by a
//! random secret that Weir keeps in the cache directory, readable by its own user only. A file is refused,
//! logged and compiled again when its MAC does not verify, when it was written for another component or
//! engine, or when the file, the key or the directory could have been written by another user (not owned by
//! the effective uid, or group- or world-writable). A refused file is replaced by a good one.
//!
//! A file is the code `Engine::precompile_component` made, then `HEADER` (a domain tag, the component's
//! SHA-256 and the engine's compatibility hash), then the MAC of all that. The header binds a file to its
//! component: a genuine file of one plugin renamed to another's name is refused too. The code comes first
//! so that a verified file is mapped as it is rather than copied (see [`load`]): only the pages a plugin
//! runs become resident, and they are the page cache's, shared by every process that loads the file.

use std::collections::HashSet;
use std::fs::{File, Metadata, OpenOptions};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};

use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// The MAC key's file in the cache directory.
const KEY_FILE: &str = "key";
const KEY_LEN: usize = 32;
const TAG_LEN: usize = 32;
/// Changes whenever the file layout does, so that an older layout is refused rather than misread.
const DOMAIN: &[u8; 16] = b"weir-cwasm-v2\0\0\0";
/// The layout's version in the file's name.
const LAYOUT: &str = "v2";
const HEADER_LEN: usize = DOMAIN.len() + 32 + 8;

/// Why a file in the cache directory is not trusted.
#[derive(Debug, thiserror::Error)]
pub enum Untrusted {
    #[error("cannot open it: {0}")]
    Open(io::Error),
    #[error("it is a symbolic link")]
    Symlink,
    #[error("it is not a regular file")]
    NotAFile,
    #[error("it is not a directory")]
    NotADirectory,
    #[error("its directory: {0}")]
    Directory(Box<Untrusted>),
    #[error("it is owned by uid {owner}, not by Weir's effective uid {euid}")]
    Owner { owner: u32, euid: u32 },
    #[error("its mode {mode:04o} lets other users write to it")]
    Writable { mode: u32 },
    #[error("its mode {mode:04o} lets other users read it")]
    Readable { mode: u32 },
    #[error("cannot read it: {0}")]
    Read(io::Error),
    #[error("it is {0} bytes long, not {KEY_LEN}")]
    KeyLength(u64),
    #[error("it is too short to be a cached component")]
    Short,
    #[error("its MAC does not verify: Weir did not write it")]
    Mac,
    #[error("it was written for another component or engine")]
    Foreign,
}

/// Why the cache cannot be used at all.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cannot create the directory {}: {source}", path.display())]
    CreateDir { path: PathBuf, source: io::Error },
    #[error("the directory {}: {source}", path.display())]
    Dir { path: PathBuf, source: Untrusted },
    #[error("the key {}: {source}; delete it to have Weir make a new one", path.display())]
    Key { path: PathBuf, source: Untrusted },
    #[error("cannot make the key {}: {source}", path.display())]
    MakeKey { path: PathBuf, source: io::Error },
}

pub struct CompileCache {
    dir: PathBuf,
    /// Read (or made) at the first compile and never again, so that the key cannot change under a running
    /// process; `None` when the cache cannot be trusted, which was logged once.
    key: OnceLock<Option<hmac::Key>>,
    /// Files already refused in the log, so that a reload does not repeat it.
    refused: Mutex<HashSet<PathBuf>>,
}

/// Names a component's cache file and binds the file to that component and engine.
struct Entry {
    file: PathBuf,
    header: [u8; HEADER_LEN],
}

impl CompileCache {
    pub fn new(dir: PathBuf) -> CompileCache {
        CompileCache {
            dir,
            key: OnceLock::new(),
            refused: Mutex::new(HashSet::new()),
        }
    }

    /// The component compiled from `wasm`: the cached code if Weir wrote it, else compiled now and cached.
    pub fn component(&self, engine: &Engine, wasm: &[u8]) -> wasmtime::Result<Component> {
        let Some(key) = self.key() else {
            return Component::new(engine, wasm);
        };
        let entry = self.entry(engine, wasm);
        if let Some(component) = self.cached(engine, &entry, key) {
            return Ok(component);
        }
        let compiled = engine.precompile_component(wasm)?;
        match write(&entry, key, &compiled) {
            // Loaded from the file just written, so that it is mapped like any other start's.
            Ok(()) => {
                prune(&self.dir);
                if let Some(component) = self.cached(engine, &entry, key) {
                    return Ok(component);
                }
            }
            Err(e) => {
                tracing::warn!(file = %entry.file.display(), "cannot cache the compiled plugin: {e}")
            }
        }
        // SAFETY: these bytes were produced just now by this engine.
        unsafe { Component::deserialize(engine, &compiled) }
    }

    /// The entry's file, loaded if Weir wrote it; a file that is there but refused is logged.
    fn cached(&self, engine: &Engine, entry: &Entry, key: &hmac::Key) -> Option<Component> {
        match read(&self.dir, entry, key) {
            Ok(Some(verified)) => match load(engine, &verified) {
                Ok(component) => Some(component),
                Err(e) => {
                    self.refuse(&entry.file, &format!("it does not load: {e:#}"));
                    None
                }
            },
            Ok(None) => None,
            Err(reason) => {
                self.refuse(&entry.file, &reason.to_string());
                None
            }
        }
    }

    fn key(&self) -> Option<&hmac::Key> {
        self.key
            .get_or_init(|| {
                open_key(&self.dir)
                    .inspect_err(|e| tracing::warn!("not using the compile cache: {e}"))
                    .ok()
            })
            .as_ref()
    }

    fn entry(&self, engine: &Engine, wasm: &[u8]) -> Entry {
        let mut engine_hash = DefaultHasher::new();
        engine
            .precompile_compatibility_hash()
            .hash(&mut engine_hash);
        let engine_hash = engine_hash.finish();
        let digest = Sha256::digest(wasm);
        let mut name = String::with_capacity(32);
        crate::hex::push(&mut name, &digest[..16]);
        let mut header = [0; HEADER_LEN];
        header[..DOMAIN.len()].copy_from_slice(DOMAIN);
        header[DOMAIN.len()..DOMAIN.len() + 32].copy_from_slice(&digest);
        header[DOMAIN.len() + 32..].copy_from_slice(&engine_hash.to_le_bytes());
        Entry {
            // The layout's version is in the name too, so that a file of an older layout is never read, and
            // never refused with a warning, by a newer Weir.
            file: self
                .dir
                .join(format!("{name}-{engine_hash:016x}.{LAYOUT}.cwasm")),
            header,
        }
    }

    fn refuse(&self, file: &Path, reason: &str) {
        let first = self
            .refused
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(file.to_owned());
        if first {
            tracing::warn!(file = %file.display(), "refusing a cached component, compiling it again: {reason}");
        }
    }
}

/// The MAC key: read from the cache directory, or made there on first use.
fn open_key(dir: &Path) -> Result<hmac::Key, CacheError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| CacheError::CreateDir {
            path: dir.to_owned(),
            source,
        })?;
    check_dir(dir).map_err(|source| CacheError::Dir {
        path: dir.to_owned(),
        source,
    })?;
    let path = dir.join(KEY_FILE);
    let key_error = |source| CacheError::Key {
        path: path.clone(),
        source,
    };
    if let Some(key) = read_key(&path).map_err(key_error)? {
        return Ok(key);
    }
    make_key(dir, &path)?;
    // Read back even when this process made it: another one starting at the same time may have won.
    read_key(&path)
        .map_err(key_error)?
        .ok_or_else(|| CacheError::MakeKey {
            path: path.clone(),
            source: io::ErrorKind::NotFound.into(),
        })
}

fn read_key(path: &Path) -> Result<Option<hmac::Key>, Untrusted> {
    let Some((mut file, meta)) = open_owned(path)? else {
        return Ok(None);
    };
    // Whoever can read the key can forge a cache file.
    if meta.mode() & 0o077 != 0 {
        return Err(Untrusted::Readable {
            mode: meta.mode() & 0o7777,
        });
    }
    if meta.len() != KEY_LEN as u64 {
        return Err(Untrusted::KeyLength(meta.len()));
    }
    let mut secret = [0; KEY_LEN];
    file.read_exact(&mut secret).map_err(Untrusted::Read)?;
    Ok(Some(hmac::Key::new(hmac::HMAC_SHA256, &secret)))
}

/// Writes a new key whole under a temporary name (O_EXCL, mode 0600), then links it into place: the link
/// fails if the key exists, so two processes starting at once cannot overwrite each other's key, and no
/// reader ever sees a key half written.
fn make_key(dir: &Path, path: &Path) -> Result<(), CacheError> {
    let make_error = |source| CacheError::MakeKey {
        path: path.to_owned(),
        source,
    };
    let mut secret = [0; KEY_LEN];
    SystemRandom::new()
        .fill(&mut secret)
        .map_err(|_| make_error(io::Error::other("the system's random source failed")))?;
    let tmp = temporary(dir, KEY_FILE);
    let written = create_exclusive(&tmp).and_then(|mut file| file.write_all(&secret));
    let linked = written.and_then(|()| std::fs::hard_link(&tmp, path));
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(make_error(e)),
        _ => Ok(()),
    }
}

/// A cache file Weir wrote for the entry: open, and its code as read when it was checked.
struct Verified {
    file: File,
    code: Vec<u8>,
}

/// The cache file, if it is there and Weir wrote it for this entry.
fn read(dir: &Path, entry: &Entry, key: &hmac::Key) -> Result<Option<Verified>, Untrusted> {
    // Checked again for each file: the directory is what keeps another user from replacing the key.
    check_dir(dir).map_err(|e| Untrusted::Directory(Box::new(e)))?;
    let Some((mut file, _)) = open_owned(&entry.file)? else {
        return Ok(None);
    };
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(Untrusted::Read)?;
    let Some(signed_len) = bytes.len().checked_sub(TAG_LEN) else {
        return Err(Untrusted::Short);
    };
    let Some(code_len) = signed_len.checked_sub(HEADER_LEN) else {
        return Err(Untrusted::Short);
    };
    let (signed, tag) = bytes.split_at(signed_len);
    hmac::verify(key, signed, tag).map_err(|_| Untrusted::Mac)?;
    if signed[code_len..] != entry.header {
        return Err(Untrusted::Foreign);
    }
    bytes.truncate(code_len);
    Ok(Some(Verified { file, code: bytes }))
}

/// Maps a verified cache file's code instead of copying it into memory; wasmtime parses the code as the ELF
/// object it is, and the header and MAC after it lie past every section. Where the file cannot be mapped
/// executable (a cache directory on a `noexec` mount, no `/proc`), the code as read is loaded instead.
fn load(engine: &Engine, verified: &Verified) -> wasmtime::Result<Component> {
    match map(engine, &verified.file) {
        Ok(component) => Ok(component),
        Err(e) => {
            tracing::debug!("loading a cached component from memory, as mapping it failed: {e:#}");
            // SAFETY: the bytes were read before their MAC was checked, so they are what Weir wrote.
            unsafe { Component::deserialize(engine, &verified.code) }
        }
    }
}

fn map(engine: &Engine, file: &File) -> wasmtime::Result<Component> {
    // The inode the open file descriptor was verified on, whatever has been renamed over the file's name
    // since.
    let path = format!("/proc/self/fd/{}", file.as_raw_fd());
    // SAFETY: the MAC proves that Weir wrote the file with `precompile_component` of an engine with this
    // configuration (the header carries its compatibility hash). It is mapped, not copied, so it must not
    // change while mapped: only Weir's user can write to it (checked on the open file and on its directory),
    // and Weir never writes a cache file in place: a new one is written under another name and renamed
    // over it, which leaves the mapped inode as it was.
    unsafe { Component::deserialize_file(engine, path) }
}

/// Writes the file under a temporary name and renames it into place, so that no reader sees it half
/// written.
fn write(entry: &Entry, key: &hmac::Key, code: &[u8]) -> io::Result<()> {
    let mut mac = hmac::Context::with_key(key);
    mac.update(code);
    mac.update(&entry.header);
    let tag = mac.sign();
    let dir = entry.file.parent().unwrap_or(Path::new("."));
    let name = entry
        .file
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let tmp = temporary(dir, &name);
    let written = create_exclusive(&tmp).and_then(|mut file| {
        file.write_all(code)?;
        file.write_all(&entry.header)?;
        file.write_all(tag.as_ref())
    });
    let renamed = written.and_then(|()| std::fs::rename(&tmp, &entry.file));
    if renamed.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    renamed
}

/// Removes the files of another layout, which this Weir never reads. Done when a compile writes a file,
/// which is when an upgrade leaves them behind. Files of another engine stay: one Weir makes an engine per
/// setting that changes the code (`concurrency_support`), so "another engine" may be this process's next
/// reload, or the other of two configs sharing the directory, and removing its files would make each start
/// compile again. A process still running on a removed file keeps its mapping.
fn prune(dir: &Path) {
    let ours = format!(".{LAYOUT}.cwasm");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let stale = !name.starts_with('.') && name.ends_with(".cwasm") && !name.ends_with(&ours);
        if stale && entry.file_type().is_ok_and(|t| t.is_file()) {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => {
                    tracing::info!(file = %entry.path().display(), "removed a cached component of an older layout")
                }
                Err(e) => {
                    tracing::warn!(file = %entry.path().display(), "cannot remove a cached component of an older layout: {e}")
                }
            }
        }
    }
}

/// A name no other writer uses: the process id and a counter.
fn temporary(dir: &Path, name: &str) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.tmp{}-{n}", std::process::id()));
    // Left by a process that died with this one's id.
    let _ = std::fs::remove_file(&tmp);
    tmp
}

/// O_EXCL does not follow a symbolic link, so the file made is the one named.
fn create_exclusive(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

/// Opens a file without following a symbolic link and checks, on what was opened, that only Weir's user
/// can have written it. `None` if there is no such file.
fn open_owned(path: &Path) -> Result<Option<(File, Metadata)>, Untrusted> {
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Err(Untrusted::Symlink),
        Err(e) => return Err(Untrusted::Open(e)),
    };
    let meta = file.metadata().map_err(Untrusted::Read)?;
    if !meta.is_file() {
        return Err(Untrusted::NotAFile);
    }
    check_owner(&meta)?;
    Ok(Some((file, meta)))
}

fn check_dir(dir: &Path) -> Result<(), Untrusted> {
    let meta = std::fs::metadata(dir).map_err(Untrusted::Open)?;
    if !meta.is_dir() {
        return Err(Untrusted::NotADirectory);
    }
    check_owner(&meta)
}

fn check_owner(meta: &Metadata) -> Result<(), Untrusted> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if meta.uid() != euid {
        return Err(Untrusted::Owner {
            owner: meta.uid(),
            euid,
        });
    }
    if meta.mode() & 0o022 != 0 {
        return Err(Untrusted::Writable {
            mode: meta.mode() & 0o7777,
        });
    }
    Ok(())
}

/// The default cache directory: `$XDG_CACHE_HOME/weir` or `~/.cache/weir`.
pub fn default_cache_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .map(|d| d.join("weir"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn engine() -> Engine {
        Engine::default()
    }

    /// The smallest component there is: compiling it takes milliseconds.
    const EMPTY: &[u8] = b"\0asm\x0d\0\x01\0";

    fn cache(dir: &Path) -> CompileCache {
        CompileCache::new(dir.join("cache"))
    }

    fn cache_file(dir: &Path) -> PathBuf {
        let files: Vec<_> = std::fs::read_dir(dir.join("cache"))
            .expect("cache dir")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
            .collect();
        assert_eq!(files.len(), 1, "{files:?}");
        files[0].clone()
    }

    #[test]
    fn a_cached_component_is_trusted_only_as_weir_wrote_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = engine();
        cache(dir.path())
            .component(&engine, EMPTY)
            .expect("compiled");
        let key = dir.path().join("cache").join(KEY_FILE);
        let key_meta = std::fs::metadata(&key).expect("key made");
        assert_eq!(key_meta.len(), KEY_LEN as u64);
        assert_eq!(key_meta.mode() & 0o777, 0o600);
        let file = cache_file(dir.path());
        let good = std::fs::read(&file).expect("cache file");

        let fresh = cache(dir.path());
        let entry = fresh.entry(&engine, EMPTY);
        let key = fresh.key().expect("key read");
        assert!(matches!(
            read(&dir.path().join("cache"), &entry, key),
            Ok(Some(_))
        ));

        let mut forged = good.clone();
        let last = forged.len() - 1;
        forged[last] ^= 1;
        std::fs::write(&file, &forged).expect("forge");
        assert!(matches!(
            read(&dir.path().join("cache"), &entry, key),
            Err(Untrusted::Mac)
        ));

        std::fs::write(&file, &good).expect("restore");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666)).expect("chmod");
        assert!(matches!(
            read(&dir.path().join("cache"), &entry, key),
            Err(Untrusted::Writable { mode: 0o666 })
        ));

        // Refused, then compiled and written again, good this time.
        fresh.component(&engine, EMPTY).expect("recompiled");
        assert_eq!(std::fs::read(&file).expect("rewritten"), good);
        assert_eq!(
            std::fs::metadata(&file).expect("meta").mode() & 0o777,
            0o600
        );

        let other = cache(dir.path());
        let other_entry = other.entry(&engine, b"\0asm\x0d\0\x01\0 ");
        std::fs::copy(&file, &other_entry.file).expect("rename");
        assert!(matches!(
            read(&dir.path().join("cache"), &other_entry, key),
            Err(Untrusted::Foreign)
        ));
    }

    #[test]
    fn a_compile_removes_the_files_of_older_layouts_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache_dir = dir.path().join("cache");
        std::fs::create_dir_all(&cache_dir).expect("cache dir");
        std::fs::set_permissions(&cache_dir, std::fs::Permissions::from_mode(0o700))
            .expect("chmod");
        let hex = "00112233445566778899aabbccddeeff";
        let stale = [format!("{hex}-0123456789abcdef.cwasm")];
        // Another engine's file: this process's engine with other settings may be the next to want it.
        let other_engine = format!("{hex}-0123456789abcdef.{LAYOUT}.cwasm");
        let kept = [
            other_engine.clone(),
            "notes.txt".to_owned(),
            format!(".{hex}.cwasm.tmp1-0"),
        ];
        for name in stale.iter().chain(&kept) {
            std::fs::write(cache_dir.join(name), b"old").expect("planted");
        }
        let engine = engine();
        cache(dir.path())
            .component(&engine, EMPTY)
            .expect("compiled");
        for name in &kept {
            assert!(cache_dir.join(name).exists(), "{name} is gone");
        }
        std::fs::remove_file(cache_dir.join(&other_engine)).expect("planted");
        // The file just written is the one .cwasm left.
        cache_file(dir.path());
        for name in &stale {
            assert!(!cache_dir.join(name).exists(), "{name} is left");
        }
    }

    #[test]
    fn a_file_that_cannot_be_mapped_loads_from_what_was_read() {
        let engine = engine();
        let code = engine.precompile_component(EMPTY).expect("compiled");
        // A pipe opens through /proc/self/fd as a file does, but cannot be mapped, as a file on a noexec
        // mount cannot be mapped executable.
        let (reader, _writer) = std::io::pipe().expect("pipe");
        let file = File::from(std::os::fd::OwnedFd::from(reader));
        assert!(map(&engine, &file).is_err());
        let verified = Verified { file, code };
        assert!(load(&engine, &verified).is_ok());
    }

    #[test]
    fn an_untrusted_key_or_directory_turns_the_cache_off() {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = engine();
        cache(dir.path())
            .component(&engine, EMPTY)
            .expect("compiled");
        let cache_dir = dir.path().join("cache");
        let key = cache_dir.join(KEY_FILE);

        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        assert!(matches!(
            open_key(&cache_dir),
            Err(CacheError::Key {
                source: Untrusted::Readable { .. },
                ..
            })
        ));
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        assert!(open_key(&cache_dir).is_ok());

        std::fs::set_permissions(&cache_dir, std::fs::Permissions::from_mode(0o777))
            .expect("chmod");
        assert!(matches!(
            open_key(&cache_dir),
            Err(CacheError::Dir {
                source: Untrusted::Writable { .. },
                ..
            })
        ));
        // Still compiles, without the cache.
        cache(dir.path())
            .component(&engine, EMPTY)
            .expect("compiled");
        std::fs::set_permissions(&cache_dir, std::fs::Permissions::from_mode(0o700))
            .expect("chmod");

        std::fs::remove_file(&key).expect("remove key");
        std::os::unix::fs::symlink(dir.path().join("elsewhere"), &key).expect("symlink");
        assert!(matches!(
            open_key(&cache_dir),
            Err(CacheError::Key {
                source: Untrusted::Symlink,
                ..
            })
        ));
    }
}
