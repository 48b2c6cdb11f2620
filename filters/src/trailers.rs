//! The trailer block: the plaintext of a trailer record (PROTOCOL.md §6.5),
//! the fields an HTTP message sends after its body (a gRPC status, say).
//!
//! ```text
//! block = u16be(count) || count × ( u16be(len(name)) || name || u16be(len(value)) || value )
//! ```
//!
//! `count` is 1–[`MAX_FIELDS`]; a name is 1–[`MAX_NAME`] bytes of lower-case
//! HTTP token characters; a value is 0–[`MAX_VALUE`] bytes of printable ASCII,
//! space or tab; the block is at most [`MAX_BLOCK`] bytes. Nothing follows the
//! last field. Anything else is `corrupt_record`: the block was authenticated,
//! so a malformed one comes from a broken sender, and a receiver delivers none
//! of it.

use crate::error::{Error, Result};

/// Most fields in one block.
pub const MAX_FIELDS: usize = 64;
/// Most bytes in a field name.
pub const MAX_NAME: usize = 128;
/// Most bytes in a field value.
pub const MAX_VALUE: usize = 4096;
/// Most bytes in an encoded block.
pub const MAX_BLOCK: usize = 8192;

/// Trailer fields in the order they were sent: `(name, value)`.
pub type Fields = Vec<(String, String)>;

/// True for a valid trailer field name: lower-case token characters.
pub fn valid_name(name: &[u8]) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name.iter().all(|&b| {
            b.is_ascii_lowercase()
                || b.is_ascii_digit()
                || matches!(
                    b,
                    b'!' | b'#'
                        | b'$'
                        | b'%'
                        | b'&'
                        | b'\''
                        | b'*'
                        | b'+'
                        | b'-'
                        | b'.'
                        | b'^'
                        | b'_'
                        | b'`'
                        | b'|'
                        | b'~'
                )
        })
}

/// True for a valid trailer field value: printable ASCII, space or tab.
pub fn valid_value(value: &[u8]) -> bool {
    value.len() <= MAX_VALUE && value.iter().all(|&b| b == b'\t' || (0x20..0x7f).contains(&b))
}

/// Encodes `fields` as a block. Fails with [`Error::Malformed`] when a field,
/// the count or the size is outside the rules above.
pub fn encode<'a>(fields: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Vec<u8>> {
    let mut out = vec![0, 0];
    let mut count = 0usize;
    for (name, value) in fields {
        if !valid_name(name.as_bytes()) || !valid_value(value.as_bytes()) {
            return Err(Error::Malformed("trailer field"));
        }
        count += 1;
        out.extend_from_slice(&(name.len() as u16).to_be_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&(value.len() as u16).to_be_bytes());
        out.extend_from_slice(value.as_bytes());
    }
    if count == 0 || count > MAX_FIELDS || out.len() > MAX_BLOCK {
        return Err(Error::Malformed("trailer block"));
    }
    out[..2].copy_from_slice(&(count as u16).to_be_bytes());
    Ok(out)
}

/// Decodes a block; any deviation from the format is [`Error::CorruptRecord`].
pub fn decode(block: &[u8]) -> Result<Fields> {
    if block.len() > MAX_BLOCK {
        return Err(Error::CorruptRecord);
    }
    let mut rest = block;
    let count = usize::from(take_u16(&mut rest)?);
    if count == 0 || count > MAX_FIELDS {
        return Err(Error::CorruptRecord);
    }
    let mut fields = Vec::with_capacity(count);
    for _ in 0..count {
        let name = take_field(&mut rest)?;
        let value = take_field(&mut rest)?;
        if !valid_name(name) || !valid_value(value) {
            return Err(Error::CorruptRecord);
        }
        // Both checked as ASCII above.
        let name = String::from_utf8(name.to_vec()).map_err(|_| Error::CorruptRecord)?;
        let value = String::from_utf8(value.to_vec()).map_err(|_| Error::CorruptRecord)?;
        fields.push((name, value));
    }
    if !rest.is_empty() {
        return Err(Error::CorruptRecord);
    }
    Ok(fields)
}

fn take_u16(rest: &mut &[u8]) -> Result<u16> {
    if rest.len() < 2 {
        return Err(Error::CorruptRecord);
    }
    let n = u16::from_be_bytes([rest[0], rest[1]]);
    *rest = &rest[2..];
    Ok(n)
}

fn take_field<'a>(rest: &mut &'a [u8]) -> Result<&'a [u8]> {
    let len = usize::from(take_u16(rest)?);
    if rest.len() < len {
        return Err(Error::CorruptRecord);
    }
    let (field, tail) = rest.split_at(len);
    *rest = tail;
    Ok(field)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_round_trips() {
        let block = encode([("grpc-status", "0"), ("grpc-message", "")]).unwrap();
        assert_eq!(block, b"\x00\x02\x00\x0bgrpc-status\x00\x010\x00\x0cgrpc-message\x00\x00".to_vec());
        assert_eq!(
            decode(&block).unwrap(),
            vec![("grpc-status".into(), "0".into()), ("grpc-message".into(), String::new())]
        );
    }

    #[test]
    fn bad_blocks_are_corrupt() {
        let good = encode([("a", "b")]).unwrap();
        for bad in [
            &b""[..],
            b"\x00\x00",
            b"\x00\x01\x00\x01a",
            b"\x00\x01\x00\x01A\x00\x01b",
            b"\x00\x01\x00\x01a\x00\x01\n",
            b"\x00\x01\x00\x00\x00\x01b",
        ] {
            assert_eq!(decode(bad), Err(Error::CorruptRecord), "{bad:?}");
        }
        let mut trailing = good.clone();
        trailing.push(0);
        assert_eq!(decode(&trailing), Err(Error::CorruptRecord));
        assert!(encode([]).is_err());
        assert!(encode([("Upper", "x")]).is_err());
        assert!(encode([("a", "x\r\n")]).is_err());
    }
}
