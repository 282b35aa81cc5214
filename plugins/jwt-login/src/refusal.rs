//! Why a login is refused, and the answer the client gets: a status and a JSON body naming the reason, in
//! the shape jwt-auth's refusals have.

use serde_json::json;
use weir_sdk::{BodyError, LocalResponse};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Another method than `POST` on the login or logout path.
    MethodNotAllowed,
    /// A `Content-Type` other than `application/json` (or none).
    WrongContentType,
    /// The body is over this many bytes: this plugin's limit, or the route's `max_request_body`.
    TooLarge(u64),
    /// The client stopped sending its body for longer than the server's `client_body_timeout`.
    BodyTimeout,
    /// The client broke off its body, or broke its framing.
    Unreadable,
    /// The body is not JSON (or not UTF-8).
    NotJson,
    /// The body is JSON, but not an object.
    NotAnObject,
    MissingField(&'static str),
    /// A field that is not a string.
    WrongType(&'static str),
    /// An unknown user or a wrong password: one answer for both, so the answer does not say which users
    /// exist.
    BadCredentials,
}

impl Refusal {
    pub fn status(&self) -> u16 {
        match self {
            Refusal::MethodNotAllowed => 405,
            Refusal::WrongContentType | Refusal::NotJson => 415,
            Refusal::TooLarge(_) => 413,
            Refusal::BodyTimeout => 408,
            Refusal::Unreadable
            | Refusal::NotAnObject
            | Refusal::MissingField(_)
            | Refusal::WrongType(_) => 400,
            Refusal::BadCredentials => 401,
        }
    }

    /// The machine-readable reason in the JSON body.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::MethodNotAllowed => "method_not_allowed",
            Refusal::WrongContentType => "wrong_content_type",
            Refusal::TooLarge(_) => "too_large",
            Refusal::BodyTimeout => "body_timeout",
            Refusal::Unreadable => "unreadable_body",
            Refusal::NotJson => "not_json",
            Refusal::NotAnObject | Refusal::WrongType(_) => "wrong_type",
            Refusal::MissingField(_) => "missing_field",
            Refusal::BadCredentials => "bad_credentials",
        }
    }

    pub fn message(&self) -> String {
        match self {
            Refusal::MethodNotAllowed => "use POST".into(),
            Refusal::WrongContentType => "the body must be application/json".into(),
            Refusal::TooLarge(limit) => format!("the body is over {limit} bytes"),
            Refusal::BodyTimeout => "the body did not arrive in time".into(),
            Refusal::Unreadable => "the body could not be read".into(),
            Refusal::NotJson => "the body is not JSON".into(),
            Refusal::NotAnObject => "the body must be a JSON object".into(),
            Refusal::MissingField(field) => format!("`{field}` is missing"),
            Refusal::WrongType(field) => format!("`{field}` must be a string"),
            Refusal::BadCredentials => "unknown user or wrong password".into(),
        }
    }

    pub fn response(&self) -> LocalResponse {
        let error = match self {
            Refusal::BadCredentials => "invalid_credentials",
            _ => "invalid_request",
        };
        let body = json!({ "error": error, "reason": self.reason(), "message": self.message() });
        let mut response = LocalResponse::new(self.status())
            .header("content-type", "application/json")
            .header("cache-control", "no-store")
            .body(format!("{body}\n"));
        if *self == Refusal::MethodNotAllowed {
            response = response.header("allow", "POST");
        }
        response
    }

    /// The refusal for a body the host could not read whole: over this plugin's limit or the route's
    /// `max_request_body`, a client silent past `client_body_timeout`, or a client that broke off.
    pub fn of_read_error(error: &BodyError) -> Refusal {
        match error {
            BodyError::TooLarge(limit) => Refusal::TooLarge(*limit),
            BodyError::TimedOut => Refusal::BodyTimeout,
            BodyError::Broken(_) => Refusal::Unreadable,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_is_json_with_its_reason_and_status() {
        let cases = [
            (Refusal::MethodNotAllowed, 405, "method_not_allowed"),
            (Refusal::WrongContentType, 415, "wrong_content_type"),
            (Refusal::NotJson, 415, "not_json"),
            (Refusal::TooLarge(16384), 413, "too_large"),
            (Refusal::BodyTimeout, 408, "body_timeout"),
            (Refusal::Unreadable, 400, "unreadable_body"),
            (Refusal::MissingField("password"), 400, "missing_field"),
            (Refusal::WrongType("username"), 400, "wrong_type"),
            (Refusal::NotAnObject, 400, "wrong_type"),
            (Refusal::BadCredentials, 401, "bad_credentials"),
        ];
        for (refusal, status, reason) in cases {
            let response = refusal.response();
            assert_eq!(response.status, status);
            let body: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
            assert_eq!(body["reason"], reason);
            assert_eq!(body["message"], refusal.message());
            assert!(
                response
                    .headers
                    .contains(&("content-type".into(), b"application/json".to_vec()))
            );
            let allow = response.headers.iter().any(|(name, _)| name == "allow");
            assert_eq!(allow, status == 405);
        }
        let body = Refusal::MissingField("password").response().body;
        assert!(
            String::from_utf8(body)
                .unwrap()
                .contains("`password` is missing")
        );
    }

    #[test]
    fn read_errors_map_to_the_clients_fault() {
        let over = Refusal::of_read_error(&BodyError::TooLarge(9));
        assert_eq!(
            (over.status(), over.message().as_str()),
            (413, "the body is over 9 bytes")
        );
        assert_eq!(Refusal::of_read_error(&BodyError::TimedOut).status(), 408);
        let broken = BodyError::Broken("reading the request body: connection reset".into());
        assert_eq!(Refusal::of_read_error(&broken).status(), 400);
    }
}
