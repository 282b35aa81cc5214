//! The configured users: a password hash each, checked by the host, and what the token and the answer say
//! about them.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value};
use weir_sdk::ConfigError;
use weir_sdk::crypto::PasswordHash;

/// Claims jwt-login sets itself: a user's `claims` may not hold them.
const RESERVED: [&str; 9] = [
    "sub", "iss", "aud", "exp", "nbf", "iat", "jti", "user_id", "role",
];

#[derive(Deserialize)]
pub struct UserConfig {
    /// A PHC string: `$argon2id$…`, `$2b$…` or `$scrypt$…`.
    password: String,
    user_id: Option<Value>,
    role: Option<String>,
    /// More claims for the token and the answer's `user`.
    #[serde(default)]
    claims: Map<String, Value>,
}

pub struct User {
    hash: PasswordHash,
    /// The answer's `user`: `username`, then `user_id`, `role` and the extra claims.
    pub profile: Map<String, Value>,
    /// What the token says of the user besides `sub`: `user_id`, `role` and the extra claims.
    pub claims: Map<String, Value>,
}

pub struct Users {
    by_name: BTreeMap<String, User>,
    /// Checked for a name no user has, so that an unknown user costs what a wrong password does.
    dummy: Option<PasswordHash>,
}

impl Users {
    pub fn load(config: &BTreeMap<String, UserConfig>) -> Result<Users, ConfigError> {
        let mut by_name = BTreeMap::new();
        for (name, user) in config {
            by_name.insert(name.clone(), user.load(name)?);
        }
        let Some((_, first)) = config.iter().next() else {
            return Err(ConfigError::new(
                "users",
                "list the users who may log in: `users.NAME = { password = \"$argon2id$…\" }`",
            ));
        };
        // Without a dummy the first user's own hash serves, its answer ignored: as slow, if less tidy.
        let dummy = dummy_phc(&first.password).and_then(|phc| PasswordHash::load(&phc).ok());
        Ok(Users { by_name, dummy })
    }

    /// The user, if `username` is one and `password` its password. Every call costs one whole hash check.
    pub fn check(&self, username: &str, password: &[u8]) -> Option<&User> {
        match self.by_name.get(username) {
            Some(user) => user.hash.verify(password).then_some(user),
            None => {
                let dummy = self
                    .dummy
                    .as_ref()
                    .or_else(|| self.by_name.values().next().map(|u| &u.hash));
                if let Some(hash) = dummy {
                    let _ = hash.verify(password);
                }
                None
            }
        }
    }
}

impl UserConfig {
    fn load(&self, name: &str) -> Result<User, ConfigError> {
        let field = |member: &str| format!("users.{name}.{member}");
        if name.is_empty() {
            return Err(ConfigError::new("users", "a user name may not be empty"));
        }
        check_claims(&self.claims).map_err(|(claim, message)| {
            ConfigError::new(field(&format!("claims.{claim}")), message)
        })?;
        // The host refuses anything that is not a hash too; saying it here is clearer than its message
        // and never quotes the text, which may be someone's password.
        if !self.password.starts_with('$') {
            return Err(ConfigError::new(
                field("password"),
                "not a password hash: give a PHC string (`$argon2id$…`, `$2b$…`, `$scrypt$…`), never the password itself",
            ));
        }
        let hash = PasswordHash::load(&self.password)
            .map_err(|e| ConfigError::new(field("password"), e))?;
        let mut claims = Map::new();
        match &self.user_id {
            None => {}
            Some(id @ Value::String(_)) => {
                claims.insert("user_id".into(), id.clone());
            }
            Some(Value::Number(n)) if n.is_i64() || n.is_u64() => {
                claims.insert("user_id".into(), Value::Number(n.clone()));
            }
            Some(_) => {
                return Err(ConfigError::new(
                    field("user_id"),
                    "a string or a whole number",
                ));
            }
        }
        if let Some(role) = &self.role {
            claims.insert("role".into(), role.clone().into());
        }
        for (claim, value) in &self.claims {
            claims.insert(claim.clone(), value.clone());
        }
        let mut profile = Map::new();
        profile.insert("username".into(), name.into());
        profile.extend(claims.clone());
        Ok(User {
            hash,
            profile,
            claims,
        })
    }
}

/// The claim that may not be set, and why.
fn check_claims(claims: &Map<String, Value>) -> Result<(), (String, &'static str)> {
    for claim in claims.keys() {
        if RESERVED.contains(&claim.as_str()) {
            return Err((
                claim.clone(),
                "set by jwt-login (`user_id` and `role` are the user's own fields)",
            ));
        }
        if claim == "username" {
            return Err((claim.clone(), "the answer's `user` has it already"));
        }
    }
    Ok(())
}

/// A hash no password matches that costs what `phc` costs: `phc` with its output (bcrypt: salt and
/// output) replaced by zero bits of the same length, so that its algorithm and cost parameters are kept.
/// `None` for a string of no known layout.
pub fn dummy_phc(phc: &str) -> Option<String> {
    let (head, last) = phc.rsplit_once('$')?;
    if head.is_empty() || last.is_empty() {
        return None;
    }
    let bcrypt = ["$2a$", "$2b$", "$2x$", "$2y$"]
        .iter()
        .any(|prefix| phc.starts_with(prefix));
    // A zero in each alphabet: bcrypt's own base64 starts at `.`, the PHC format's standard one at `A`.
    let zero = if bcrypt { "." } else { "A" };
    Some(format!("{head}${}", zero.repeat(last.len())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_dummy_keeps_the_algorithm_and_cost_and_zeroes_the_output() {
        let argon = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHQ$h/dZ2lsbN0TAfpkOt8Ma2lRXK1Qn5GBGSkfGsnsXq4k";
        assert_eq!(
            dummy_phc(argon).unwrap(),
            format!(
                "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHQ${}",
                "A".repeat(43)
            )
        );
        let bcrypt = "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW";
        assert_eq!(
            dummy_phc(bcrypt).unwrap(),
            format!("$2b$12${}", ".".repeat(53))
        );
        let scrypt = "$scrypt$ln=16,r=8,p=1$aM15713r3Xsvxbi31lqr1Q$nFNh2CVHVjNldFVKDHDlm4CbdRSCdEBsjjJxD+iCs5E";
        assert!(
            dummy_phc(scrypt)
                .unwrap()
                .starts_with("$scrypt$ln=16,r=8,p=1$aM15713r3Xsvxbi31lqr1Q$AAAA")
        );
        assert_eq!(dummy_phc("plain"), None);
        assert_eq!(dummy_phc("$argon2id$"), None);
    }

    #[test]
    fn claims_jwt_login_sets_are_refused() {
        for claim in ["exp", "sub", "user_id", "username"] {
            let claims = json!({ "shop": 3, claim: 1 });
            let (refused, _) = check_claims(claims.as_object().unwrap()).unwrap_err();
            assert_eq!(refused, claim);
        }
        let claims = json!({ "shop": 3, "scope": "orders" });
        assert!(check_claims(claims.as_object().unwrap()).is_ok());
    }
}
