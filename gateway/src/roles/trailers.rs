//! Trailers across the sealed hop (PROTOCOL.md §6.5): the callee's HTTP
//! trailers become the response's trailer record at the inbound proxy, and
//! the outbound proxy turns the verified record back into HTTP trailers.
//!
//! Over HTTP/2 the record travels in the `x-fp-trailer` HTTP trailer: a
//! proxy can end an HTTP/2 response with trailers only when the response it
//! relays ends with trailers. Over HTTP/1.1 it is the end of the body.

use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use filters::trailers::{self as block, Fields};
use filters::Sealer;
use http::{HeaderMap, HeaderName, HeaderValue};

use crate::http_util::HOP_BY_HOP;

/// The HTTP/2 trailer field carrying the trailer record.
pub const CARRIER: HeaderName = HeaderName::from_static("x-fp-trailer");
/// Longest `x-fp-trailer` value: the base64 of the largest trailer record.
pub const MAX_CARRIER: usize = 11_000;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The trailer fields that cross the hop, in order: valid names and values
/// (PROTOCOL.md §6.5), not hop-by-hop, not the protocol's own `x-fp*`.
/// Others are dropped with a debug line.
pub fn crossing(map: &HeaderMap) -> Vec<(&str, &str)> {
    map.iter()
        .filter_map(|(name, value)| {
            let n = name.as_str();
            let ours = n == filters::envelope::HEADER || n.starts_with("x-fp-");
            let value = value.to_str().ok().filter(|v| block::valid_value(v.as_bytes()));
            match value {
                Some(v) if !ours && !HOP_BY_HOP.contains(name) && block::valid_name(n.as_bytes()) => Some((n, v)),
                _ => {
                    log::debug!(target: "fastproxy::inbound", "trailer field {n} not forwarded");
                    None
                }
            }
        })
        .collect()
}

/// Ends `sealer`'s body with the trailer record of `map`'s crossing fields
/// (or an ordinary final record when none cross).
pub fn seal(sealer: &mut Sealer, map: &HeaderMap) -> Result<Bytes, filters::Error> {
    let fields = crossing(map);
    let mut out = BytesMut::new();
    if fields.is_empty() {
        sealer.finish(&mut out)?;
    } else {
        let encoded = block::encode(fields)?;
        sealer.finish_with_trailers(&encoded, &mut out)?;
    }
    Ok(out.freeze())
}

/// The `x-fp-trailer` value carrying `records`.
pub fn carrier_value(records: &[u8]) -> Option<HeaderValue> {
    HeaderValue::from_str(&B64.encode(records)).ok()
}

/// The record bytes an `x-fp-trailer` field carries, if there is one. Two
/// fields, an over-long value or one that is not base64 are
/// `corrupt_record`.
pub fn carried(map: &HeaderMap) -> Result<Option<Vec<u8>>, filters::Error> {
    let mut values = map.get_all(&CARRIER).iter();
    let Some(value) = values.next() else { return Ok(None) };
    if values.next().is_some() || value.len() > MAX_CARRIER {
        return Err(filters::Error::CorruptRecord);
    }
    B64.decode(value.as_bytes()).map(Some).map_err(|_| filters::Error::CorruptRecord)
}

/// Replaces `map`'s fields with `fields` (verified trailers).
pub fn restore(map: &mut HeaderMap, fields: Fields) {
    map.clear();
    for (name, value) in fields {
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(&value)) {
            map.append(n, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_valid_end_to_end_fields_cross() {
        let mut map = HeaderMap::new();
        map.insert("grpc-status", HeaderValue::from_static("0"));
        map.insert("x-fp-trailer", HeaderValue::from_static("forged"));
        map.insert("connection", HeaderValue::from_static("close"));
        map.append("grpc-status-details-bin", HeaderValue::from_static("AAEC"));
        assert_eq!(crossing(&map), vec![("grpc-status", "0"), ("grpc-status-details-bin", "AAEC")]);
    }

    #[test]
    fn the_carrier_round_trips_and_refuses_junk() {
        let mut map = HeaderMap::new();
        assert_eq!(carried(&map), Ok(None));
        map.insert(CARRIER, carrier_value(b"\x05\x00\x00\x01").unwrap());
        assert_eq!(carried(&map), Ok(Some(b"\x05\x00\x00\x01".to_vec())));
        map.append(CARRIER, HeaderValue::from_static("BQAAAQ=="));
        assert_eq!(carried(&map), Err(filters::Error::CorruptRecord));
        map.insert(CARRIER, HeaderValue::from_static("not base64!"));
        assert_eq!(carried(&map), Err(filters::Error::CorruptRecord));
    }
}
