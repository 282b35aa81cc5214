//! The login request's body: `{"username": "…", "password": "…"}` as `application/json`.

use serde_json::Value;

use crate::refusal::Refusal;

pub struct Credentials {
    pub username: String,
    pub password: String,
}

/// Whether a `Content-Type` value names JSON: `application/json`, any case, with or without parameters
/// (`; charset=utf-8`).
pub fn is_json(content_type: Option<&[u8]>) -> bool {
    let Some(value) = content_type.and_then(|v| core::str::from_utf8(v).ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("application/json")
}

/// The credentials in `body`. Other members of the object are ignored, as a form's extra fields would be.
pub fn parse(body: &[u8]) -> Result<Credentials, Refusal> {
    let value: Value = serde_json::from_slice(body).map_err(|_| Refusal::NotJson)?;
    let Value::Object(mut object) = value else {
        return Err(Refusal::NotAnObject);
    };
    let mut field = |name: &'static str| match object.remove(name) {
        None | Some(Value::Null) => Err(Refusal::MissingField(name)),
        Some(Value::String(text)) => Ok(text),
        Some(_) => Err(Refusal::WrongType(name)),
    };
    Ok(Credentials {
        username: field("username")?,
        password: field("password")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(body: &str) -> Refusal {
        parse(body.as_bytes()).err().expect("refused")
    }

    #[test]
    fn json_is_application_json_with_any_parameters() {
        for value in [
            "application/json",
            "Application/JSON",
            "application/json; charset=utf-8",
            " application/json ;charset=UTF-8",
        ] {
            assert!(is_json(Some(value.as_bytes())), "{value}");
        }
        for value in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "application/jsonx",
            "",
        ] {
            assert!(!is_json(Some(value.as_bytes())), "{value}");
        }
        assert!(!is_json(None));
        assert!(!is_json(Some(b"application/json\xff")));
    }

    #[test]
    fn credentials_are_two_strings_of_an_object() {
        let c =
            parse(br#"{"username": "al\u00efce", "password": "p\"w", "remember": true}"#).unwrap();
        assert_eq!(
            (c.username.as_str(), c.password.as_str()),
            ("alïce", "p\"w")
        );
        // Empty strings are credentials like any other: they just match no user.
        let c = parse(br#"{"username": "", "password": ""}"#).unwrap();
        assert!(c.username.is_empty() && c.password.is_empty());
    }

    #[test]
    fn each_fault_of_the_body_has_its_refusal() {
        assert_eq!(
            refused(r#"{"username": "alice"}"#),
            Refusal::MissingField("password")
        );
        assert_eq!(
            refused(r#"{"password": "pw", "username": null}"#),
            Refusal::MissingField("username")
        );
        assert_eq!(
            refused(r#"{"username": "alice", "password": 1234}"#),
            Refusal::WrongType("password")
        );
        assert_eq!(
            refused(r#"{"username": ["alice"], "password": "pw"}"#),
            Refusal::WrongType("username")
        );
        assert_eq!(refused(r#"["alice", "pw"]"#), Refusal::NotAnObject);
        assert_eq!(refused(r#""alice""#), Refusal::NotAnObject);
        for body in [
            "",
            "username=alice&password=pw",
            r#"{"username": "alice""#,
            "{} {}",
        ] {
            assert_eq!(refused(body), Refusal::NotJson, "{body}");
        }
        assert_eq!(
            parse(b"{\"username\": \"\xff\"}").err(),
            Some(Refusal::NotJson)
        );
    }
}
