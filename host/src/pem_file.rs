//! PEM files of certificates and revocation lists: the listener's (`[server.tls]`, its
//! `client_ca` and `client_crl`) and an upstream's (`ca_file`). One loader, so a file that cannot be used
//! is reported in the same words whichever field names it.

use std::path::{Path, PathBuf};

use rustls::RootCertStore;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer};

/// Why a PEM file cannot be used; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum PemFileError {
    #[error("cannot read {}: {source}", file.display())]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not PEM: {source}", file.display())]
    Pem { file: PathBuf, source: pem::Error },
    #[error("{} holds no certificate (a PEM \"CERTIFICATE\" block)", file.display())]
    NoCertificate { file: PathBuf },
    #[error("{} holds no revocation list (a PEM \"X509 CRL\" block)", file.display())]
    NoRevocationList { file: PathBuf },
    #[error("{}: certificate #{index} cannot be a trust anchor: {source}", file.display())]
    Anchor {
        file: PathBuf,
        index: usize,
        source: rustls::Error,
    },
}

pub fn read(file: &Path) -> Result<Vec<u8>, PemFileError> {
    std::fs::read(file).map_err(|source| PemFileError::Read {
        file: file.to_owned(),
        source,
    })
}

/// The file's certificates in order; at least one.
pub fn certificates(file: &Path) -> Result<Vec<CertificateDer<'static>>, PemFileError> {
    at_least_one(file, |file| PemFileError::NoCertificate { file })
}

/// The file's certificate revocation lists; at least one.
pub fn revocation_lists(
    file: &Path,
) -> Result<Vec<CertificateRevocationListDer<'static>>, PemFileError> {
    at_least_one(file, |file| PemFileError::NoRevocationList { file })
}

/// The file's PEM blocks of one kind, in order; `none` is the error for a file without any.
fn at_least_one<T: PemObject>(
    file: &Path,
    none: fn(PathBuf) -> PemFileError,
) -> Result<Vec<T>, PemFileError> {
    let pem = read(file)?;
    let items = T::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| PemFileError::Pem {
            file: file.to_owned(),
            source,
        })?;
    if items.is_empty() {
        return Err(none(file.to_owned()));
    }
    Ok(items)
}

/// Adds the file's certificates to `roots` as trust anchors; they are returned, for their dates.
pub fn add_anchors(
    roots: &mut RootCertStore,
    file: &Path,
) -> Result<Vec<CertificateDer<'static>>, PemFileError> {
    let certs = certificates(file)?;
    for (index, cert) in certs.iter().enumerate() {
        roots
            .add(cert.clone())
            .map_err(|source| PemFileError::Anchor {
                file: file.to_owned(),
                index: index + 1,
                source,
            })?;
    }
    Ok(certs)
}
