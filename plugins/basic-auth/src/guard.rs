//! Who a request is: the user its Basic credentials name, if the password is that user's, or the
//! configured anonymous identity when it sends none.

use crate::credentials::{self, Rejection};
use std::collections::BTreeMap;
use weir_sdk::decoy::Decoys;

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
    /// What a name that is no user's is checked against, so that the time of a refusal does not tell
    /// whether the user exists.
    pub decoys: Decoys<H>,
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
                self.decoys
                    .for_name(&credentials.user)
                    .verify(&credentials.password);
                Err(Rejection::Invalid)
            }
        }
    }
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

    const ARGON: &str =
        "$argon2id$v=19$m=8192,t=2,p=1$c29tZXNhbHQ$AbCdEfGhIjKlMnOpQrStUvWxYz0123456789+/abcde";

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
            decoys: Decoys::build([ARGON], |_, _| Ok::<_, ()>(Fake::new(b"\0never")))
                .ok()
                .flatten()
                .expect("a decoy"),
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
        let decoy = guard.decoys.for_name(b"mallory");
        assert_eq!(*decoy.asked.borrow(), [b"s3cret".to_vec()]);
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
}
