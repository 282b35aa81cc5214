//! The configured users, as written: from the `users` table or from an htpasswd-style `users_file`. Their
//! hashes are handed to the host by `init`; nothing here checks a password.

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use weir_sdk::ConfigError;

/// One user of the `users` table: `alice = "$argon2id$…"`, or `alice = { hash = "$argon2id$…", roles =
/// ["admin"] }` when the user has roles.
#[derive(Debug, PartialEq)]
pub struct UserEntry {
    pub hash: String,
    pub roles: Vec<String>,
}

#[derive(Deserialize)]
struct Full {
    hash: String,
    #[serde(default)]
    roles: Vec<String>,
}

impl<'de> Deserialize<'de> for UserEntry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Entry;
        impl<'de> Visitor<'de> for Entry {
            type Value = UserEntry;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a password hash, or a table `{ hash, roles }`")
            }

            fn visit_str<E: de::Error>(self, hash: &str) -> Result<UserEntry, E> {
                Ok(UserEntry {
                    hash: hash.into(),
                    roles: Vec::new(),
                })
            }

            fn visit_map<M: MapAccess<'de>>(self, map: M) -> Result<UserEntry, M::Error> {
                // Through the derived struct, so that an unknown or missing field is named as usual.
                let full = Full::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(UserEntry {
                    hash: full.hash,
                    roles: full.roles,
                })
            }
        }
        deserializer.deserialize_any(Entry)
    }
}

/// A user ready to have its hash loaded: `field` is what a load error names (`users.alice.hash`, or
/// `users_file` with `at` saying which line).
#[derive(Debug, Clone, PartialEq)]
pub struct UserSpec {
    pub name: String,
    pub hash: String,
    pub roles: Vec<String>,
    pub field: String,
    pub at: String,
}

/// From the `users` table.
pub fn from_table(table: BTreeMap<String, UserEntry>) -> Result<Vec<UserSpec>, ConfigError> {
    let mut specs = Vec::with_capacity(table.len());
    for (name, entry) in table {
        check_name(&name).map_err(|m| ConfigError::new(format!("users.{name}"), m))?;
        for (i, role) in entry.roles.iter().enumerate() {
            check_role(role).map_err(|m| ConfigError::new(format!("users.{name}.roles.{i}"), m))?;
        }
        specs.push(UserSpec {
            field: format!("users.{name}.hash"),
            at: String::new(),
            name,
            hash: entry.hash,
            roles: entry.roles,
        });
    }
    non_empty(specs, "users", "the table is empty")
}

/// From the text of a `users_file`: one `user:hash` or `user:hash:role,role` per line, as Apache's
/// htpasswd writes them plus the roles; blank lines and lines starting with `#` are skipped. Errors name
/// `users_file` and the line, never the line's text, which holds a hash.
pub fn from_file(path: &str, text: &str) -> Result<Vec<UserSpec>, ConfigError> {
    let at = |line: usize| format!("{path} line {line}: ");
    let error = |line: usize, message: &str| {
        ConfigError::new("users_file", format!("{}{message}", at(line)))
    };
    let mut specs: Vec<UserSpec> = Vec::new();
    let mut names = BTreeSet::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.splitn(3, ':').map(str::trim);
        let (Some(name), Some(hash)) = (fields.next(), fields.next()) else {
            return Err(error(
                index + 1,
                "expected `user:hash` or `user:hash:role,role`",
            ));
        };
        let roles: Vec<String> = match fields.next() {
            None | Some("") => Vec::new(),
            Some(list) => list.split(',').map(|r| r.trim().to_owned()).collect(),
        };
        check_name(name).map_err(|m| error(index + 1, &m))?;
        for role in &roles {
            check_role(role).map_err(|m| error(index + 1, &m))?;
        }
        if !names.insert(name) {
            return Err(error(index + 1, &format!("`{name}` is listed twice")));
        }
        specs.push(UserSpec {
            name: name.into(),
            hash: hash.into(),
            roles,
            field: "users_file".into(),
            at: at(index + 1),
        });
    }
    non_empty(specs, "users_file", &format!("{path} lists no users"))
}

/// RFC 7617 2: a user-id holds no colon (the password starts after the first) and no control character.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the user name is empty".into());
    }
    if name.contains(':') || name.chars().any(char::is_control) {
        return Err("a user name may not hold a colon or a control character".into());
    }
    Ok(())
}

