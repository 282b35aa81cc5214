//! Secrets kept out of what Weir shows: the running config as the admin listener's `/config` gives it, so
//! that whoever may read metrics is not handed keys, tokens or password hashes; and the query of a request
//! target in the access log, where a token a client put in the URL (RFC 6750 §2.3's `access_token`, a
//! presigned URL's credential) would otherwise be kept in every log file.

use std::borrow::Cow;

use http::Uri;
use toml::{Table, Value};

/// What a redacted value reads.
pub const REDACTED: &str = "<redacted>";

/// Key names under which every value is a secret, matched as parts of the name (`jwt_secret`,
/// `x-api-key`, `tokens`). Plugins' configs are free-form, so names are what there is to go on.
const SECRET_NAMES: [&str; 14] = [
    "secret",
    "password",
    "passwd",
    "token",
    "hash",
    "pem",
    "jwk",
    "private",
    "credential",
    "api-key",
    "api_key",
    "authorization",
    "cookie",
    "signature",
];

/// Values that are secrets whatever their key is called: password hashes and PEM keys.
const SECRET_PREFIXES: [&str; 6] = ["$argon2", "$2a$", "$2b$", "$2y$", "$scrypt$", "-----BEGIN"];

/// The config text with its secrets redacted, as TOML (comments and layout are not kept). A text that
/// does not parse (it did when it was loaded) is withheld whole rather than shown unredacted.
pub fn config(text: &str) -> String {
    match text.parse::<Table>() {
        Ok(mut table) => {
            redact_table(&mut table, false);
            toml::to_string(&table).unwrap_or_else(|_| format!("# {REDACTED}\n"))
        }
        Err(_) => format!("# {REDACTED}\n"),
    }
}

/// A name that says its value is a secret.
fn secret_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_NAMES.iter().any(|s| name.contains(s))
}

/// The request target as the access log writes it: the value of each query parameter whose name says it is
/// a secret replaced. Names are matched as they were sent, not percent-decoded: a client that encodes a
/// parameter's name hides it from this, as from most upstreams.
pub fn target(uri: &Uri) -> Cow<'_, str> {
    let whole = match (uri.scheme(), uri.path_and_query()) {
        (None, Some(origin_form)) => Cow::Borrowed(origin_form.as_str()),
        _ => Cow::Owned(uri.to_string()),
    };
    let Some((before, query)) = whole.split_once('?') else {
        return whole;
    };
    let secret = |param: &str| {
        param
            .split_once('=')
            .is_some_and(|(name, _)| secret_name(name))
    };
    if !query.split('&').any(secret) {
        return whole;
    }
    let query: Vec<Cow<'_, str>> = query
        .split('&')
        .map(|param| match param.split_once('=') {
            Some((name, _)) if secret_name(name) => Cow::Owned(format!("{name}={REDACTED}")),
            _ => Cow::Borrowed(param),
        })
        .collect();
    Cow::Owned(format!("{before}?{}", query.join("&")))
}

fn redact_table(table: &mut Table, secret: bool) {
    for (key, value) in table.iter_mut() {
        redact(value, secret || secret_name(key));
    }
}

fn redact(value: &mut Value, secret: bool) {
    match value {
        Value::String(s) if secret || SECRET_PREFIXES.iter().any(|p| s.starts_with(p)) => {
            *s = REDACTED.into();
        }
        Value::String(s) => *s = url_without_password(s),
        Value::Table(table) => redact_table(table, secret),
        Value::Array(items) => items.iter_mut().for_each(|v| redact(v, secret)),
        _ => {}
    }
}

/// A URL with the password of its userinfo replaced (`redis://app:<redacted>@cache:6379`), wherever the
/// URL is: `[store]`'s Redis URL carries one, and so may any URL a plugin's config holds. Anything else is
/// returned as it is.
pub fn url_without_password(text: &str) -> String {
    let Some((scheme, rest)) = text.split_once("://") else {
        return text.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rsplit_once('@') {
        Some((userinfo, host)) if userinfo.contains(':') => {
            let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
            format!(
                "{scheme}://{user}:{REDACTED}@{host}{}",
                &rest[authority_end..]
            )
        }
        _ => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_query_values_leave_the_logged_target() {
        let cases = [
            ("/a?q=1", "/a?q=1"),
            ("/a", "/a"),
            (
                "/a?access_token=eyJ.x.y&page=2",
                "/a?access_token=<redacted>&page=2",
            ),
            (
                "/s3?X-Amz-Credential=AK%2F1&X-Amz-Signature=ab12&x=1",
                "/s3?X-Amz-Credential=<redacted>&X-Amz-Signature=<redacted>&x=1",
            ),
            ("/a?password", "/a?password"),
            (
                "http://h.test/a?api_key=k&b",
                "http://h.test/a?api_key=<redacted>&b",
            ),
        ];
        for (sent, logged) in cases {
            assert_eq!(target(&Uri::from_static(sent)), logged, "{sent}");
        }
    }

    #[test]
    fn secrets_go_and_the_rest_stays() {
        let text = r#"
[server]
listen = "127.0.0.1:8080"
[[routes]]
upstream = "a"
[[routes.plugins]]
plugin = "jwt-auth"
config = { keys = [{ kid = "k1", alg = "HS256", secret = "s3cret" }], issuer = "me" }
[[routes.plugins]]
plugin = "token-auth"
config = { tokens = { alice = "t0k" }, scheme = "Token" }
[[routes.plugins]]
plugin = "basic-auth"
config.users.bob = "$argon2id$v=19$m=16,t=2,p=1$c2FsdA$aGFzaA"
[[routes.plugins]]
plugin = "headers"
config.request = { set = { "x-api-key" = "k3y", "x-env" = "prod" } }
"#;
        let shown = config(text);
        for secret in ["s3cret", "t0k", "$argon2id", "k3y"] {
            assert!(!shown.contains(secret), "{secret} in\n{shown}");
        }
        for kept in [
            "127.0.0.1:8080",
            "k1",
            "HS256",
            "me",
            "Token",
            "prod",
            "alice",
        ] {
            assert!(shown.contains(kept), "{kept} missing in\n{shown}");
        }
        assert_eq!(config("not = [toml"), format!("# {REDACTED}\n"));
    }

    #[test]
    fn passwords_in_urls_go_and_the_rest_of_the_url_stays() {
        let shown = config("[store]\nurl = \"redis://app:hunter2@cache:6379/0\"\n");
        assert!(
            shown.contains("redis://app:<redacted>@cache:6379/0"),
            "{shown}"
        );
        assert_eq!(
            url_without_password("redis://:hunter2@cache"),
            "redis://:<redacted>@cache"
        );
        for kept in ["redis://cache:6379", "http://user@host/a:b@c", "not a url"] {
            assert_eq!(url_without_password(kept), kept);
        }
    }
}
