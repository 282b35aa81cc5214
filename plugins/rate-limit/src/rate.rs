//! A limit as the config writes it: `"10/s"`, `"1000/h"`, `"300/15m"`: units per period, the period a whole
//! number of seconds, minutes, hours or days, so that it is the `w` of `RateLimit-Policy` (whole seconds).

use serde::Deserialize;

/// `rate` units per `period_s` seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Rate {
    pub units: u32,
    pub period_s: u64,
}

/// A year and a day: the host's longest period.
const MAX_PERIOD_S: u64 = 366 * 86_400;

impl TryFrom<String> for Rate {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        let invalid = || {
            format!(
                "`{text}` is not a rate such as \"10/s\", \"1000/h\" or \"300/15m\" (units per s, m, h or d)"
            )
        };
        let (units, period) = text.split_once('/').ok_or_else(invalid)?;
        let units: u32 = units.trim().parse().map_err(|_| invalid())?;
        if units == 0 {
            return Err(format!("`{text}`: a rate of 0 would refuse everything"));
        }
        let period = period.trim();
        let digits = period.bytes().take_while(u8::is_ascii_digit).count();
        let (count, unit) = period.split_at(digits);
        let count: u64 = if count.is_empty() {
            1
        } else {
            count.parse().map_err(|_| invalid())?
        };
        let scale = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3_600,
            "d" => 86_400,
            _ => return Err(invalid()),
        };
        let period_s = count.checked_mul(scale).ok_or_else(invalid)?;
        if period_s == 0 || period_s > MAX_PERIOD_S {
            return Err(format!("`{text}`: the period must be 1 s to 366 days"));
        }
        Ok(Rate { units, period_s })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(text: &str) -> Result<Rate, String> {
        Rate::try_from(text.to_owned())
    }

    #[test]
    fn units_per_period() {
        assert_eq!(
            rate("10/s"),
            Ok(Rate {
                units: 10,
                period_s: 1
            })
        );
        assert_eq!(
            rate("1000/h"),
            Ok(Rate {
                units: 1000,
                period_s: 3600
            })
        );
        assert_eq!(
            rate("300/15m"),
            Ok(Rate {
                units: 300,
                period_s: 900
            })
        );
        assert_eq!(
            rate("5 / d"),
            Ok(Rate {
                units: 5,
                period_s: 86_400
            })
        );
    }

    #[test]
    fn nonsense_is_refused() {
        for text in [
            "10", "10/", "/s", "10/w", "10/1.5s", "-1/s", "10/0s", "10/367d", "ten/s",
        ] {
            assert!(rate(text).is_err(), "{text}");
        }
        assert!(rate("0/s").unwrap_err().contains("refuse everything"));
    }
}
