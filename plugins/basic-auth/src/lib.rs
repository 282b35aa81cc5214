//! Weir's built-in `basic-auth` plugin: HTTP Basic authentication (RFC 7617) against password hashes that
//! the host holds and checks.
//!
//! ```toml
//! config = { users = { alice = { hash = "$argon2id$v=19$m=65536,t=3,p=4$…", roles = ["admin"] } } }
//! config = { users_file = "/secrets/htpasswd", anonymous = {} }   # with grants.dirs = { "/secrets" = "./secrets" }
//! ```
//!
//! The hashes (argon2id/i/d and scrypt PHC strings, bcrypt `$2a$`/`$2b$`/`$2y$`) are handed to the host in
//! `init` and checked there, natively and off the proxy's worker threads: an argon2 check needs more memory
//! than a plugin has and tens of milliseconds of CPU, by design. A request with the right password passes
//! with the user name and roles in the context (`auth.user`, `auth.roles`) and without its
//! `Authorization` header; anything else gets 401 with a `Basic` challenge.

mod credentials;
mod guard;
mod users;

use guard::{Anonymous, Guard, User};
use serde::Deserialize;
use std::collections::BTreeMap;
use users::{UserEntry, UserSpec};
use weir_sdk::crypto::PasswordHash;
use weir_sdk::decoy::{DecoyError, Decoys};
use weir_sdk::exclude::Exclusions;
use weir_sdk::{Action, ConfigError, Hooks, Plugin, Request, Result, context};

#[derive(Deserialize)]
struct BasicAuth {
    /// Name → hash, or name → `{ hash, roles }`.
    users: Option<BTreeMap<String, UserEntry>>,
    /// A file inside a granted directory, one `user:hash[:role,role]` per line.
    users_file: Option<String>,
    #[serde(default = "default_realm")]
    realm: String,
    /// Requests without credentials pass as this identity.
    anonymous: Option<AnonymousConfig>,
    #[serde(default)]
    exclude_paths: Vec<String>,
    #[serde(default)]
    exclude_methods: Vec<String>,
    #[serde(default = "default_user_key")]
    user_key: String,
    #[serde(default = "default_roles_key")]
    roles_key: String,
    /// Built by `init`.
    #[serde(skip)]
    ready: Option<Ready>,
}

/// Spring Security's names for the anonymous user, which upstreams written for it expect.
#[derive(Deserialize)]
struct AnonymousConfig {
    #[serde(default = "default_anonymous_user")]
    user: String,
    #[serde(default = "default_anonymous_roles")]
    roles: Vec<String>,
}

struct Ready {
    guard: Guard<PasswordHash>,
    exclusions: Exclusions,
    challenge: String,
}

fn default_realm() -> String {
    "weir".into()
}

fn default_user_key() -> String {
    "auth.user".into()
}

fn default_roles_key() -> String {
    "auth.roles".into()
}

fn default_anonymous_user() -> String {
    "anonymousUser".into()
}

fn default_anonymous_roles() -> Vec<String> {
    vec!["ROLE_ANONYMOUS".into()]
}

impl BasicAuth {
    fn user_specs(&mut self) -> core::result::Result<Vec<UserSpec>, ConfigError> {
        // Taken, so that the instance keeps no hash once the host holds them.
        match (self.users.take(), &self.users_file) {
            (Some(table), None) => users::from_table(table),
            (None, Some(path)) => {
                let text = weir_sdk::read_config_file("users_file", path)?;
                users::from_file(path, &text)
            }
            (Some(_), Some(_)) => Err(ConfigError::new(
                "users_file",
                "set only one of `users` and `users_file`",
            )),
            (None, None) => Err(ConfigError::new(
                "users",
                "set `users` (a table name = hash) or `users_file`",
            )),
        }
    }

