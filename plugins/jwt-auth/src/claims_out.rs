//! What a verified token tells the rest of the chain: its claims in the request context
//! (`jwt.sub`, `jwt.realm.roles`) and chosen claims as request headers.

use serde::Deserialize;
use serde_json::{Map, Value};
use weir_sdk::{Request, Result, context};

/// Objects nested deeper than this are left as JSON text at their own key.
const MAX_DEPTH: usize = 4;

#[derive(Deserialize, Clone)]
pub struct ClaimToHeader {
    pub header: String,
    /// A claim name, or a dotted path into nested objects (`realm.roles`).
    pub claim: String,
}

/// Every claim under `prefix.`: top-level and, for objects, each member by its dotted path too, as the
/// context entries [`to_context`] writes.
pub fn context_entries(prefix: &str, claims: &Map<String, Value>) -> Vec<(String, String)> {
    fn walk(key: String, value: &Value, depth: usize, out: &mut Vec<(String, String)>) {
        let members = match value {
            Value::Object(members) if depth < MAX_DEPTH => members,
            _ => return out.push((key, text(value))),
        };
        out.push((key.clone(), text(value)));
        for (name, member) in members {
            walk(format!("{key}.{name}"), member, depth + 1, out);
        }
    }
    let mut out = Vec::with_capacity(claims.len());
    for (name, value) in claims {
        walk(format!("{prefix}.{name}"), value, 1, &mut out);
    }
    out
}

/// Writes a token's context entries. Entries past the host's bounds on the context are the host's error,
/// which the hook returns.
pub fn to_context(entries: &[(String, String)]) -> Result<()> {
    for (key, value) in entries {
        context::set(key, value)?;
    }
    Ok(())
}

/// Sets each configured header from its claim, replacing what the client sent; a header whose claim the
/// token lacks is removed, so a client can never supply it. `claims` is `None` when no token was verified
/// (an excluded path, `allow_missing`).
pub fn to_headers(
    req: &mut Request,
    mappings: &[ClaimToHeader],
    claims: Option<&Map<String, Value>>,
) -> Result<()> {
    for mapping in mappings {
        match claims.and_then(|c| lookup(c, &mapping.claim)) {
            Some(value) => req.set_header(&mapping.header, text(value))?,
            None => req.remove_header(&mapping.header)?,
        }
    }
    Ok(())
}

fn lookup<'a>(claims: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    // A top-level claim whose name has dots (`https://example.com/roles`) wins over a nested path.
    if let Some(value) = claims.get(path) {
        return Some(value);
    }
    let mut parts = path.split('.');
    let mut value = claims.get(parts.next()?)?;
    for part in parts {
        value = value.as_object()?.get(part)?;
    }
    Some(value)
}

/// Strings as they are, arrays of scalars comma-joined (as Envoy's `claim_to_headers`), anything else
/// as JSON text.
fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Array(items) if items.iter().all(|v| !v.is_array() && !v.is_object()) => {
            items.iter().map(text).collect::<Vec<_>>().join(",")
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_become_text() {
        assert_eq!(text(&json!("alice")), "alice");
        assert_eq!(text(&json!(42)), "42");
        assert_eq!(text(&json!(true)), "true");
        assert_eq!(text(&json!(["a", 1, "b"])), "a,1,b");
        assert_eq!(text(&json!({"k": [1]})), r#"{"k":[1]}"#);
    }

    #[test]
    fn nested_claims_go_in_by_their_dotted_paths_too() {
        let claims = json!({ "sub": "a", "realm": { "roles": ["x", "y"] } });
        let entries = context_entries("jwt", claims.as_object().unwrap());
        let entries: Vec<(&str, &str)> = entries
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            entries,
            [
                ("jwt.realm", r#"{"roles":["x","y"]}"#),
                ("jwt.realm.roles", "x,y"),
                ("jwt.sub", "a"),
            ]
        );
    }

    #[test]
    fn lookup_follows_dotted_paths() {
        let claims = json!({ "realm": { "roles": ["admin"] }, "https://x.io/id": "7" });
        let claims = claims.as_object().unwrap();
        assert_eq!(lookup(claims, "realm.roles"), Some(&json!(["admin"])));
        assert_eq!(lookup(claims, "https://x.io/id"), Some(&json!("7")));
        assert_eq!(lookup(claims, "realm.missing"), None);
    }
}
