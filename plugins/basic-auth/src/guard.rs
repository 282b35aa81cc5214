//! Who a request is: the user its Basic credentials name, if the password is that user's, or the
//! configured anonymous identity when it sends none.

use crate::credentials::{self, Rejection};
use std::collections::BTreeMap;

/// A password check; the host's `password-hash` in the plugin, a stand-in in native tests.
pub trait Verify {
    fn verify(&self, candidate: &[u8]) -> bool;
}

impl Verify for weir_sdk::crypto::PasswordHash {
    fn verify(&self, candidate: &[u8]) -> bool {
        weir_sdk::crypto::PasswordHash::verify(self, candidate)
    }
}

pub struct User<H> {
    pub hash: H,
    /// Comma-joined, as they go into the context.
    pub roles: String,
}

/// Who passed: what goes into the context.
#[derive(Debug, PartialEq, Eq)]
pub struct Identity<'a> {
    pub user: &'a str,
    pub roles: &'a str,
}

pub struct Anonymous {
    pub user: String,
    pub roles: String,
}

pub struct Guard<H> {
    pub users: BTreeMap<String, User<H>>,
    /// A hash no password matches, costing what the first user's costs: an unknown user is checked
    /// against it, so that the time of a refusal does not tell whether the user exists. It is never the
    /// first user's own hash: a candidate that matched would be remembered by the host and answered fast
    /// the next time, telling someone who knows no user name that it is a user's password.
    pub decoy: H,
    pub anonymous: Option<Anonymous>,
}

impl<H: Verify> Guard<H> {
    /// `authorization` is every value of the header: more than one is refused, since which one counts
    /// would be up to each reader.
    pub fn authenticate(&self, authorization: &[Vec<u8>]) -> Result<Identity<'_>, Rejection> {
        let value = match authorization {
            [] => {
                return self
                    .anonymous
                    .as_ref()
                    .map(|a| Identity {
                        user: &a.user,
                        roles: &a.roles,
                    })
                    .ok_or(Rejection::Missing);
            }
            [value] => value,
            _ => return Err(Rejection::Malformed),
        };
        let credentials = credentials::parse(value)?;
        let user = std::str::from_utf8(&credentials.user)
            .ok()
            .and_then(|name| self.users.get_key_value(name));
        match user {
            Some((name, user)) if user.hash.verify(&credentials.password) => Ok(Identity {
                user: name,
                roles: &user.roles,
            }),
            Some(_) => Err(Rejection::Invalid),
            None => {
                self.decoy.verify(&credentials.password);
                Err(Rejection::Invalid)
            }
        }
    }
}