/// Roles travel comma-joined in one context value, so a role holding a comma would read as two.
pub fn check_role(role: &str) -> Result<(), String> {
    if role.is_empty() {
        return Err("a role is empty".into());
    }
    if role.contains(',') || role.chars().any(char::is_control) || role.trim() != role {
        return Err(format!(
            "`{role}` is not a role name: no comma, control character or surrounding space"
        ));
    }
    Ok(())
}

/// A guard with no users could only refuse every request: a config mistake, refused at load.
fn non_empty(
    specs: Vec<UserSpec>,
    field: &str,
    message: &str,
) -> Result<Vec<UserSpec>, ConfigError> {
    if specs.is_empty() {
        return Err(ConfigError::new(field, message));
    }
    Ok(specs)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "$2b$04$abcdefghijklmnopqrstuuNqZCLHz2Cn7wx7Ue3tXhS2cnY7ATLyO";

    fn table(json: &str) -> BTreeMap<String, UserEntry> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn a_user_is_a_hash_or_a_table_with_roles() {
        let specs = from_table(table(&format!(
            r#"{{"alice": {{"hash": "{HASH}", "roles": ["admin", "ops"]}}, "bob": "{HASH}"}}"#
        )))
        .unwrap();
        assert_eq!(specs.len(), 2);
        assert_eq!(
            (
                specs[0].name.as_str(),
                specs[0].roles.clone(),
                specs[0].field.as_str()
            ),
            (
                "alice",
                vec!["admin".to_string(), "ops".to_string()],
                "users.alice.hash"
            )
        );
        assert_eq!((specs[1].name.as_str(), specs[1].roles.len()), ("bob", 0));
        assert_eq!(specs[1].hash, HASH);
    }

    #[test]
    fn an_entry_is_neither_a_number_nor_a_table_without_hash() {
        let parse = serde_json::from_str::<BTreeMap<String, UserEntry>>;
        assert!(parse(r#"{"alice": 7}"#).is_err());
        let missing = parse(r#"{"alice": {"roles": ["admin"]}}"#).unwrap_err();
        assert!(
            missing.to_string().contains("missing field `hash`"),
            "{missing}"
        );
    }

    #[test]
    fn bad_names_and_roles_are_named() {
        let field = |json: &str| from_table(table(json)).unwrap_err().field;
        assert_eq!(field("{}"), "users");
        assert_eq!(field(&format!(r#"{{"a:b": "{HASH}"}}"#)), "users.a:b");
        assert_eq!(field(&format!(r#"{{"": "{HASH}"}}"#)), "users.");
        assert_eq!(
            field(&format!(
                r#"{{"a": {{"hash": "{HASH}", "roles": ["x", "y,z"]}}}}"#
            )),
            "users.a.roles.1"
        );
        assert_eq!(
            field(&format!(r#"{{"a": {{"hash": "{HASH}", "roles": [""]}}}}"#)),
            "users.a.roles.0"
        );
    }

    #[test]
    fn files_hold_htpasswd_lines_with_roles() {
        let text = format!(
            "# users\n\nalice:{HASH}:admin, ops\n  bob : {HASH}  \ncarol:{HASH}:\n# dave:{HASH}\n"
        );
        let specs = from_file("/s/users", &text).unwrap();
        let summary: Vec<_> = specs
            .iter()
            .map(|s| (s.name.as_str(), s.roles.join(","), s.hash.as_str()))
            .collect();
        assert_eq!(
            summary,
            [
                ("alice", "admin,ops".into(), HASH),
                ("bob", String::new(), HASH),
                ("carol", String::new(), HASH)
            ]
        );
        assert_eq!(specs[0].at, "/s/users line 3: ");
    }

    #[test]
    fn bad_files_name_the_line_and_never_quote_it() {
        let error = |text: &str| {
            let e = from_file("/s/users", text).unwrap_err();
            assert_eq!(e.field, "users_file");
            e.message
        };
        assert_eq!(error("# nothing\n"), "/s/users lists no users");
        assert_eq!(
            error(&format!("a:{HASH}\nplaintext-secret\n")),
            "/s/users line 2: expected `user:hash` or `user:hash:role,role`"
        );
        assert_eq!(
            error(&format!("a:{HASH}\na:{HASH}\n")),
            "/s/users line 2: `a` is listed twice"
        );
        assert!(error(&format!("a:{HASH}:x,,y\n")).starts_with("/s/users line 1: a role is empty"));
    }
}
