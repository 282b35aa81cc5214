//! The configured users: a password hash each, checked by the host, and what the token and the answer say
//! about them.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value};
use weir_sdk::ConfigError;
use weir_sdk::crypto::PasswordHash;
use weir_sdk::decoy::{DecoyError, Decoys};

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
    decoys: Decoys<PasswordHash>,
}

impl Users {
    pub fn load(config: &BTreeMap<String, UserConfig>) -> Result<Users, ConfigError> {
        let decoys = Decoys::build(
            config.values().map(|u| u.password.as_str()),
            |index, phc| PasswordHash::load(&phc).map_err(|message| (index, message)),
        )
        .map_err(|e| {
            let (index, message) = match e {
                DecoyError::Unknown(index) => (index, None),
                DecoyError::Load((index, message)) => (index, Some(message)),
            };
            let (name, user) = config.iter().nth(index).unzip();
            let name = name.map_or("", |n| n.as_str());
            // A text of no known layout is most likely not a hash at all: the user's own check says so
            // best, without quoting it.
            let own = user.and_then(|u| u.load(name).err());
            own.unwrap_or_else(|| {
                let message = message.unwrap_or_else(|| "no decoy can be made of this hash".into());
                ConfigError::new(format!("users.{name}.password"), message)
            })
        })?
        .ok_or_else(|| {
            ConfigError::new(
                "users",
                "list the users who may log in: `users.NAME = { password = \"$argon2id$…\" }`",
            )
        })?;
        let mut by_name = BTreeMap::new();
        for (name, user) in config {
            by_name.insert(name.clone(), user.load(name)?);
        }
        Ok(Users { by_name, decoys })
    }

    /// The user, if `username` is one and `password` its password. Every call costs one whole hash check.
    pub fn check(&self, username: &str, password: &[u8]) -> Option<&User> {
        match self.by_name.get(username) {
            Some(user) => user.hash.verify(password).then_some(user),
            None => {
                let _ = self.decoys.for_name(username.as_bytes()).verify(password);
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
