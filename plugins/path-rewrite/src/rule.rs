//! The four ways to rewrite, built from the config at `init`.

use crate::config_path;
use regex::Regex;
use weir_sdk::template::{Missing, Template};
use weir_sdk::{ConfigError, Request};

pub enum Rule {
    /// `strip_prefix` is `replace_prefix` with an empty `to`.
    Prefix {
        from: String,
        to: String,
    },
    Regex {
        regex: Regex,
        replacement: Template,
    },
    Template(Template),
}

impl Rule {
    /// `from` and `to` lose a trailing `/`, so that `/api/` matches like `/api` and `to = "/"` does not
    /// double the slash in front of the rest.
    pub fn prefix(field: &str, from: &str, to: &str) -> Result<Self, ConfigError> {
        let absolute = |name: &str, value: &str| {
            config_path::check(value)
                .map_err(|reason| ConfigError::new(name, format!("`{value}` {reason}")))
        };
        absolute(&prefix_field(field, "from"), from)?;
        if field == "replace_prefix" {
            absolute(&prefix_field(field, "to"), to)?;
        }
        Ok(Rule::Prefix {
            from: from.trim_end_matches('/').into(),
            to: to.trim_end_matches('/').into(),
        })
    }

    pub fn regex(pattern: &str, replacement: Option<&str>) -> Result<Self, ConfigError> {
        let regex = Regex::new(pattern).map_err(|e| ConfigError::new("regex", e.to_string()))?;
        let replacement = replacement.ok_or_else(|| {
            ConfigError::new(
                "replacement",
                "`regex` needs a `replacement`, such as \"/u/{1}\"",
            )
        })?;
        let replacement = Template::parse_for(replacement, &regex)
            .map_err(|e| ConfigError::new("replacement", e))?;
        Ok(Rule::Regex { regex, replacement })
    }

    pub fn template(text: &str) -> Result<Self, ConfigError> {
        Template::parse(text)
            .map(Rule::Template)
            .map_err(|e| ConfigError::new("template", e))
    }

    /// The new path, or `None` when the rule does not apply and the request passes unchanged.
    pub fn apply(&self, path: &str, req: &Request) -> Result<Option<String>, Missing> {
        match self {
            Rule::Prefix { from, to } => Ok(replace_prefix(path, from, to)),
            Rule::Regex { regex, replacement } => match regex.captures(path) {
                Some(captures) => replacement.render(req, Some(&captures)).map(Some),
                None => Ok(None),
            },
            Rule::Template(template) => template.render(req, None).map(Some),
        }
    }
}

/// `strip_prefix` is a plain string, `replace_prefix` a table with `from` and `to`.
fn prefix_field(field: &str, part: &str) -> String {
    if field == "replace_prefix" {
        format!("{field}.{part}")
    } else {
        field.into()
    }
}

/// Replaces `from` with `to` when `from` is a whole-segment prefix of `path` (`/api` matches `/api` and
/// `/api/x`, not `/apix`); both come without a trailing slash. An empty result is the root.
fn replace_prefix(path: &str, from: &str, to: &str) -> Option<String> {
    let rest = path
        .strip_prefix(from)
        .filter(|rest| rest.is_empty() || rest.starts_with('/'))?;
    let new = format!("{to}{rest}");
    Some(if new.is_empty() { "/".into() } else { new })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_match_whole_segments() {
        assert_eq!(replace_prefix("/api/x", "/api", "").as_deref(), Some("/x"));
        assert_eq!(replace_prefix("/api", "/api", "").as_deref(), Some("/"));
        assert_eq!(replace_prefix("/api/", "/api", "").as_deref(), Some("/"));
        assert_eq!(replace_prefix("/apix", "/api", ""), None);
        assert_eq!(replace_prefix("/other/api", "/api", ""), None);
        assert_eq!(
            replace_prefix("/old/a/b", "/old", "/new").as_deref(),
            Some("/new/a/b")
        );
        assert_eq!(
            replace_prefix("/old", "/old", "/new").as_deref(),
            Some("/new")
        );
        assert_eq!(
            replace_prefix("/x", "", "/v1").as_deref(),
            Some("/v1/x"),
            "the root prefix matches all"
        );
    }

    fn prefix(field: &str, from: &str, to: &str) -> Result<(String, String), ConfigError> {
        match Rule::prefix(field, from, to)? {
            Rule::Prefix { from, to } => Ok((from, to)),
            _ => unreachable!(),
        }
    }

    #[test]
    fn prefix_config_is_trimmed_and_checked() {
        assert_eq!(
            prefix("strip_prefix", "/api/", "").unwrap(),
            ("/api".into(), "".into())
        );
        assert_eq!(
            prefix("replace_prefix", "/old", "/").unwrap(),
            ("/old".into(), "".into())
        );
        let e = prefix("strip_prefix", "api", "").unwrap_err();
        assert_eq!(
            (e.field.as_str(), e.message.as_str()),
            ("strip_prefix", "`api` does not start with '/'")
        );
        assert_eq!(
            prefix("replace_prefix", "/a b", "/").unwrap_err().field,
            "replace_prefix.from"
        );
        assert_eq!(
            prefix("replace_prefix", "/a", "b").unwrap_err().field,
            "replace_prefix.to"
        );
    }

    #[test]
    fn regex_config_errors_name_the_field() {
        let field = |pattern, replacement| Rule::regex(pattern, replacement).err().map(|e| e.field);
        assert_eq!(field("^/users/(\\d+)$", Some("/u/{1}")), None);
        assert_eq!(
            field("^/users/(\\d+$", Some("/u/{1}")).as_deref(),
            Some("regex")
        );
        assert_eq!(
            field("^/users/(\\d+)$", None).as_deref(),
            Some("replacement")
        );
        assert_eq!(
            field("^/users/(\\d+)$", Some("/u/{2}")).as_deref(),
            Some("replacement")
        );
        assert_eq!(
            Rule::template("/x/{nope}")
                .err()
                .map(|e| e.field)
                .as_deref(),
            Some("template")
        );
    }
}
