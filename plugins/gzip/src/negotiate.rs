//! Choosing a content coding from the client's `Accept-Encoding` (RFC 9110 section 12.5.3) and the
//! server's preference.

use crate::config::Encoding;

/// A q-value in thousandths (`q=0.5` is 500), so that comparing preferences needs no floats.
type Q = u16;

const Q_MAX: Q = 1000;

/// What the client said about one coding: its own entry, else `*`, else nothing.
#[derive(Debug, Default)]
struct Accepted {
    codings: Vec<(String, Q)>,
    star: Option<Q>,
}

impl Accepted {
    /// Every value of the header, joined: `Accept-Encoding: gzip` + `Accept-Encoding: br` is `gzip, br`.
    /// A malformed entry is ignored, not guessed at.
    fn parse(values: &[Vec<u8>]) -> Self {
        let mut accepted = Accepted::default();
        for value in values {
            let Ok(value) = core::str::from_utf8(value) else {
                continue;
            };
            for entry in value.split(',') {
                let mut parts = entry.split(';');
                let coding = parts.next().unwrap_or("").trim().to_ascii_lowercase();
                if coding.is_empty() {
                    continue;
                }
                let Some(q) = parts.try_fold(Q_MAX, |q, param| weight(param).unwrap_or(Some(q)))
                else {
                    continue;
                };
                match coding.as_str() {
                    "*" => accepted.star = Some(q),
                    // RFC 9110 section 8.4.1.3: `x-gzip` is `gzip`.
                    "x-gzip" => accepted.codings.push(("gzip".into(), q)),
                    _ => accepted.codings.push((coding, q)),
                }
            }
        }
        accepted
    }

    fn explicit(&self, coding: &str) -> Option<Q> {
        self.codings
            .iter()
            .find(|(c, _)| c == coding)
            .map(|&(_, q)| q)
    }

    fn q(&self, coding: &str) -> Q {
        self.explicit(coding).or(self.star).unwrap_or(0)
    }
}