    fn anonymous(&self) -> core::result::Result<Option<Anonymous>, ConfigError> {
        let Some(anonymous) = &self.anonymous else {
            return Ok(None);
        };
        users::check_name(&anonymous.user).map_err(|m| ConfigError::new("anonymous.user", m))?;
        for (i, role) in anonymous.roles.iter().enumerate() {
            users::check_role(role)
                .map_err(|m| ConfigError::new(format!("anonymous.roles.{i}"), m))?;
        }
        Ok(Some(Anonymous {
            user: anonymous.user.clone(),
            roles: anonymous.roles.join(","),
        }))
    }

    fn check_names(&self) -> core::result::Result<(), ConfigError> {
        // The realm is sent as a quoted-string; one that needed escaping is more likely a mistake than a
        // wish, and browsers show it to the user as written.
        if self
            .realm
            .chars()
            .any(|c| c == '"' || c == '\\' || c.is_control() || !c.is_ascii())
        {
            return Err(ConfigError::new(
                "realm",
                "use printable ASCII without `\"` or `\\`",
            ));
        }
        for (field, key) in [("user_key", &self.user_key), ("roles_key", &self.roles_key)] {
            if key.is_empty() {
                return Err(ConfigError::new(field, "must not be empty"));
            }
        }
        if self.user_key == self.roles_key {
            return Err(ConfigError::new("roles_key", "must differ from `user_key`"));
        }
        Ok(())
    }
}

/// Hands a user's hash to the host. The host's refusal never repeats the hash, and neither does this.
fn load(spec: &UserSpec) -> core::result::Result<PasswordHash, ConfigError> {
    PasswordHash::load(&spec.hash)
        .map_err(|message| ConfigError::new(&spec.field, format!("{}{message}", spec.at)))
}

impl Plugin for BasicAuth {
    const HOOKS: Hooks = Hooks::GUARD;

    fn init(&mut self) -> core::result::Result<(), ConfigError> {
        self.check_names()?;
        let anonymous = self.anonymous()?;
        let specs = self.user_specs()?;
        // Before the users, so that a plugin over the host's bound on hashes is told so at the user that
        // passed it.
        let decoys = Decoys::build(specs.iter().map(|s| s.hash.as_str()), |index, hash| {
            load(&UserSpec {
                hash,
                ..specs[index].clone()
            })
        })
        .map_err(|e| match e {
            // A text of no known layout is most likely not a hash at all: the host says so best.
            DecoyError::Unknown(index) => load(&specs[index]).err().unwrap_or_else(|| {
                ConfigError::new(&specs[index].field, "no decoy can be made of this hash")
            }),
            DecoyError::Load(e) => e,
        })?
        .ok_or_else(|| ConfigError::new("users", "list at least one user"))?;
        let mut users = BTreeMap::new();
        for spec in &specs {
            users.insert(
                spec.name.clone(),
                User {
                    hash: load(spec)?,
                    roles: spec.roles.join(","),
                },
            );
        }
        let exclusions = Exclusions::build(&self.exclude_paths, &self.exclude_methods)?;
        self.ready = Some(Ready {
            guard: Guard {
                users,
                decoys,
                anonymous,
            },
            exclusions,
            challenge: credentials::challenge(&self.realm),
        });
        Ok(())
    }

    fn on_request(&self, req: &mut Request) -> Result<Action> {
        let ready = self.ready.as_ref().ok_or("basic-auth ran before init")?;
        if ready.exclusions.excludes(req) {
            return Ok(Action::Continue);
        }
        let authorization = req.header_all("authorization");
        match ready.guard.authenticate(&authorization) {
            Ok(identity) => {
                context::set(&self.user_key, identity.user)?;
                context::set(&self.roles_key, identity.roles)?;
                // The upstream learns who from the context; the password is between client and proxy.
                if !authorization.is_empty() {
                    req.remove_header("authorization")?;
                }
                Ok(Action::Continue)
            }
            Err(rejection) => Ok(rejection.response(&ready.challenge)),
        }
    }
}

weir_sdk::export!(BasicAuth);
