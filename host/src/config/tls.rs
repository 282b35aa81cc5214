//! `[server.tls]`: the listener's certificates, as PEM files relative to the config file.

use std::path::PathBuf;

use serde::Deserialize;

use super::Findings;
use super::Step::{Index, Key};

/// The listener's TLS: a default certificate, others chosen by the name the client asks for (SNI), and the
/// CA that clients' own certificates are checked against, when it asks for them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerTls {
    /// The certificate chain, leaf first, served when no `sni` entry names what the client asked for.
    pub cert: PathBuf,
    /// Its private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// An OCSP response for the certificate (DER, as `openssl ocsp -respout` writes it), stapled to the
    /// handshakes of clients that ask for one until its next update ([`crate::tls::Staple`]).
    pub ocsp: Option<PathBuf>,
    #[serde(default)]
    pub sni: Vec<SniCert>,
    /// CA certificates (PEM) that clients' certificates must chain to: with it, the listener asks every
    /// client for a certificate (mutual TLS).
    pub client_ca: Option<PathBuf>,
    /// Revocation lists (PEM) of `client_ca`'s issuers: a client certificate one of them lists is refused.
    pub client_crl: Option<PathBuf>,
    /// Whether a client must show a certificate; `required` unless `client_ca` is unset.
    pub client_cert: Option<ClientCert>,
}

/// Whether the listener refuses a client that shows no certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientCert {
    /// The handshake fails without a certificate that chains to `client_ca`.
    Required,
    /// A client may show none; one it shows must still chain to `client_ca`.
    Optional,
}

/// A certificate served to clients asking for one of `names` (`b.test`, or `*.b.test` for one label).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SniCert {
    pub names: Vec<String>,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ocsp: Option<PathBuf>,
}

impl ListenerTls {
    /// RFC 6125 §6.4.3: a `*` is a whole left-most label standing for exactly one label; anywhere else no
    /// client's name can match it, and the entry would never serve.
    pub(super) fn validate(&self, found: &mut Findings) {
        if self.client_ca.is_none() {
            let needing = [
                ("client_cert", self.client_cert.is_some()),
                ("client_crl", self.client_crl.is_some()),
            ];
            for (field, _) in needing.iter().filter(|(_, set)| *set) {
                found.refuse(
                    &[Key("server"), Key("tls"), Key(field)],
                    "is about clients' certificates, but there is no `client_ca` to check them against",
                );
            }
        }
        for (index, sni) in self.sni.iter().enumerate() {
            let bad = sni.names.iter().find(|name| {
                let rest = name.strip_prefix("*.").unwrap_or(name);
                rest.is_empty() || rest.contains('*')
            });
            if let Some(name) = bad {
                let field = [
                    Key("server"),
                    Key("tls"),
                    Key("sni"),
                    Index(index),
                    Key("names"),
                ];
                found.refuse(
                    &field,
                    format!(
                        "\"{name}\" can never match the name a client asks for: a DNS name, with a `*` \
                         only as its whole first label (\"*.example.test\")"
                    ),
                );
            }
        }
    }
}
