//! `[server.tls]`: the listener's certificates, as PEM files relative to the config file.

use std::path::PathBuf;

use serde::Deserialize;

/// The listener's TLS: a default certificate, and others chosen by the name the client asks for (SNI).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerTls {
    /// The certificate chain, leaf first, served when no `sni` entry names what the client asked for.
    pub cert: PathBuf,
    /// Its private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    #[serde(default)]
    pub sni: Vec<SniCert>,
}

/// A certificate served to clients asking for one of `names` (`b.test`, or `*.b.test` for one label).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SniCert {
    pub names: Vec<String>,
    pub cert: PathBuf,
    pub key: PathBuf,
}
