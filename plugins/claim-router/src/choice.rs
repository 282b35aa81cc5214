//! Where a value sends the request: the pure part of the plugin, tested natively.

use serde::Deserialize;
use std::collections::BTreeMap;
use weir_sdk::ConfigError;
use weir_sdk::exclude::is_token_byte;

/// Where the value is read.
#[derive(Debug, PartialEq, Eq)]
pub enum Source {
    Context(String),
    /// Lower-cased, as the host compares names.
    Header(String),
}

impl Source {
    /// `ctx.KEY` or `header.NAME`, the spelling of the templates' placeholders.
    pub fn parse(from: &str) -> Result<Source, String> {
        if let Some(key) = from.strip_prefix("ctx.") {
            if key.is_empty() {
                return Err("`ctx.` needs a context key after it (`ctx.jwt.user_id`)".into());
            }
            return Ok(Source::Context(key.to_owned()));
        }
        if let Some(name) = from.strip_prefix("header.") {
            if name.is_empty() || !name.bytes().all(is_token_byte) {
                return Err(format!("`{name}` is not a header name"));
            }
            return Ok(Source::Header(name.to_ascii_lowercase()));
        }
        Err(format!(
            "`{from}` names no value: write `ctx.KEY` (a context value, such as a JWT claim) or \
             `header.NAME`"
        ))
    }
}

/// `upstreams[value mod divisor]` for an integer value.
#[derive(Debug, Deserialize)]
pub struct Modulo {
    pub divisor: u64,
    pub upstreams: Vec<String>,
}

/// The rules, checked.
#[derive(Debug)]
pub struct Choice {
    map: BTreeMap<String, String>,
    modulo: Option<Modulo>,
    default: Option<String>,
}

impl Choice {
    pub fn new(
        map: BTreeMap<String, String>,
        modulo: Option<Modulo>,
        default: Option<String>,
    ) -> Result<Choice, ConfigError> {
        if map.is_empty() && modulo.is_none() {
            return Err(ConfigError::new(
                "map",
                "give `map` (exact values), `modulo` (integer values), or both",
            ));
        }
        let named = map
            .iter()
            .map(|(value, upstream)| (format!("map.{value}"), upstream))
            .chain(default.iter().map(|d| ("default".to_owned(), d)));
        for (field, upstream) in named {
            if upstream.is_empty() {
                return Err(ConfigError::new(field, "an empty upstream name"));
            }
        }
        if let Some(modulo) = &modulo {
            if modulo.divisor == 0 {
                return Err(ConfigError::new("modulo.divisor", "must be at least 1"));
            }
            if u64::try_from(modulo.upstreams.len()) != Ok(modulo.divisor) {
                return Err(ConfigError::new(
                    "modulo.upstreams",
                    format!(
                        "{} upstreams for divisor {}: give one per remainder (remainder i picks \
                         upstreams[i])",
                        modulo.upstreams.len(),
                        modulo.divisor
                    ),
                ));
            }
            if let Some(i) = modulo.upstreams.iter().position(String::is_empty) {
                return Err(ConfigError::new(
                    format!("modulo.upstreams.{i}"),
                    "an empty upstream name",
                ));
            }
        }
        Ok(Choice {
            map,
            modulo,
            default,
        })
    }

    /// The upstream for `value`; `None` leaves the route's own.
    pub fn pick(&self, value: Option<&str>) -> Option<&str> {
        let chosen = value.and_then(|value| {
            if let Some(upstream) = self.map.get(value) {
                return Some(upstream);
            }
            let modulo = self.modulo.as_ref()?;
            let index = usize::try_from(remainder(value, modulo.divisor)?).ok()?;
            modulo.upstreams.get(index)
        });
        chosen.or(self.default.as_ref()).map(String::as_str)
    }
}

