//! Compression of record payloads, and bounded decompression.
//!
//! Each record is compressed on its own (at most [`crate::RECORD_MAX`] bytes in),
//! so decompression of one record never produces more than `RECORD_MAX` bytes:
//! a compression bomb fails at that bound without allocating past it.

use std::io::{Read, Write};

use crate::error::{Error, Limit, Result};

/// A compression codec, named in the `z` field of `x-fp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// No compression.
    None,
    /// Snappy, raw format (no framing): cheapest, modest ratio.
    Snappy,
    /// gzip (RFC 1952), one member per record.
    Gzip,
    /// Brotli (RFC 7932), one stream per record.
    Brotli,
    /// Zstandard (RFC 8878), one frame per record.
    Zstd,
}

impl Codec {
    /// The codec's wire/config name.
    pub fn name(self) -> &'static str {
        match self {
            Codec::None => "none",
            Codec::Snappy => "snappy",
            Codec::Gzip => "gzip",
            Codec::Brotli => "brotli",
            Codec::Zstd => "zstd",
        }
    }

    /// Parses a wire/config name.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "none" => Codec::None,
            "snappy" => Codec::Snappy,
            "gzip" => Codec::Gzip,
            "brotli" => Codec::Brotli,
            "zstd" => Codec::Zstd,
            _ => return None,
        })
    }

    /// Every codec, for tests and benches.
    pub const ALL: [Codec; 5] = [Codec::None, Codec::Snappy, Codec::Gzip, Codec::Brotli, Codec::Zstd];
}

/// Highest brotli quality a sender will use: quality 10–11 costs milliseconds
/// per KiB and is for offline precompression, never for a request path.
pub const MAX_BROTLI_QUALITY: u32 = 9;

/// Sender-side compression settings (the receiver needs none of them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompressOptions {
    /// Codec-specific level; `0` picks the codec's fast default (gzip 1,
    /// brotli 2, zstd 1). Clamped to the codec's range; brotli to at most
    /// [`MAX_BROTLI_QUALITY`].
    pub level: u32,
    /// Records with fewer plaintext bytes than this are stored uncompressed.
    pub min_size: usize,
}

impl Default for CompressOptions {
    fn default() -> Self {
        CompressOptions { level: 0, min_size: 256 }
    }
}

/// Compresses `input` with `codec` into `out` (cleared first).
pub(crate) fn compress(codec: Codec, level: u32, input: &[u8], out: &mut Vec<u8>) -> Result<()> {
    out.clear();
    match codec {
        Codec::None => out.extend_from_slice(input),
        Codec::Snappy => {
            out.resize(snap::raw::max_compress_len(input.len()), 0);
            let n = snap::raw::Encoder::new().compress(input, out).map_err(|_| Error::BadCodec)?;
            out.truncate(n);
        }
        Codec::Gzip => {
            let level = if level == 0 { 1 } else { level.min(9) };
            let mut enc = flate2::write::GzEncoder::new(out, flate2::Compression::new(level));
            enc.write_all(input).map_err(|_| Error::BadCodec)?;
            enc.try_finish().map_err(|_| Error::BadCodec)?;
        }
        Codec::Brotli => {
            let quality = if level == 0 { 2 } else { level.min(MAX_BROTLI_QUALITY) };
            let mut enc = brotli::CompressorWriter::new(out, 4096, quality, MAX_WINDOW_LOG);
            enc.write_all(input).map_err(|_| Error::BadCodec)?;
            enc.flush().map_err(|_| Error::BadCodec)?;
        }
        Codec::Zstd => {
            // One-shot compression pledges the input size, so the frame
            // declares it and a window no larger than it (at most 2^17).
            let level = if level == 0 { 1 } else { level.min(19) as i32 };
            out.reserve(zstd::zstd_safe::compress_bound(input.len()));
            let mut c = zstd::bulk::Compressor::new(level).map_err(|_| Error::BadCodec)?;
            c.compress_to_buffer(input, out).map_err(|_| Error::BadCodec)?;
        }
    }
    Ok(())
}

/// Largest decoder window a record may ask for: 2^18 bytes (256 KiB). A
/// 64 KiB record needs no more, and brotli's fastest qualities (0 and 1)
/// never declare less. Brotli and zstd streams that declare a larger one are
/// refused before anything is allocated for them (PROTOCOL.md §6.3).
pub const MAX_WINDOW_LOG: u32 = 18;

