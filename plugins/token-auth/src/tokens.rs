//! The configured tokens, kept only as SHA-256 digests, and the lookup of a presented token.
//!
//! Both sides are hashed before comparing: digests have one length, so the comparison tells nothing about
//! a token's length, and tokens configured as hashes (`hashed = true`) work the same way as plain ones.

use crate::ct::{self, Digest};
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use subtle::ConditionallySelectable;
use weir_sdk::ConfigError;

pub struct TokenSet {
    entries: Vec<Entry>,
}

struct Entry {
    /// The identity a request with this token gets.
    name: String,
    digest: Digest,
}

impl TokenSet {
    /// From the `tokens` table: name → token (or hex SHA-256 of the token when `hashed`).
    pub fn from_table(table: &BTreeMap<String, String>, hashed: bool) -> Result<Self, ConfigError> {
        let mut set = Self::empty();
        for (name, value) in table {
            set.add(name, value, hashed)
                .map_err(|message| ConfigError::new(format!("tokens.{name}"), message))?;
        }
        set.non_empty("tokens", "the table is empty")
    }

    /// From the text of a `tokens_file`: one `name:token` per line; blank lines and lines starting with `#`
    /// are skipped. Errors name the field `tokens_file` and the line.
    pub fn from_file(path: &str, text: &str, hashed: bool) -> Result<Self, ConfigError> {
        let at = |line: usize, message: &str| {
            ConfigError::new("tokens_file", format!("{path} line {line}: {message}"))
        };
        let mut set = Self::empty();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| at(index + 1, "expected `name:token`"))?;
            set.add(name.trim(), value.trim(), hashed)
                .map_err(|message| at(index + 1, &message))?;
        }
        set.non_empty("tokens_file", &format!("{path} lists no tokens"))
    }

    /// The name of the token, after comparing `token` with every configured token: which one matches, or
    /// that none does, must not show in the time taken.
    pub fn identify(&self, token: &str) -> Option<&str> {
        let presented: Digest = Sha256::digest(token.as_bytes()).into();
        // 1 + the index of the match; 0 for none. Assigned without a branch on the comparison.
        let mut found = 0u64;
        for (index, entry) in self.entries.iter().enumerate() {
            found.conditional_assign(&(index as u64 + 1), ct::equal(&presented, &entry.digest));
        }
        let index = usize::try_from(found.checked_sub(1)?).ok()?;
        Some(&self.entries[index].name)
    }

    fn empty() -> Self {
        Self {
            entries: Vec::new(),
        }
    }

    fn add(&mut self, name: &str, value: &str, hashed: bool) -> Result<(), String> {
        if name.is_empty() {
            return Err("the name is empty".into());
        }
        if self.entries.iter().any(|e| e.name == name) {
            return Err(format!("`{name}` is listed twice"));
        }
        let digest = if hashed {
            parse_hex_digest(value)?
        } else {
            check_token(value)?;
            Sha256::digest(value.as_bytes()).into()
        };
        // Two names for one token would make the identity depend on the order of the config.
        if let Some(other) = self.entries.iter().find(|e| e.digest == digest) {
            return Err(format!("the same token as `{}`", other.name));
        }
        self.entries.push(Entry {
            name: name.into(),
            digest,
        });
        Ok(())
    }

    /// An empty set would refuse every request: a config mistake, refused at load rather than at runtime.
    fn non_empty(self, field: &str, message: &str) -> Result<Self, ConfigError> {
        if self.entries.is_empty() {
            return Err(ConfigError::new(field, message));
        }
        Ok(self)
    }
}

/// A token a client could actually send as `scheme token`: not empty, no whitespace or control bytes.
fn check_token(token: &str) -> Result<(), String> {
    if token.is_empty() {
        return Err("the token is empty".into());
    }
    if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("the token contains whitespace or a control character".into());
    }
    Ok(())
}