/// `text mod divisor` for a decimal integer of any length (a `user_id` may outgrow `u64`), Euclidean so that
/// a negative value's remainder is in range too (-3 is odd: remainder 1). `None` for anything that is not
/// an optional `-` and digits.
fn remainder(text: &str, divisor: u64) -> Option<u64> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(digits) => (true, digits),
        None => (false, text),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digit = |b: u8| b - b'0';
    // Each step stays below 10 × divisor: in u64 for any divisor a config can have (one upstream per
    // remainder), where it is one Wasm instruction; u128 division is a library call per digit.
    let r = if divisor <= (u64::MAX - 9) / 10 {
        digits
            .bytes()
            .fold(0, |r, b| (r * 10 + u64::from(digit(b))) % divisor)
    } else {
        let wide = u128::from(divisor);
        let r = digits
            .bytes()
            .fold(0, |r, b| (r * 10 + u128::from(digit(b))) % wide);
        u64::try_from(r).ok()?
    };
    Some(if negative && r != 0 { divisor - r } else { r })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn modulo(upstreams: &[&str]) -> Option<Modulo> {
        Some(Modulo {
            divisor: upstreams.len() as u64,
            upstreams: upstreams.iter().map(|s| (*s).to_owned()).collect(),
        })
    }

    fn map(entries: &[(&str, &str)]) -> BTreeMap<String, String> {
        entries
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn odd_and_even_go_to_their_upstreams_and_others_to_the_default() {
        let choice = Choice::new(BTreeMap::new(), modulo(&["a", "b"]), Some("d".into())).unwrap();
        for (value, upstream) in [
            (Some("2"), "a"),
            (Some("7"), "b"),
            (Some("0"), "a"),
            (Some("-3"), "b"),
            (Some("-4"), "a"),
            (Some("0012"), "a"),
            (Some("123456789012345678901234567890123"), "b"),
            (Some("7.0"), "d"),
            (Some("1e3"), "d"),
            (Some("+7"), "d"),
            (Some(" 7"), "d"),
            (Some("-"), "d"),
            (Some(""), "d"),
            (Some("seven"), "d"),
            (None, "d"),
        ] {
            assert_eq!(choice.pick(value), Some(upstream), "{value:?}");
        }
    }

    #[test]
    fn remainders_match_native_arithmetic() {
        let edge = (u64::MAX - 9) / 10;
        for divisor in [1, 2, 3, 7, 10, edge, edge + 1, u64::MAX] {
            for n in [
                0i128,
                1,
                9,
                10,
                99,
                12345,
                -1,
                -7,
                -12345,
                i128::from(u64::MAX),
            ] {
                let expected = n.rem_euclid(i128::from(divisor)) as u64;
                assert_eq!(
                    remainder(&n.to_string(), divisor),
                    Some(expected),
                    "{n} mod {divisor}"
                );
            }
        }
    }

    #[test]
    fn an_exact_entry_wins_over_the_modulo_and_without_a_default_the_route_keeps_its_own() {
        let choice = Choice::new(
            map(&[("7", "vip"), ("gold", "g")]),
            modulo(&["a", "b"]),
            None,
        )
        .unwrap();
        assert_eq!(choice.pick(Some("7")), Some("vip"));
        assert_eq!(choice.pick(Some("9")), Some("b"));
        assert_eq!(choice.pick(Some("gold")), Some("g"));
        assert_eq!(
            choice.pick(Some("Gold")),
            None,
            "values are compared exactly"
        );
        assert_eq!(choice.pick(None), None);
    }

    #[test]
    fn bad_rules_are_refused_naming_the_field() {
        let refused = |map, modulo, default| Choice::new(map, modulo, default).unwrap_err().field;
        assert_eq!(refused(BTreeMap::new(), None, Some("d".into())), "map");
        let zero = Some(Modulo {
            divisor: 0,
            upstreams: vec![],
        });
        assert_eq!(refused(BTreeMap::new(), zero, None), "modulo.divisor");
        let short = Some(Modulo {
            divisor: 3,
            upstreams: vec!["a".into(), "b".into()],
        });
        assert_eq!(refused(BTreeMap::new(), short, None), "modulo.upstreams");
        assert_eq!(
            refused(BTreeMap::new(), modulo(&["a", ""]), None),
            "modulo.upstreams.1"
        );
        assert_eq!(refused(map(&[("x", "")]), None, None), "map.x");
        assert_eq!(
            refused(map(&[("x", "a")]), None, Some(String::new())),
            "default"
        );
    }

    #[test]
    fn sources_are_context_keys_or_header_names() {
        assert_eq!(
            Source::parse("ctx.jwt.user_id"),
            Ok(Source::Context("jwt.user_id".into()))
        );
        assert_eq!(
            Source::parse("header.X-Tenant"),
            Ok(Source::Header("x-tenant".into()))
        );
        for bad in [
            "ctx.",
            "header.",
            "header.x tenant",
            "jwt.user_id",
            "user_id",
            "",
        ] {
            assert!(Source::parse(bad).is_err(), "{bad}");
        }
    }
}