/// Decompresses one record payload, appending at most `limit` bytes to `out`.
/// More than `limit` bytes of output is [`Error::TooLarge`]; anything that does
/// not decode, asks for a window over 2^[`MAX_WINDOW_LOG`], or is followed by
/// trailing bytes is [`Error::BadCodec`].
///
/// Public for fuzzing and for checking other implementations' records; the
/// [`crate::Opener`] calls it for every COMPRESSED record after its tag
/// verified.
pub fn decompress(codec: Codec, input: &[u8], limit: usize, out: &mut bytes::BytesMut) -> Result<()> {
    let hint = input.len().saturating_mul(4);
    match codec {
        Codec::None => Err(Error::BadCodec),
        Codec::Snappy => {
            let n = snap::raw::decompress_len(input).map_err(|_| Error::BadCodec)?;
            if n > limit {
                return Err(Error::TooLarge(Limit::Record));
            }
            let start = out.len();
            out.resize(start + n, 0);
            match snap::raw::Decoder::new().decompress(input, &mut out[start..]) {
                Ok(written) if written == n => Ok(()),
                _ => {
                    out.truncate(start);
                    Err(Error::BadCodec)
                }
            }
        }
        Codec::Gzip => {
            // One member, nothing after it.
            let start = out.len();
            let mut dec = flate2::bufread::GzDecoder::new(input);
            read_bounded(&mut dec, hint, limit, out)?;
            if !dec.into_inner().is_empty() {
                out.truncate(start);
                return Err(Error::BadCodec);
            }
            Ok(())
        }
        Codec::Brotli => brotli_decompress(input, limit, out),
        Codec::Zstd => {
            // Exactly one frame, nothing after it.
            match zstd::zstd_safe::find_frame_compressed_size(input) {
                Ok(n) if n == input.len() => {}
                _ => return Err(Error::BadCodec),
            }
            let mut dec = zstd::stream::read::Decoder::with_buffer(input).map_err(|_| Error::BadCodec)?.single_frame();
            dec.window_log_max(MAX_WINDOW_LOG).map_err(|_| Error::BadCodec)?;
            read_bounded(&mut dec, hint, limit, out)
        }
    }
}

/// The window a brotli stream declares (RFC 7932 §9.1: WBITS in its first
/// bits), or `None` for the large-window extension.
fn brotli_window_log(first: u8) -> Option<u32> {
    if first & 1 == 0 {
        return Some(16);
    }
    match (first >> 1) & 7 {
        0 => match (first >> 4) & 7 {
            0 => Some(17),
            1 => None,
            m => Some(8 + u32::from(m)),
        },
        n => Some(17 + u32::from(n)),
    }
}

/// Decodes one brotli stream: its window at most 2^[`MAX_WINDOW_LOG`], no
/// bytes after its end, at most `limit` bytes out.
fn brotli_decompress(input: &[u8], limit: usize, out: &mut bytes::BytesMut) -> Result<()> {
    use brotli::{BrotliDecompressStream, BrotliResult, BrotliState, HeapAlloc, HuffmanCode};
    match input.first().and_then(|b| brotli_window_log(*b)) {
        Some(w) if w <= MAX_WINDOW_LOG => {}
        _ => return Err(Error::BadCodec),
    }
    let mut state = BrotliState::new(
        HeapAlloc::<u8>::new(0),
        HeapAlloc::<u32>::new(0),
        HeapAlloc::<HuffmanCode>::new(HuffmanCode::default()),
    );
    let start = out.len();
    out.resize(start + limit + 1, 0);
    let (mut avail_in, mut in_off, mut avail_out, mut out_off, mut total) = (input.len(), 0, limit + 1, 0, 0);
    let r = BrotliDecompressStream(
        &mut avail_in,
        &mut in_off,
        input,
        &mut avail_out,
        &mut out_off,
        &mut out[start..],
        &mut total,
        &mut state,
    );
    let result = match r {
        BrotliResult::ResultSuccess if out_off > limit => Err(Error::TooLarge(Limit::Record)),
        BrotliResult::ResultSuccess if avail_in == 0 => Ok(()),
        BrotliResult::NeedsMoreOutput => Err(Error::TooLarge(Limit::Record)),
        _ => Err(Error::BadCodec),
    };
    out.truncate(if result.is_ok() { start + out_off } else { start });
    result
}

/// Reads `r` to its end into `out`, failing as soon as it yields more than
/// `limit` bytes. The buffer grows from a guess (`hint`) instead of being sized
/// to `limit` up front. On error `out` is restored to its previous length.
fn read_bounded(r: &mut impl Read, hint: usize, limit: usize, out: &mut bytes::BytesMut) -> Result<()> {
    let start = out.len();
    let mut cap = hint.max(1024).min(limit + 1);
    out.resize(start + cap, 0);
    let mut filled = 0;
    let result = loop {
        if filled == cap {
            // Full but not past the limit yet: grow towards limit + 1.
            cap = (cap * 2).min(limit + 1);
            out.resize(start + cap, 0);
        }
        match r.read(&mut out[start + filled..start + cap]) {
            Ok(0) => break Ok(()),
            Ok(n) => {
                filled += n;
                if filled > limit {
                    break Err(Error::TooLarge(Limit::Record));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break Err(Error::BadCodec),
        }
    };
    out.truncate(if result.is_ok() { start + filled } else { start });
    result
}
