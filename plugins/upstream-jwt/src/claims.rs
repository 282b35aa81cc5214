//! Who a token speaks for, and the claims it says it with: the pure part of the plugin, tested natively.

use core::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value};
use weir_sdk::ConfigError;
use weir_sdk::config::Seconds;

/// A user and its roles, as the auth plugin before this one put them in the context.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    pub user: String,
    pub roles: Vec<String>,
}

/// The roles of a comma-separated context value (`ROLE_USER, ROLE_ADMIN`), in order, blanks dropped.
pub fn roles(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|role| !role.is_empty())
        .map(str::to_owned)
        .collect()
}

/// What a request without an identity gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Anonymous {
    /// `anonymous = false`: 401.
    Refused,
    /// `anonymous = true` (Spring Security's `anonymousUser` / `ROLE_ANONYMOUS`) or `{ user, roles }`.
    As(Identity),
}

impl Default for Anonymous {
    fn default() -> Self {
        Anonymous::As(Identity {
            user: default_anonymous_user(),
            roles: default_anonymous_roles(),
        })
    }
}

fn default_anonymous_user() -> String {
    "anonymousUser".into()
}

fn default_anonymous_roles() -> Vec<String> {
    vec!["ROLE_ANONYMOUS".into()]
}

/// The table form of `anonymous`.
#[derive(Deserialize)]
struct AnonymousTable {
    #[serde(default = "default_anonymous_user")]
    user: String,
    #[serde(default = "default_anonymous_roles")]
    roles: Vec<String>,
}

/// By hand: `anonymous` is a bool or a table, and serde's untagged enums would hide which field of the
/// table was wrong (and the unknown fields the SDK refuses) behind "did not match any variant".
impl<'de> Deserialize<'de> for Anonymous {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Either;
        impl<'de> Visitor<'de> for Either {
            type Value = Anonymous;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("`true`, `false` or a table `{ user, roles }`")
            }

            fn visit_bool<E: de::Error>(self, allowed: bool) -> Result<Anonymous, E> {
                Ok(if allowed {
                    Anonymous::default()
                } else {
                    Anonymous::Refused
                })
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Anonymous, A::Error> {
                let table =
                    AnonymousTable::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(Anonymous::As(Identity {
                    user: table.user,
                    roles: table.roles,
                }))
            }
        }
        deserializer.deserialize_any(Either)
    }
}

/// A token for an upstream is a bearer credential: short-lived, so that one that leaks from an upstream's
/// log is soon worthless.
pub const MAX_TTL: u64 = 24 * 3600;

/// The token's lifetime (`ttl`, seconds or a duration) in seconds, from 1 s to [`MAX_TTL`].
pub fn check_ttl(Seconds(seconds): Seconds) -> Result<u64, String> {
    if (1..=MAX_TTL).contains(&seconds) {
        Ok(seconds)
    } else {
        Err(format!("{seconds} s is outside 1 s to {MAX_TTL} s (24 h)"))
    }
}

/// The claims every token carries besides the identity's: checked once, in `init`.
pub struct Shape {
    pub user_claim: String,
    pub roles_claim: String,
    pub issuer: Option<String>,
    pub audience: Option<Value>,
    pub extra: Map<String, Value>,
    /// The lifetime in seconds, checked.
    pub ttl: u64,
}

impl Shape {
    /// Refuses what would make a token ambiguous or malformed, naming the field.
    pub fn check(&self) -> Result<(), ConfigError> {
        for (field, name) in [
            ("user_claim", &self.user_claim),
            ("roles_claim", &self.roles_claim),
        ] {
            if name.is_empty() {
                return Err(ConfigError::new(field, "must not be empty"));
            }
            if RESERVED.contains(&name.as_str()) {
                return Err(ConfigError::new(
                    field,
                    format!("`{name}` is a registered claim the plugin sets itself"),
                ));
            }
        }
        if self.user_claim == self.roles_claim {
            return Err(ConfigError::new(
                "roles_claim",
                "must differ from user_claim",
            ));
        }
        match &self.audience {
            None | Some(Value::String(_)) => {}
            Some(Value::Array(items))
                if !items.is_empty() && items.iter().all(Value::is_string) => {}
            Some(_) => {
                return Err(ConfigError::new(
                    "audience",
                    "a string, or a non-empty list of strings",
                ));
            }
        }
        for name in self.extra.keys() {
            let taken = RESERVED.contains(&name.as_str())
                || *name == self.user_claim
                || *name == self.roles_claim;
            if taken {
                return Err(ConfigError::new(
                    format!("claims.{name}"),
                    "the plugin sets this claim itself (`issuer`, `audience`, `ttl`, the identity)",
                ));
            }
        }
        Ok(())
    }

    /// The payload of `identity`'s token, issued at `now`.
    pub fn payload(&self, identity: &Identity, now: u64) -> Result<String, serde_json::Error> {
        let mut claims = self.extra.clone();
        claims.insert(self.user_claim.clone(), identity.user.clone().into());
        claims.insert(self.roles_claim.clone(), identity.roles.clone().into());
        if let Some(issuer) = &self.issuer {
            claims.insert("iss".into(), issuer.clone().into());
        }
        if let Some(audience) = &self.audience {
            claims.insert("aud".into(), audience.clone());
        }
        claims.insert("iat".into(), now.into());
        claims.insert("exp".into(), now.saturating_add(self.ttl).into());
        serde_json::to_string(&claims)
    }

