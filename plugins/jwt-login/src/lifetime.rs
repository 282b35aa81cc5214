//! The token's lifetime (`ttl`): seconds, or a duration as the rest of Weir's config writes one (`"1h"`,
//! `"30m"`, `"1h30m"`, `"7d"`), parsed by the SDK's [`Seconds`]; this is jwt-login's range.

use weir_sdk::config::Seconds;

/// A token living longer than a year is a config mistake more likely than a wish; it also keeps `exp`
/// far from any overflow.
pub const MAX_SECONDS: u64 = 366 * 86_400;

/// The lifetime in seconds, from 1 s to [`MAX_SECONDS`].
pub fn check(Seconds(seconds): Seconds) -> Result<u64, String> {
    if seconds == 0 || seconds > MAX_SECONDS {
        return Err(format!(
            "{seconds} s is out of range: from 1 s to {MAX_SECONDS} s (366 days)"
        ));
    }
    Ok(seconds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn parse(value: &Value) -> Result<u64, String> {
        check(serde_json::from_value(value.clone()).map_err(|e| e.to_string())?)
    }

    #[test]
    fn seconds_and_durations() {
        for (value, seconds) in [
            (json!(3600), 3600),
            (json!("1h"), 3600),
            (json!("90s"), 90),
            (json!("1h30m"), 5400),
            (json!("30d"), 2_592_000),
            (json!(" 15m "), 900),
        ] {
            assert_eq!(parse(&value), Ok(seconds), "{value}");
        }
    }

    #[test]
    fn nonsense_and_out_of_range_are_refused() {
        for value in [
            json!(0),
            json!(-5),
            json!(1.5),
            json!("0s"),
            json!("h"),
            json!("1 h"),
            json!("1w"),
            json!(""),
            json!("367d"),
            json!("99999999999999999999d"),
            json!(MAX_SECONDS + 1),
            json!(true),
        ] {
            assert!(parse(&value).is_err(), "{value}");
        }
        assert_eq!(parse(&json!(MAX_SECONDS)), Ok(MAX_SECONDS));
    }
}