fn parse_hex_digest(hex: &str) -> Result<Digest, String> {
    let nibble = |b: u8| char::from(b).to_digit(16);
    let invalid =
        || "with `hashed = true`, expected 64 hex digits (the SHA-256 of the token)".to_owned();
    if hex.len() != 64 {
        return Err(invalid());
    }
    let mut digest = [0u8; 32];
    for (byte, pair) in digest.iter_mut().zip(hex.as_bytes().chunks(2)) {
        let (high, low) = nibble(pair[0]).zip(nibble(pair[1])).ok_or_else(invalid)?;
        *byte = (high * 16 + low) as u8;
    }
    Ok(digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn sha256_hex(token: &str) -> String {
        Sha256::digest(token.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    #[test]
    fn tokens_identify_their_name() {
        let set =
            TokenSet::from_table(&table(&[("alice", "a-secret"), ("bob", "b-secret")]), false)
                .unwrap();
        assert_eq!(set.identify("a-secret"), Some("alice"));
        assert_eq!(set.identify("b-secret"), Some("bob"));
        assert_eq!(set.identify("alice"), None, "a name is not a token");
        assert_eq!(set.identify("a-secre"), None);
        assert_eq!(set.identify(""), None);
    }

    #[test]
    fn every_lookup_compares_every_token_in_constant_time() {
        let set = TokenSet::from_table(
            &table(&[
                ("alice", "a-secret"),
                ("bob", "b-secret"),
                ("carol", "c-secret"),
            ]),
            false,
        )
        .unwrap();
        // A hit on the first entry, a hit on the last and a miss all cost one `ct::equal` per token.
        for (token, identity) in [
            ("a-secret", Some("alice")),
            ("c-secret", Some("carol")),
            ("nobody", None),
        ] {
            assert_eq!(
                ct::calls::during(|| set.identify(token)),
                (identity, 3),
                "{token}"
            );
        }
    }

    #[test]
    fn hashed_tokens_match_the_token_not_the_hash() {
        let hex = sha256_hex("a-secret");
        let set = TokenSet::from_table(&table(&[("alice", &hex.to_uppercase())]), true).unwrap();
        assert_eq!(set.identify("a-secret"), Some("alice"));
        assert_eq!(set.identify(&hex), None);
    }

    #[test]
    fn bad_tables_name_the_entry() {
        let error = |pairs: &[(&str, &str)], hashed| {
            let e = TokenSet::from_table(&table(pairs), hashed).err().unwrap();
            (e.field, e.message)
        };
        assert_eq!(
            error(&[], false),
            ("tokens".into(), "the table is empty".into())
        );
        assert_eq!(error(&[("a", "")], false).0, "tokens.a");
        assert_eq!(error(&[("a", "two words")], false).0, "tokens.a");
        assert_eq!(error(&[("a", "abc")], true).0, "tokens.a");
        assert_eq!(error(&[("a", &"zz".repeat(32))], true).0, "tokens.a");
        assert_eq!(error(&[("", "x")], false).0, "tokens.");
        assert_eq!(
            error(&[("a", "same"), ("b", "same")], false),
            ("tokens.b".into(), "the same token as `a`".into())
        );
    }

    #[test]
    fn files_list_name_token_lines_with_comments() {
        let text = "# ops\n\nalice: a-secret\n  bob:b:secret  \n# carol:c\n";
        let set = TokenSet::from_file("/s/tokens", text, false).unwrap();
        assert_eq!(set.identify("a-secret"), Some("alice"));
        assert_eq!(
            set.identify("b:secret"),
            Some("bob"),
            "split at the first colon"
        );
        assert_eq!(set.identify("c"), None, "commented out");
    }

    #[test]
    fn bad_files_name_the_line() {
        let error = |text| {
            let e = TokenSet::from_file("/s/tokens", text, false).err().unwrap();
            assert_eq!(e.field, "tokens_file");
            e.message
        };
        assert_eq!(error("# nothing\n"), "/s/tokens lists no tokens");
        assert_eq!(
            error("a:x\nno-colon\n"),
            "/s/tokens line 2: expected `name:token`"
        );
        assert_eq!(error("a:x\na:y\n"), "/s/tokens line 2: `a` is listed twice");
        assert_eq!(error(":x\n"), "/s/tokens line 1: the name is empty");
    }
}
