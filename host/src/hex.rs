//! Bytes as lower-case hex: a certificate's hash in `X-Forwarded-Client-Cert`, a module's digest in a compile
//! cache file's name.

/// Appends `bytes` to `out`, two lower-case hex digits each.
pub fn push(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    out.reserve(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0xf)]));
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn two_lower_case_digits_a_byte() {
        let mut out = String::from("x=");
        super::push(&mut out, &[0x00, 0x0f, 0xa5, 0xff]);
        assert_eq!(out, "x=000fa5ff");
    }
}
