//! Each decompressor under the record limits: any payload, any codec, any
//! limit up to a record. It must never panic, never write more than the
//! limit, and leave the output as it was on error.
#![no_main]

use bytes::BytesMut;
use filters::codec::{decompress, Codec};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let codec = Codec::ALL[usize::from(data[0]) % Codec::ALL.len()];
    let limit = (usize::from(u16::from_le_bytes([data[1], data[2]])) + 1).min(filters::RECORD_MAX);
    let mut out = BytesMut::from(&b"prefix"[..]);
    match decompress(codec, &data[3..], limit, &mut out) {
        Ok(()) => assert!(out.len() - 6 <= limit, "{} bytes over a limit of {limit}", out.len() - 6),
        Err(_) => assert_eq!(&out[..], b"prefix", "a failed decode leaves the output as it was"),
    }
});
