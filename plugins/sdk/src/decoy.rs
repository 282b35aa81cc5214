//! Decoy password hashes, for plugins that check passwords (basic-auth, jwt-login): what a name that is
//! no user's is checked against, so that the time of a refusal tells neither whether a user exists nor
//! which kind of hash a user has.
//!
//! Users may have hashes of different costs (an argon2id user beside a bcrypt one, or two bcrypt costs).
//! One decoy would make every unknown name cost what one of them costs, and the others would stand out.
//! So there is a decoy per cost (algorithm and parameters), and each unknown name is checked against
//! one of them, picked by a hash of the name keyed with the configured hashes: the same name always costs
//! the same, like a user, and which cost a name gets cannot be worked out without the config.

use std::hash::{DefaultHasher, Hash, Hasher};

/// One decoy per cost among the configured hashes.
pub struct Decoys<H> {
    decoys: Vec<H>,
    /// Secret to whoever has not read the config: every configured hash, salts included.
    key: u64,
}

impl<H> Decoys<H> {
    /// The decoys of `hashes` (PHC strings), each loaded with `load`. `Ok(None)` when there are no
    /// hashes; `Err` with the index of a hash of which no decoy can be made, or with `load`'s error.
    pub fn build<'a, E>(
        hashes: impl IntoIterator<Item = &'a str>,
        mut load: impl FnMut(usize, String) -> Result<H, E>,
    ) -> Result<Option<Decoys<H>>, DecoyError<E>> {
        let mut costs: Vec<&str> = Vec::new();
        let mut decoys = Vec::new();
        let mut key = DefaultHasher::new();
        for (index, hash) in hashes.into_iter().enumerate() {
            hash.hash(&mut key);
            let cost = cost_of(hash).ok_or(DecoyError::Unknown(index))?;
            if costs.contains(&cost) {
                continue;
            }
            costs.push(cost);
            let decoy = decoy_of(hash).ok_or(DecoyError::Unknown(index))?;
            decoys.push(load(index, decoy).map_err(DecoyError::Load)?);
        }
        Ok((!decoys.is_empty()).then(|| Decoys {
            decoys,
            key: key.finish(),
        }))
    }

    /// The decoy that `name`, which is no user's, is checked against: always the same one for a name.
    pub fn for_name(&self, name: &[u8]) -> &H {
        let mut hasher = DefaultHasher::new();
        self.key.hash(&mut hasher);
        name.hash(&mut hasher);
        let len = u64::try_from(self.decoys.len()).unwrap_or(u64::MAX);
        let index = usize::try_from(hasher.finish() % len).unwrap_or(0);
        &self.decoys[index]
    }

    /// How many costs the configured hashes have.
    pub fn len(&self) -> usize {
        self.decoys.len()
    }

    /// Never: a `Decoys` is only built from at least one hash.
    pub fn is_empty(&self) -> bool {
        self.decoys.is_empty()
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum DecoyError<E> {
    /// The hash at this index is of no layout a decoy can be made of.
    Unknown(usize),
    Load(E),
}

/// What a hash costs to check: its algorithm and parameters, without salt and output. bcrypt is
/// `$2b$NN$` then salt and output in one field; a PHC string ends with `$salt$output`.
fn cost_of(hash: &str) -> Option<&str> {
    let cut = if hash.starts_with("$2") {
        hash.len().checked_sub(53)?
    } else {
        let (head, _output) = hash.rsplit_once('$')?;
        head.rfind('$')?
    };
    hash.get(..cut).filter(|cost| cost.len() > 1)
}

/// The decoy of a hash: the same algorithm, cost and salt with the first character of its output
/// changed, so that no password matches it. Never the user's own hash: a candidate that matched would be
/// remembered by the host and answered fast the next time, telling someone who knows no user name that
/// it is a user's password. `None` for a text that is not a hash the host would load.
pub fn decoy_of(hash: &str) -> Option<String> {
    // PHC strings end with `$<output>`; bcrypt is `$2b$NN$` then 22 characters of salt and 31 of output.
    let output_start = if hash.starts_with("$2") {
        hash.len().checked_sub(31)?
    } else {
        hash.rfind('$')? + 1
    };
    let first = *hash.as_bytes().get(output_start).filter(|b| b.is_ascii())?;
    // `A` and `B` are in both alphabets (PHC's base64 and bcrypt's), and any character there decodes.
    let other = if first == b'A' { "B" } else { "A" };
    let mut decoy = hash.to_owned();
    decoy.replace_range(output_start..=output_start, other);
    Some(decoy)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARGON: &str =
        "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHQ$h/dZ2lsbN0TAfpkOt8Ma2lRXK1Qn5GBGSkfGsnsXq4k";
    const ARGON_SAME_COST: &str =
        "$argon2id$v=19$m=19456,t=2,p=1$b3RoZXJzYWx0$AAdZ2lsbN0TAfpkOt8Ma2lRXK1Qn5GBGSkfGsnsXq4k";
    const BCRYPT: &str = "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW";
    const BCRYPT_10: &str = "$2b$10$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW";

    fn build(hashes: &[&str]) -> Decoys<String> {
        Decoys::build(hashes.iter().copied(), |_, d| Ok::<_, ()>(d))
            .unwrap()
            .unwrap()
    }

    #[test]
    fn a_decoy_differs_from_its_hash_in_the_output_only() {
        let argon =
            "$argon2id$v=19$m=8192,t=2,p=1$c29tZXNhbHQ$AbCdEfGhIjKlMnOpQrStUvWxYz0123456789+/abcde";
        let decoy = decoy_of(argon).unwrap();
        assert_eq!(decoy.len(), argon.len());
        assert_eq!(decoy, argon.replacen("$AbCd", "$BbCd", 1));
        let bcrypt = "$2b$04$abcdefghijklmnopqrstuuNqZCLHz2Cn7wx7Ue3tXhS2cnY7ATLyO";
        let decoy = decoy_of(bcrypt).unwrap();
        assert_eq!(&decoy[..29], &bcrypt[..29]);
        assert_eq!(&decoy[29..30], "A");
        assert_eq!(&decoy[30..], &bcrypt[30..]);
        assert_eq!(decoy_of("$2b$"), None);
        assert_eq!(decoy_of("plain"), None);
    }

    #[test]
    fn one_decoy_per_cost() {
        assert_eq!(cost_of(ARGON), Some("$argon2id$v=19$m=19456,t=2,p=1"));
        assert_eq!(cost_of(BCRYPT), Some("$2b$12$"));
        assert_eq!(cost_of("$2b$12$short"), None);
        assert_eq!(cost_of("$x"), None);
        assert_eq!(build(&[ARGON, ARGON_SAME_COST]).len(), 1);
        assert_eq!(build(&[ARGON, BCRYPT, ARGON_SAME_COST, BCRYPT_10]).len(), 3);
    }

    #[test]
    fn a_name_always_gets_the_same_decoy_and_names_spread_over_all() {
        let decoys = build(&[ARGON, BCRYPT, BCRYPT_10]);
        let mut seen = std::collections::BTreeSet::new();
        for n in 0..200 {
            let name = format!("user{n}");
            let first = decoys.for_name(name.as_bytes());
            assert_eq!(first, decoys.for_name(name.as_bytes()));
            seen.insert(first.clone());
        }
        assert_eq!(seen.len(), 3);
    }

    #[test]
    fn a_hash_of_no_known_layout_is_named() {
        let built = Decoys::build(["$2b$12$ok".repeat(8).as_str(), "plain"], |_, d| {
            Ok::<_, ()>(d)
        });
        assert_eq!(built.err(), Some(DecoyError::Unknown(1)));
        let none = Decoys::build(std::iter::empty(), |_, d| Ok::<String, ()>(d));
        assert!(none.unwrap().is_none());
    }
}
