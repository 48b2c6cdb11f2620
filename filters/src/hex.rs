//! Lower-case hexadecimal, into and out of caller-supplied buffers.

const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Encodes `bytes` into `buf` (which must be exactly twice as long) and
/// returns the text.
pub fn encode_into<'b>(bytes: &[u8], buf: &'b mut [u8]) -> &'b str {
    debug_assert_eq!(buf.len(), bytes.len() * 2);
    for (pair, b) in buf.chunks_exact_mut(2).zip(bytes) {
        pair[0] = DIGITS[usize::from(b >> 4)];
        pair[1] = DIGITS[usize::from(b & 0x0f)];
    }
    // Only ASCII hex digits were written.
    std::str::from_utf8(buf).unwrap_or_default()
}

/// Encodes `bytes` as a new string.
pub fn encode(bytes: &[u8]) -> String {
    let mut buf = vec![0u8; bytes.len() * 2];
    encode_into(bytes, &mut buf).to_owned()
}

/// Decodes exactly `out.len()` bytes of lower-case hex; false on any other
/// length or character.
pub fn decode_into(text: &str, out: &mut [u8]) -> bool {
    let text = text.as_bytes();
    if text.len() != out.len() * 2 {
        return false;
    }
    for (o, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
        match (digit(pair[0]), digit(pair[1])) {
            (Some(hi), Some(lo)) => *o = (hi << 4) | lo,
            _ => return false,
        }
    }
    true
}

/// Decodes lower-case hex of any even length.
pub fn decode(text: &str) -> Option<Vec<u8>> {
    let mut out = vec![0u8; text.len() / 2];
    decode_into(text, &mut out).then_some(out)
}

fn digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}
