//! The token's lifetime (`ttl`): seconds, or a duration as the rest of Weir's config writes one (`"1h"`,
//! `"30m"`, `"1h30m"`, `"7d"`).

use serde_json::Value;

/// A token living longer than a year is a config mistake more likely than a wish; it also keeps `exp`
/// far from any overflow.
pub const MAX_SECONDS: u64 = 366 * 86_400;

/// The lifetime in seconds, from 1 s to [`MAX_SECONDS`].
pub fn parse(value: &Value) -> Result<u64, String> {
    let seconds = match value {
        Value::Number(n) => n
            .as_u64()
            .ok_or_else(|| format!("`{n}` is not a whole number of seconds"))?,
        Value::String(text) => duration(text)?,
        _ => return Err("give seconds (3600) or a duration (\"1h\")".into()),
    };
    if seconds == 0 || seconds > MAX_SECONDS {
        return Err(format!(
            "{seconds} s is out of range: from 1 s to {MAX_SECONDS} s (366 days)"
        ));
    }
    Ok(seconds)
}

/// `"1h30m"`: numbers each followed by a unit, `s`, `m`, `h` or `d`.
fn duration(text: &str) -> Result<u64, String> {
    let invalid =
        || format!("`{text}` is not a duration such as \"3600s\", \"60m\", \"1h\" or \"7d\"");
    let mut total: u64 = 0;
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(invalid());
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (number, after) = rest.split_at(digits);
        let number: u64 = number.parse().map_err(|_| invalid())?;
        let unit = after.chars().next().ok_or_else(invalid)?;
        let scale = match unit {
            's' => 1,
            'm' => 60,
            'h' => 3_600,
            'd' => 86_400,
            _ => return Err(invalid()),
        };
        total = number
            .checked_mul(scale)
            .and_then(|s| total.checked_add(s))
            .ok_or_else(invalid)?;
        rest = &after[unit.len_utf8()..];
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
            json!("1"),
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