/// The decoy of a hash: the same algorithm and cost with the first character of its output changed, so
/// that no password matches it. `None` for a text that is not a hash the host would load.
pub fn decoy_of(hash: &str) -> Option<String> {
    // PHC strings end with `$<output>`; bcrypt is `$2b$NN$` then 22 characters of salt and 31 of output.
    let output_start = if hash.starts_with("$2") {
        hash.len().checked_sub(31)?
    } else {
        hash.rfind('$')? + 1
    };
    let first = *hash.as_bytes().get(output_start).filter(|b| b.is_ascii())?;
    // `A` and `B` are in both alphabets (PHC's base64 and bcrypt's), and any character there decodes.
    let other = if first == b'A' { "B" } else { "A" };
    let mut decoy = hash.to_owned();
    decoy.replace_range(output_start..=output_start, other);
    Some(decoy)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use std::cell::RefCell;

    /// Matches one password, and records every candidate it was asked about.
    struct Fake {
        password: &'static [u8],
        asked: RefCell<Vec<Vec<u8>>>,
    }

    impl Fake {
        fn new(password: &'static [u8]) -> Self {
            Self {
                password,
                asked: RefCell::default(),
            }
        }
    }

    impl Verify for Fake {
        fn verify(&self, candidate: &[u8]) -> bool {
            self.asked.borrow_mut().push(candidate.to_vec());
            candidate == self.password
        }
    }

    fn guard(anonymous: bool) -> Guard<Fake> {
        let users = BTreeMap::from([(
            "alice".to_string(),
            User {
                hash: Fake::new(b"s3cret"),
                roles: "admin,ops".into(),
            },
        )]);
        Guard {
            users,
            decoy: Fake::new(b"\0never"),
            anonymous: anonymous.then(|| Anonymous {
                user: "anonymousUser".into(),
                roles: "ROLE_ANONYMOUS".into(),
            }),
        }
    }

    fn basic(user_pass: &str) -> Vec<Vec<u8>> {
        let encoded = base64::engine::general_purpose::STANDARD.encode(user_pass);
        vec![format!("Basic {encoded}").into_bytes()]
    }

    #[test]
    fn the_right_password_passes_as_its_user_with_roles() {
        let guard = guard(false);
        assert_eq!(
            guard.authenticate(&basic("alice:s3cret")),
            Ok(Identity {
                user: "alice",
                roles: "admin,ops"
            })
        );
        assert_eq!(
            guard.authenticate(&basic("alice:wrong")),
            Err(Rejection::Invalid)
        );
        assert_eq!(
            guard.authenticate(&basic("Alice:s3cret")),
            Err(Rejection::Invalid),
            "names are exact"
        );
        assert_eq!(guard.authenticate(&[]), Err(Rejection::Missing));
    }

    #[test]
    fn an_unknown_user_costs_a_check_against_the_decoy() {
        let guard = guard(false);
        assert_eq!(
            guard.authenticate(&basic("mallory:s3cret")),
            Err(Rejection::Invalid)
        );
        assert_eq!(*guard.decoy.asked.borrow(), [b"s3cret".to_vec()]);
        assert!(guard.users["alice"].hash.asked.borrow().is_empty());
    }

    #[test]
    fn anonymous_is_for_no_credentials_only() {
        let guard = guard(true);
        assert_eq!(
            guard.authenticate(&[]),
            Ok(Identity {
                user: "anonymousUser",
                roles: "ROLE_ANONYMOUS"
            })
        );
        assert_eq!(
            guard.authenticate(&basic("alice:wrong")),
            Err(Rejection::Invalid)
        );
        assert_eq!(
            guard.authenticate(&[b"Basic !".to_vec()]),
            Err(Rejection::Malformed)
        );
        assert_eq!(
            guard.authenticate(&[b"Bearer x".to_vec()]),
            Err(Rejection::WrongScheme)
        );
    }

    #[test]
    fn two_authorization_headers_are_malformed() {
        let mut two = basic("alice:s3cret");
        two.extend(basic("alice:s3cret"));
        assert_eq!(guard(true).authenticate(&two), Err(Rejection::Malformed));
    }

    #[test]
    fn a_decoy_differs_from_its_hash_in_the_output_only() {
        let argon =
            "$argon2id$v=19$m=8192,t=2,p=1$c29tZXNhbHQ$AbCdEfGhIjKlMnOpQrStUvWxYz0123456789+/abcde";
        let decoy = decoy_of(argon).unwrap();
        assert_eq!(decoy.len(), argon.len());
        assert_eq!(decoy, argon.replacen("$AbCd", "$BbCd", 1));
        let bcrypt = "$2b$04$abcdefghijklmnopqrstuuNqZCLHz2Cn7wx7Ue3tXhS2cnY7ATLyO";
        let decoy = decoy_of(bcrypt).unwrap();
        assert_eq!(&decoy[..29], &bcrypt[..29]);
        assert_eq!(&decoy[29..30], "A");
        assert_eq!(&decoy[30..], &bcrypt[30..]);
        assert_eq!(decoy_of("$2b$"), None);
        assert_eq!(decoy_of("plain"), None);
    }
}