    /// The second from which a token minted at `iat` is replaced: when a third of its lifetime is left, so
    /// that it cannot expire on its way through a slow upstream.
    pub fn refresh_at(&self, iat: u64) -> u64 {
        iat.saturating_add(self.ttl - self.ttl / 3)
    }
}

/// Claims the plugin always or optionally sets: configuring one twice would leave which wins to chance.
const RESERVED: [&str; 5] = ["iat", "exp", "nbf", "iss", "aud"];

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn shape() -> Shape {
        Shape {
            user_claim: "sub".into(),
            roles_claim: "authorities".into(),
            issuer: None,
            audience: None,
            extra: Map::new(),
            ttl: 300,
        }
    }

    #[test]
    fn roles_are_split_on_commas_and_trimmed() {
        assert_eq!(roles("ROLE_USER, ROLE_ADMIN"), ["ROLE_USER", "ROLE_ADMIN"]);
        assert_eq!(roles(" a ,, b,"), ["a", "b"]);
        assert!(roles("").is_empty() && roles(" , ").is_empty());
    }

    #[test]
    fn the_payload_says_who_with_its_time_claims() {
        let mut shape = shape();
        shape.issuer = Some("weir".into());
        shape.audience = Some(json!(["analytics", "reports"]));
        shape.extra.insert("tenant".into(), json!({ "id": 7 }));
        let alice = Identity {
            user: "alice".into(),
            roles: vec!["ROLE_USER".into(), "ROLE_ADMIN".into()],
        };
        let payload: Value = serde_json::from_str(&shape.payload(&alice, 1000).unwrap()).unwrap();
        assert_eq!(
            payload,
            json!({
                "sub": "alice", "authorities": ["ROLE_USER", "ROLE_ADMIN"], "iss": "weir",
                "aud": ["analytics", "reports"], "iat": 1000, "exp": 1300, "tenant": { "id": 7 },
            })
        );
        let nobody = Identity {
            user: "x".into(),
            roles: vec![],
        };
        let payload: Value = serde_json::from_str(&shape.payload(&nobody, 0).unwrap()).unwrap();
        assert_eq!(
            payload["authorities"],
            json!([]),
            "no roles is an empty list"
        );
    }

    #[test]
    fn a_claim_cannot_be_configured_twice() {
        let mut taken = shape();
        taken.extra.insert("sub".into(), json!("mallory"));
        assert_eq!(taken.check().unwrap_err().field, "claims.sub");
        let mut taken = shape();
        taken.extra.insert("exp".into(), json!(1));
        assert_eq!(taken.check().unwrap_err().field, "claims.exp");
        let mut same = shape();
        same.roles_claim = "sub".into();
        assert_eq!(same.check().unwrap_err().field, "roles_claim");
        let mut reserved = shape();
        reserved.user_claim = "iss".into();
        assert_eq!(reserved.check().unwrap_err().field, "user_claim");
        let mut audience = shape();
        audience.audience = Some(json!([]));
        assert_eq!(audience.check().unwrap_err().field, "audience");
        audience.audience = Some(json!("api"));
        assert!(audience.check().is_ok());
    }

    #[test]
    fn ttls_are_seconds_or_durations_within_a_day() {
        let ttl = |v: Value| {
            let seconds = serde_json::from_value::<Seconds>(v).map_err(|e| e.to_string())?;
            check_ttl(seconds)
        };
        assert_eq!(ttl(json!(300)), Ok(300));
        assert_eq!(ttl(json!("90s")), Ok(90));
        assert_eq!(ttl(json!("5m")), Ok(300));
        assert_eq!(ttl(json!("2h")), Ok(7200));
        assert_eq!(ttl(json!("120")), Ok(120));
        assert_eq!(ttl(json!("1d")), Ok(MAX_TTL));
        for bad in [
            json!("5 m"),
            json!("m"),
            json!("2d"),
            json!(0),
            json!(-1),
            json!(1.5),
            json!(""),
        ] {
            assert!(ttl(bad.clone()).is_err(), "{bad}");
        }
        assert!(
            ttl(json!(MAX_TTL + 1))
                .unwrap_err()
                .contains("outside 1 s to 86400 s")
        );
    }

    #[test]
    fn a_token_is_replaced_when_a_third_of_its_lifetime_is_left() {
        let mut shape = shape();
        assert_eq!(shape.refresh_at(1000), 1200);
        assert_eq!(shape.refresh_at(u64::MAX), u64::MAX);
        shape.ttl = 1;
        assert_eq!(shape.refresh_at(1000), 1001);
    }

    #[test]
    fn anonymous_is_a_switch_or_an_identity() {
        let anonymous =
            |v: Value| serde_json::from_value::<Anonymous>(v).map_err(|e| e.to_string());
        assert_eq!(anonymous(json!(true)), Ok(Anonymous::default()));
        assert_eq!(anonymous(json!(false)), Ok(Anonymous::Refused));
        assert_eq!(
            anonymous(json!({ "user": "guest", "roles": ["ROLE_GUEST"] })),
            Ok(Anonymous::As(Identity {
                user: "guest".into(),
                roles: vec!["ROLE_GUEST".into()],
            }))
        );
        assert_eq!(
            anonymous(json!({ "user": "guest" })),
            Ok(Anonymous::As(Identity {
                user: "guest".into(),
                roles: vec!["ROLE_ANONYMOUS".into()],
            }))
        );
        assert!(anonymous(json!("anonymousUser")).is_err());
        assert!(anonymous(json!({ "user": 7 })).is_err());
    }
}
