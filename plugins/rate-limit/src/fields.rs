//! What the client is told: the `RateLimit-Policy` and `RateLimit` fields of draft-ietf-httpapi-ratelimit-
//! headers (Structured Field lists, RFC 9651), the older `X-RateLimit-*` trio, and the 429's
//! `application/problem+json` body with the draft's `quota-exceeded` type.

use weir_sdk::store::Verdict;

/// One limit as the fields name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub name: String,
    pub quota: u32,
    pub window_s: u64,
    pub burst: u32,
}

/// An sf-string: printable ASCII in quotes, `"` and `\` escaped (names are checked to be printable ASCII
/// when the config is read).
fn sf_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        if matches!(c, '"' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Whole seconds, rounded up: a client that waits that long finds the quota there.
pub fn seconds(ms: u64) -> u64 {
    ms.div_ceil(1000)
}

/// `"10/s";q=10;w=1;weir-burst=20, "1000/h";q=1000;w=3600`: the same on every response. The burst, which
/// the draft has no parameter for, is a vendor-prefixed one, as the draft asks.
pub fn policy(policies: &[Policy]) -> String {
    let items: Vec<String> = policies
        .iter()
        .map(|p| {
            let mut item = format!("{};q={};w={}", sf_string(&p.name), p.quota, p.window_s);
            if p.burst > 0 {
                item.push_str(&format!(";weir-burst={}", p.burst));
            }
            item
        })
        .collect();
    items.join(", ")
}

/// `"10/s";r=29;t=1, "1000/h";r=999;t=4`: what is left of each, and the seconds until another unit comes
/// free (`t` left out when the limit is full: no more quota is coming).
pub fn state(policies: &[Policy], verdicts: &[Verdict]) -> String {
    let items: Vec<String> = policies
        .iter()
        .zip(verdicts)
        .map(|(p, v)| {
            let mut item = format!("{};r={}", sf_string(&p.name), v.remaining);
            if v.next_ms > 0 {
                item.push_str(&format!(";t={}", seconds(v.next_ms)));
            }
            item
        })
        .collect();
    items.join(", ")
}

/// `X-RateLimit-Limit`, `-Remaining` and `-Reset` (seconds until the limit is whole again), of the limit
/// with the least left: the one the client meets first.
pub fn legacy(policies: &[Policy], verdicts: &[Verdict]) -> Option<(u32, u64, u64)> {
    policies
        .iter()
        .zip(verdicts)
        .min_by_key(|(_, v)| v.remaining)
        .map(|(p, v)| (p.quota, v.remaining, seconds(v.reset_ms)))
}

/// The 429's body (RFC 9457), naming the limits the request went over.
pub fn quota_exceeded(violated: &[&str], retry_after_s: u64) -> String {
    serde_json::json!({
        "type": "https://iana.org/assignments/http-problem-types#quota-exceeded",
        "title": "Request cannot be satisfied as assigned quota has been exceeded",
        "status": 429,
        "detail": format!("Too many requests: try again in {retry_after_s} s"),
        "violated-policies": violated,
    })
    .to_string()
}

/// The 503 of `on_store_error = "deny"` while the store is unavailable.
pub fn reduced_capacity() -> String {
    serde_json::json!({
        "type": "https://iana.org/assignments/http-problem-types#temporary-reduced-capacity",
        "title": "Request cannot be satisfied due to temporary server capacity constraints",
        "status": 503,
        "detail": "The rate limiter's store is unavailable",
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policies() -> Vec<Policy> {
        vec![
            Policy {
                name: "10/s".into(),
                quota: 10,
                window_s: 1,
                burst: 20,
            },
            Policy {
                name: "say \"hi\"".into(),
                quota: 1000,
                window_s: 3600,
                burst: 0,
            },
        ]
    }

    fn verdict(remaining: u64, next_ms: u64, reset_ms: u64) -> Verdict {
        Verdict {
            allowed: true,
            remaining,
            next_ms,
            reset_ms,
            retry_after_ms: 0,
        }
    }

    #[test]
    fn fields_are_structured_field_lists() {
        assert_eq!(
            policy(&policies()),
            r#""10/s";q=10;w=1;weir-burst=20, "say \"hi\"";q=1000;w=3600"#
        );
        let verdicts = [verdict(29, 100, 100), verdict(1000, 0, 0)];
        assert_eq!(
            state(&policies(), &verdicts),
            r#""10/s";r=29;t=1, "say \"hi\"";r=1000"#
        );
        assert_eq!(legacy(&policies(), &verdicts), Some((10, 29, 1)));
    }

    #[test]
    fn the_problem_names_the_violated_limits() {
        let body: serde_json::Value = serde_json::from_str(&quota_exceeded(&["10/s"], 3)).unwrap();
        assert_eq!(body["status"], 429);
        assert_eq!(body["violated-policies"], serde_json::json!(["10/s"]));
    }
}
