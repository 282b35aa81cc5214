//! The token as a cookie, for browser apps: `HttpOnly`, so that a script injected into the page cannot
//! read it, and `SameSite`, so that other sites' forms do not send it.

use serde::Deserialize;
use weir_sdk::ConfigError;
use weir_sdk::exclude::is_token_byte;

#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
pub enum SameSite {
    Strict,
    Lax,
    None,
}

#[derive(Deserialize)]
pub struct CookieConfig {
    #[serde(default = "default_name")]
    name: String,
    #[serde(default = "default_path")]
    path: String,
    domain: Option<String>,
    #[serde(default = "default_same_site")]
    same_site: SameSite,
    /// Unset: `Secure` when the client reached Weir over https. Set it behind a proxy that terminates TLS,
    /// where Weir sees http.
    secure: Option<bool>,
}

fn default_name() -> String {
    "token".into()
}

fn default_path() -> String {
    "/".into()
}

fn default_same_site() -> SameSite {
    SameSite::Lax
}

/// The cookie's `Set-Cookie` lines, built from a checked config.
#[derive(Debug)]
pub struct Cookie {
    name: String,
    /// `; Path=/; HttpOnly; SameSite=Lax`, and `Domain` when configured: what every line shares.
    attributes: String,
    secure: Option<bool>,
}

impl CookieConfig {
    /// The cookie; an error names the member of `cookie` that is wrong.
    pub fn build(&self) -> Result<Cookie, ConfigError> {
        if self.name.is_empty() || !self.name.bytes().all(is_token_byte) {
            return Err(ConfigError::new(
                "cookie.name",
                format!("`{}` is not a cookie name", self.name),
            ));
        }
        // RFC 6265 4.1.1: an attribute value is any printable ASCII but `;`.
        let is_attribute = |s: &str| s.bytes().all(|b| b.is_ascii_graphic() && b != b';');
        if !self.path.starts_with('/') || !is_attribute(&self.path) {
            return Err(ConfigError::new(
                "cookie.path",
                format!(
                    "`{}` is not a cookie path (`/…`, no spaces or `;`)",
                    self.path
                ),
            ));
        }
        let mut attributes = format!("; Path={}", self.path);
        if let Some(domain) = &self.domain {
            let is_domain = !domain.is_empty()
                && domain
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
            if !is_domain {
                return Err(ConfigError::new(
                    "cookie.domain",
                    format!("`{domain}` is not a domain name"),
                ));
            }
            attributes.push_str("; Domain=");
            attributes.push_str(domain);
        }
        let same_site = match self.same_site {
            SameSite::Strict => "Strict",
            SameSite::Lax => "Lax",
            SameSite::None => {
                // Browsers drop a `SameSite=None` cookie that is not `Secure`.
                if self.secure == Some(false) {
                    return Err(ConfigError::new(
                        "cookie.secure",
                        "a SameSite=None cookie must be Secure: browsers refuse it otherwise",
                    ));
                }
                "None"
            }
        };
        attributes.push_str("; HttpOnly; SameSite=");
        attributes.push_str(same_site);
        let secure = match self.same_site {
            SameSite::None => Some(true),
            _ => self.secure,
        };
        Ok(Cookie {
            name: self.name.clone(),
            attributes,
            secure,
        })
    }
}

impl Cookie {
    /// Sets the cookie to `token` for `max_age` seconds, the token's lifetime.
    pub fn set(&self, token: &str, max_age: u64, https: bool) -> String {
        self.line(token, max_age, https)
    }

    /// Tells the browser to drop the cookie at once.
    pub fn clear(&self, https: bool) -> String {
        self.line("", 0, https)
    }

    fn line(&self, value: &str, max_age: u64, https: bool) -> String {
        let mut line = format!(
            "{}={value}; Max-Age={max_age}{}",
            self.name, self.attributes
        );
        if self.secure.unwrap_or(https) {
            line.push_str("; Secure");
        }
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cookie(config: serde_json::Value) -> Result<Cookie, ConfigError> {
        serde_json::from_value::<CookieConfig>(config)
            .unwrap()
            .build()
    }

    #[test]
    fn the_default_cookie_is_http_only_lax_and_secure_over_https() {
        let c = cookie(json!({})).unwrap();
        assert_eq!(
            c.set("a.b.c", 3600, false),
            "token=a.b.c; Max-Age=3600; Path=/; HttpOnly; SameSite=Lax"
        );
        assert_eq!(
            c.set("a.b.c", 3600, true),
            "token=a.b.c; Max-Age=3600; Path=/; HttpOnly; SameSite=Lax; Secure"
        );
        assert_eq!(
            c.clear(true),
            "token=; Max-Age=0; Path=/; HttpOnly; SameSite=Lax; Secure"
        );
    }

    #[test]
    fn configured_attributes_are_kept() {
        let c = cookie(
            json!({ "name": "session", "path": "/app", "domain": "example.com",
                               "same_site": "Strict", "secure": true }),
        )
        .unwrap();
        assert_eq!(
            c.set("t", 60, false),
            "session=t; Max-Age=60; Path=/app; Domain=example.com; HttpOnly; SameSite=Strict; Secure"
        );
        let c = cookie(json!({ "secure": false })).unwrap();
        assert!(!c.set("t", 60, true).contains("Secure"));
        // Browsers want SameSite=None cookies Secure, whatever the scheme.
        let c = cookie(json!({ "same_site": "None" })).unwrap();
        assert!(c.set("t", 60, false).ends_with("; SameSite=None; Secure"));
    }

    #[test]
    fn broken_attributes_are_refused_by_field() {
        for (config, field) in [
            (json!({ "name": "my token" }), "cookie.name"),
            (json!({ "name": "" }), "cookie.name"),
            (json!({ "name": "a=b" }), "cookie.name"),
            (json!({ "path": "app" }), "cookie.path"),
            (json!({ "path": "/a;b" }), "cookie.path"),
            (json!({ "domain": "ex ample.com" }), "cookie.domain"),
            (
                json!({ "same_site": "None", "secure": false }),
                "cookie.secure",
            ),
        ] {
            assert_eq!(cookie(config.clone()).unwrap_err().field, field, "{config}");
        }
    }
}