/// `q=0.5` gives `Some(Some(500))`, a malformed q `Some(None)` (the entry is dropped), another parameter
/// `None` (ignored).
fn weight(param: &str) -> Option<Option<Q>> {
    let (name, value) = param.split_once('=')?;
    if !name.trim().eq_ignore_ascii_case("q") {
        return None;
    }
    Some(parse_q(value.trim()))
}

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )`
fn parse_q(text: &str) -> Option<Q> {
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let thousandths: Q = format!("{frac:0<3}").parse().ok()?;
    match int {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(Q_MAX),
        _ => None,
    }
}

/// The coding to use, or `None` to send the body as it is. `header` is every `Accept-Encoding` value;
/// none at all means the client did not ask for compression, and gets none (as nginx does).
///
/// The client's q-values decide and the server's order (`offered`, most preferred first) breaks ties. An
/// `identity` the client explicitly prefers over every offered coding wins, so `gzip;q=0.5, identity` is
/// not compressed.
pub fn choose(header: &[Vec<u8>], offered: &[Encoding]) -> Option<Encoding> {
    if header.is_empty() {
        return None;
    }
    let accepted = Accepted::parse(header);
    let (best, q) = offered
        .iter()
        .map(|&e| (e, accepted.q(e.token())))
        .filter(|&(_, q)| q > 0)
        // `max_by_key` keeps the last of equals: reversed, that is the server's first.
        .rev()
        .max_by_key(|&(_, q)| q)?;
    match accepted.explicit("identity") {
        Some(identity) if identity > q => None,
        _ => Some(best),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Encoding::{Brotli, Gzip};

    fn pick(header: &str, offered: &[Encoding]) -> Option<Encoding> {
        choose(&[header.as_bytes().to_vec()], offered)
    }

    const BOTH: &[Encoding] = &[Brotli, Gzip];

    #[test]
    fn plain_lists_follow_the_server_preference() {
        assert_eq!(pick("gzip", BOTH), Some(Gzip));
        assert_eq!(pick("br", BOTH), Some(Brotli));
        assert_eq!(pick("gzip, deflate, br", BOTH), Some(Brotli));
        assert_eq!(pick("gzip, deflate, br", &[Gzip, Brotli]), Some(Gzip));
        assert_eq!(pick("br", &[Gzip]), None);
        assert_eq!(pick("deflate", BOTH), None);
        assert_eq!(
            pick("GZIP", BOTH),
            Some(Gzip),
            "codings are case-insensitive"
        );
        assert_eq!(pick("x-gzip", BOTH), Some(Gzip));
    }

    #[test]
    fn q_values_decide_before_the_server_preference() {
        assert_eq!(pick("br;q=0.5, gzip", BOTH), Some(Gzip));
        assert_eq!(pick("br;q=0.5, gzip;q=0.4", BOTH), Some(Brotli));
        assert_eq!(pick("gzip;q=0.8, br;q=0.8", BOTH), Some(Brotli));
        assert_eq!(pick("gzip ; Q=0.9 , br;q=0.95", BOTH), Some(Brotli));
        assert_eq!(pick("gzip;q=1.0", BOTH), Some(Gzip));
        assert_eq!(pick("gzip;q=0.001", BOTH), Some(Gzip));
    }

    #[test]
    fn q_zero_means_never() {
        assert_eq!(pick("gzip;q=0", BOTH), None);
        assert_eq!(pick("gzip;q=0.000, br;q=0", BOTH), None);
        assert_eq!(pick("br;q=0, gzip", BOTH), Some(Gzip));
        assert_eq!(pick("*, gzip;q=0", &[Gzip]), None);
    }

    #[test]
    fn star_counts_for_codings_not_listed() {
        assert_eq!(pick("*", BOTH), Some(Brotli));
        assert_eq!(pick("*;q=0.5, gzip", BOTH), Some(Gzip));
        assert_eq!(pick("*;q=0", BOTH), None);
        assert_eq!(pick("br;q=0, *", BOTH), Some(Gzip));
    }

    #[test]
    fn identity_is_respected() {
        assert_eq!(pick("identity", BOTH), None);
        assert_eq!(pick("gzip;q=0.5, identity", BOTH), None);
        assert_eq!(pick("gzip, identity;q=0.5", BOTH), Some(Gzip));
        assert_eq!(pick("gzip, identity", BOTH), Some(Gzip), "a tie compresses");
        assert_eq!(pick("identity;q=0, gzip", BOTH), Some(Gzip));
    }

    #[test]
    fn absent_empty_and_malformed_headers_do_not_compress() {
        assert_eq!(choose(&[], BOTH), None);
        assert_eq!(pick("", BOTH), None);
        assert_eq!(pick(" , ;q=1", BOTH), None);
        assert_eq!(pick("gzip;q=2", BOTH), None);
        assert_eq!(pick("gzip;q=0.5.1", BOTH), None);
        assert_eq!(pick("gzip;q=0.1234", BOTH), None);
        assert_eq!(pick("gzip;q=abc, br", BOTH), Some(Brotli));
        assert_eq!(
            pick("gzip;level=1", BOTH),
            Some(Gzip),
            "other parameters are ignored"
        );
        assert_eq!(choose(&[vec![0xff], b"gzip".to_vec()], BOTH), Some(Gzip));
    }

    #[test]
    fn several_header_lines_are_one_list() {
        let lines = [b"br;q=0.1".to_vec(), b"gzip".to_vec()];
        assert_eq!(choose(&lines, BOTH), Some(Gzip));
    }

    #[test]
    fn q_values_parse_per_the_grammar() {
        assert_eq!(parse_q("1"), Some(1000));
        assert_eq!(parse_q("1.000"), Some(1000));
        assert_eq!(parse_q("1.001"), None);
        assert_eq!(parse_q("0"), Some(0));
        assert_eq!(parse_q("0.5"), Some(500));
        assert_eq!(parse_q("0.05"), Some(50));
        assert_eq!(parse_q(".5"), None);
        assert_eq!(parse_q("-0"), None);
        assert_eq!(parse_q(""), None);
    }
}
