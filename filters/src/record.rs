//! Body framing: a message body is a sequence of records, each protected on its
//! own, so bodies stream with memory bounded by one record.
//!
//! ```text
//! record = flags (1) || length (3, big-endian) || payload (length) || tag (16)
//! flags  = 0x01 FINAL | 0x02 COMPRESSED | 0x04 TRAILERS   (other bits must be zero)
//! nonce  = 00 00 00 00 || seq (8, big-endian)   seq = 0, 1, 2, … per message
//! AAD    = the 4 header bytes
//! ```
//! The record counter in the nonce detects reordering, duplication and removal;
//! the FINAL flag (authenticated as AAD) detects truncation; the per-message
//! body key detects records spliced in from another message.

use bytes::{Bytes, BytesMut};

use crate::aead::{BodyKey, TAG_LEN};
use crate::codec::{self, Codec, CompressOptions};
use crate::error::{Error, Limit, Result};
use crate::trailers::Fields;

/// Most plaintext bytes in one record; also the most payload bytes stored.
pub const RECORD_MAX: usize = 65536;
/// Bytes of record header.
pub const HEADER_LEN: usize = 4;
/// Bytes a record adds to its payload: header and tag.
pub const RECORD_OVERHEAD: usize = HEADER_LEN + TAG_LEN;
/// Flag bit: this is the message's last record.
pub const FLAG_FINAL: u8 = 0x01;
/// Flag bit: the payload is compressed with the message's codec.
pub const FLAG_COMPRESSED: u8 = 0x02;
/// Flag bit: the payload is a trailer block ([`crate::trailers`]); only on
/// the final record, never compressed.
pub const FLAG_TRAILERS: u8 = 0x04;
/// Most records in one message (a 256 TiB body); a counter past it is an error.
pub const MAX_RECORDS: u64 = 1 << 32;
/// A compressed record may open to at most this many times its size on the
/// wire (`len` + 20 bytes). So every sealed byte a receiver reads yields at
/// most 32 bytes of plaintext, whatever the codec: the memory a body costs
/// follows the bytes that actually arrived (PROTOCOL.md §6.3).
pub const MAX_EXPANSION: usize = 32;

/// Most plaintext a compressed record of `payload` stored bytes may carry.
pub fn max_opened(payload: usize) -> usize {
    (MAX_EXPANSION * (payload + RECORD_OVERHEAD)).min(RECORD_MAX)
}

/// The exact sealed size of a `plain`-byte body whose length is signed, sealed
/// with codec `none` and no [`Sealer::flush`] calls: full records are cut every
/// [`RECORD_MAX`] bytes and a final record (possibly empty) follows. A body
/// whose signed length is 0 has no records at all.
pub fn sealed_len(plain: u64) -> u64 {
    if plain == 0 {
        return 0;
    }
    plain + (plain / RECORD_MAX as u64 + 1) * RECORD_OVERHEAD as u64
}

/// Receiver-side limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most plaintext bytes (after decompression) one message may carry.
    pub max_body: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_body: 16 * 1024 * 1024 }
    }
}

/// Seals a body as records. Feed it chunks with [`Sealer::seal`]; end with
/// [`Sealer::finish`]. Output goes to a caller-supplied buffer.
pub struct Sealer {
    key: BodyKey,
    codec: Codec,
    opts: CompressOptions,
    seq: u64,
    pending: Vec<u8>,
    /// The piece that completed the signed length, held as it is until the
    /// end ([`Sealer::seal_piece`]).
    held: Option<Bytes>,
    scratch: Vec<u8>,
    total: u64,
    declared: Option<u64>,
    phase: Phase,
}

/// Where a [`Sealer`] is in its life.
enum Phase {
    Sealing,
    Finished,
    Failed(Error),
}

impl Sealer {
    pub(crate) fn new(key: BodyKey, codec: Codec, opts: CompressOptions, declared: Option<u64>) -> Self {
        Sealer {
            key,
            codec,
            opts,
            seq: 0,
            pending: Vec::new(),
            held: None,
            scratch: Vec::new(),
            total: 0,
            declared,
            phase: Phase::Sealing,
        }
    }

    /// Appends `input` to the body; writes every record that is now full.
    pub fn seal(&mut self, input: &[u8], out: &mut BytesMut) -> Result<()> {
        self.live()?;
        let r = self.seal_inner(input, out);
        self.poison_on(r)
    }

    /// Appends `input` and ends the body: [`Sealer::seal`] then
    /// [`Sealer::finish`], with the same records on the wire. When nothing is
    /// buffered and `input` is shorter than a full record (a small body known
    /// whole), it is sealed straight from `input`, without the copy into the
    /// buffer.
    pub fn seal_final(&mut self, input: &[u8], out: &mut BytesMut) -> Result<()> {
        self.live()?;
        if !self.pending.is_empty() || input.len() >= RECORD_MAX || self.declared == Some(0) {
            self.seal(input, out)?;
            return self.finish(out);
        }
        self.total += input.len() as u64;
        if self.declared.is_some_and(|n| n != self.total) {
            return self.poison_on(Err(Error::LengthMismatch));
        }
        self.phase = Phase::Finished;
        let r = self.emit(input, true, out);
        self.poison_on(r)
    }

    /// Seals one piece of a body as it arrives (`piece`, none for an empty
    /// piece) and, when it is the last (`end`), ends the body: the loop both
    /// roles drive, once per piece. With `flush`, a piece leaves at once as
    /// its own record (a stream). Without, the piece that completes the
    /// signed length usually comes before the end is signalled: it is held
    /// as it is (no copy) and sealed straight from it with the end, as the
    /// final record. The records are those of [`Sealer::seal`] and
    /// [`Sealer::finish`].
    pub fn seal_piece(&mut self, piece: Option<Bytes>, end: bool, flush: bool, out: &mut BytesMut) -> Result<()> {
        if let Some(piece) = piece.filter(|p| !p.is_empty()) {
            if let Some(held) = self.held.take() {
                // More than the signed length: sealing it fails below.
                self.seal(&held, out)?;
            }
            if end {
                return self.seal_final(&piece, out);
            }
            if !flush && self.completes(piece.len()) {
                self.held = Some(piece);
                return Ok(());
            }
            self.seal(&piece, out)?;
            if flush {
                self.flush(out)?;
            }
        }
        if end {
            return match self.held.take() {
                Some(held) => self.seal_final(&held, out),
                None => self.finish(out),
            };
        }
        Ok(())
    }

    /// True when `len` more bytes complete the signed length: the chunk that
    /// brings them is the body's last, and [`Sealer::seal_final`] can end the
    /// body with it (unless trailers are to follow).
    pub fn completes(&self, len: usize) -> bool {
        matches!(self.phase, Phase::Sealing) && self.declared.is_some_and(|n| self.total + len as u64 == n)
    }

    /// Writes buffered bytes as a (non-final) record now, for streams whose
    /// chunks must not wait for a full record. No-op when nothing is buffered.
    pub fn flush(&mut self, out: &mut BytesMut) -> Result<()> {
        self.live()?;
        if self.pending.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending);
        let r = self.emit(&pending, false, out);
        self.pending = pending;
        self.pending.clear();
        self.poison_on(r)
    }

    /// Writes the final record. The body length must match the signed length.
    pub fn finish(&mut self, out: &mut BytesMut) -> Result<()> {
        self.live()?;
        if self.declared.is_some_and(|n| n != self.total) {
            return self.poison_on(Err(Error::LengthMismatch));
        }
        self.phase = Phase::Finished;
        if self.declared == Some(0) {
            // A body signed as empty carries no records at all.
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending);
        let r = self.emit(&pending, true, out);
        self.poison_on(r)
    }

    /// Ends the body with a trailer record carrying `block` (an encoded
    /// [`crate::trailers`] block) as its final record, after writing what is
    /// buffered as a record of its own. The body length must match the signed
    /// length, which must not be 0 (a body signed as empty has no records, so
    /// no room for trailers).
    pub fn finish_with_trailers(&mut self, block: &[u8], out: &mut BytesMut) -> Result<()> {
        self.live()?;
        if self.declared.is_some_and(|n| n != self.total) {
            return self.poison_on(Err(Error::LengthMismatch));
        }
        if self.declared == Some(0) || block.len() > crate::trailers::MAX_BLOCK {
            return self.poison_on(Err(Error::InvalidState));
        }
        if let Some(held) = self.held.take() {
            self.seal(&held, out)?;
        }
        self.phase = Phase::Finished;
        let pending = std::mem::take(&mut self.pending);
        let mut r = Ok(());
        if !pending.is_empty() {
            r = self.emit(&pending, false, out);
        }
        let r = r.and_then(|()| self.emit_record(block, FLAG_FINAL | FLAG_TRAILERS, out));
        self.poison_on(r)
    }

    fn live(&self) -> Result<()> {
        match &self.phase {
            Phase::Sealing => Ok(()),
            Phase::Finished => Err(Error::InvalidState),
            Phase::Failed(e) => Err(e.clone()),
        }
    }

    fn poison_on(&mut self, r: Result<()>) -> Result<()> {
        if let Err(e) = &r {
            self.phase = Phase::Failed(e.clone());
        }
        r
    }

    fn seal_inner(&mut self, mut input: &[u8], out: &mut BytesMut) -> Result<()> {
        self.total += input.len() as u64;
        if self.declared.is_some_and(|n| self.total > n) {
            return Err(Error::LengthMismatch);
        }
        if !self.pending.is_empty() {
            let take = (RECORD_MAX - self.pending.len()).min(input.len());
            self.pending.extend_from_slice(&input[..take]);
            input = &input[take..];
            if self.pending.len() < RECORD_MAX {
                return Ok(());
            }
            let pending = std::mem::take(&mut self.pending);
            let r = self.emit(&pending, false, out);
            self.pending = pending;
            self.pending.clear();
            r?;
        }
        while input.len() >= RECORD_MAX {
            let (record, rest) = input.split_at(RECORD_MAX);
            self.emit(record, false, out)?;
            input = rest;
        }
        self.pending.extend_from_slice(input);
        Ok(())
    }

    /// Writes `plain` as one record, or (when it compresses better than
    /// [`MAX_EXPANSION`] allows) as several compressed records of shorter
    /// pieces; only the last piece carries FINAL when `last`.
    fn emit(&mut self, mut plain: &[u8], last: bool, out: &mut BytesMut) -> Result<()> {
        loop {
            let take = self.next_piece(plain)?;
            let (piece, rest) = plain.split_at(take);
            let mut flags = if last && rest.is_empty() { FLAG_FINAL } else { 0 };
            if take > 0 && !self.scratch.is_empty() {
                flags |= FLAG_COMPRESSED;
            }
            self.emit_record(piece, flags, out)?;
            plain = rest;
            if plain.is_empty() {
                return Ok(());
            }
        }
    }

    /// How many bytes of `plain` the next record carries. Leaves the
    /// compressed payload in `scratch` (empty when the record is stored).
    fn next_piece(&mut self, plain: &[u8]) -> Result<usize> {
        self.scratch.clear();
        if self.codec == Codec::None || plain.is_empty() || plain.len() < self.opts.min_size {
            return Ok(plain.len());
        }
        let mut take = plain.len();
        loop {
            codec::compress(self.codec, self.opts.level, &plain[..take], &mut self.scratch)?;
            if self.scratch.len() >= take {
                // Not shorter: store it.
                self.scratch.clear();
                return Ok(take);
            }
            let allowed = max_opened(self.scratch.len());
            if take <= allowed {
                return Ok(take);
            }
            take = allowed;
        }
    }

    /// Writes one record with `flags`; a COMPRESSED record's payload is
    /// the compressed bytes in `scratch`, any other's is `plain`.
    fn emit_record(&mut self, plain: &[u8], flags: u8, out: &mut BytesMut) -> Result<()> {
        if self.seq >= MAX_RECORDS {
            return Err(Error::RecordLimit);
        }
        let payload = if flags & FLAG_COMPRESSED != 0 { &self.scratch[..] } else { plain };
        let len = payload.len();
        let hdr = [flags, (len >> 16) as u8, (len >> 8) as u8, len as u8];
        out.reserve(RECORD_OVERHEAD + len);
        out.extend_from_slice(&hdr);
        let start = out.len();
        out.extend_from_slice(payload);
        let tag = self.key.seal(self.seq, &hdr, &mut out[start..])?;
        out.extend_from_slice(&tag);
        self.seq += 1;
        Ok(())
    }
}

#[derive(Clone, Copy)]
enum Expect {
    Header,
    Record { hdr: [u8; HEADER_LEN], len: usize },
    Done,
}

/// Opens a sealed body record by record. Feed it the bytes as they arrive with
/// [`Opener::open`]; call [`Opener::finish`] at end of stream. Only
/// authenticated plaintext is ever written to `out`, and after the first error
/// every call returns that error.
pub struct Opener {
    key: BodyKey,
    codec: Codec,
    seq: u64,
    expect: Expect,
    failed: Option<Error>,
    partial: Vec<u8>,
    scratch: Vec<u8>,
    total: u64,
    declared: Option<u64>,
    limits: Limits,
    /// Whether a trailer record may end the body (responses only).
    allow_trailers: bool,
    trailers: Option<Fields>,
}

impl Opener {
    pub(crate) fn new(key: BodyKey, codec: Codec, declared: Option<u64>, limits: Limits) -> Self {
        Opener {
            key,
            codec,
            seq: 0,
            // A body signed as empty has no records: any byte is an error.
            expect: if declared == Some(0) { Expect::Done } else { Expect::Header },
            failed: None,
            partial: Vec::new(),
            scratch: Vec::new(),
            total: 0,
            declared,
            limits,
            allow_trailers: false,
            trailers: None,
        }
    }

    pub(crate) fn allowing_trailers(mut self, allow: bool) -> Self {
        self.allow_trailers = allow;
        self
    }

    /// The trailer fields, once a trailer record was opened (and only then:
    /// they are authenticated like the body). Takes them out.
    pub fn take_trailers(&mut self) -> Option<Fields> {
        self.trailers.take()
    }

    pub(crate) fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Consumes sealed bytes; appends the plaintext of every complete record.
    /// On error, `out` holds only the plaintext of records before the bad one.
    pub fn open(&mut self, input: &[u8], out: &mut BytesMut) -> Result<()> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let r = self.open_inner(input, out);
        if let Err(e) = &r {
            self.failed = Some(e.clone());
        }
        r
    }

    /// Opens one piece of a body as it arrives (`input`, none for an empty
    /// piece) and, when it is the last (`end`), checks that the body is whole
    /// ([`Opener::finish`]): the loop both roles drive, once per piece.
    pub fn open_piece(&mut self, input: Option<&[u8]>, end: bool, out: &mut BytesMut) -> Result<()> {
        if let Some(input) = input {
            self.open(input, out)?;
        }
        if end {
            self.finish()?;
        }
        Ok(())
    }

    /// Declares the end of the sealed stream: fails unless the final record
    /// arrived and the length matches the signed length.
    pub fn finish(&mut self) -> Result<()> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let r = match self.expect {
            Expect::Done if self.declared.is_some_and(|n| n != self.total) => Err(Error::LengthMismatch),
            Expect::Done => Ok(()),
            _ => Err(Error::Truncated),
        };
        if let Err(e) = &r {
            self.failed = Some(e.clone());
        }
        r
    }

    /// True once the final record was opened.
    pub fn is_done(&self) -> bool {
        matches!(self.expect, Expect::Done) && self.failed.is_none()
    }

    /// Plaintext bytes produced so far.
    pub fn plaintext_len(&self) -> u64 {
        self.total
    }

    /// The most plaintext [`Opener::open`] can append when given `input_len`
    /// more sealed bytes: records complete only with bytes that arrived, and
    /// a compressed record opens to at most [`MAX_EXPANSION`] times its size.
    pub fn max_output(&self, input_len: usize) -> usize {
        let sealed = input_len + self.partial.len();
        match self.codec {
            Codec::None => sealed,
            _ => sealed.saturating_mul(MAX_EXPANSION),
        }
    }

    fn open_inner(&mut self, mut input: &[u8], out: &mut BytesMut) -> Result<()> {
        while !input.is_empty() {
            match self.expect {
                Expect::Done => return Err(Error::CorruptRecord),
                Expect::Header if self.partial.is_empty() && input.len() >= HEADER_LEN => {
                    // The whole header is here (the usual case): no copy.
                    let hdr = [input[0], input[1], input[2], input[3]];
                    input = &input[HEADER_LEN..];
                    self.expect = self.check_header(hdr)?;
                }
                Expect::Header => {
                    let take = (HEADER_LEN - self.partial.len()).min(input.len());
                    self.partial.extend_from_slice(&input[..take]);
                    input = &input[take..];
                    if self.partial.len() < HEADER_LEN {
                        return Ok(());
                    }
                    let hdr = [self.partial[0], self.partial[1], self.partial[2], self.partial[3]];
                    self.partial.clear();
                    self.expect = self.check_header(hdr)?;
                }
                Expect::Record { hdr, len } => {
                    let need = len + TAG_LEN;
                    if self.partial.is_empty() && input.len() >= need {
                        let (record, rest) = input.split_at(need);
                        input = rest;
                        self.open_record(hdr, record, out)?;
                    } else {
                        let take = (need - self.partial.len()).min(input.len());
                        self.partial.extend_from_slice(&input[..take]);
                        input = &input[take..];
                        if self.partial.len() < need {
                            return Ok(());
                        }
                        let record = std::mem::take(&mut self.partial);
                        let r = self.open_record(hdr, &record, out);
                        self.partial = record;
                        self.partial.clear();
                        r?;
                    }
                }
            }
        }
        Ok(())
    }

    fn check_header(&self, hdr: [u8; HEADER_LEN]) -> Result<Expect> {
        let flags = hdr[0];
        let len = (usize::from(hdr[1]) << 16) | (usize::from(hdr[2]) << 8) | usize::from(hdr[3]);
        if flags & !(FLAG_FINAL | FLAG_COMPRESSED | FLAG_TRAILERS) != 0 {
            return Err(Error::CorruptRecord);
        }
        if flags & FLAG_TRAILERS != 0
            && (!self.allow_trailers
                || flags != FLAG_FINAL | FLAG_TRAILERS
                || len == 0
                || len > crate::trailers::MAX_BLOCK)
        {
            return Err(Error::CorruptRecord);
        }
        if len > RECORD_MAX {
            return Err(Error::TooLarge(Limit::Record));
        }
        if flags & FLAG_FINAL == 0 && len == 0 {
            return Err(Error::CorruptRecord);
        }
        if flags & FLAG_COMPRESSED != 0 && self.codec == Codec::None {
            return Err(Error::BadCodec);
        }
        if self.seq >= MAX_RECORDS {
            return Err(Error::RecordLimit);
        }
        Ok(Expect::Record { hdr, len })
    }

    fn open_record(&mut self, hdr: [u8; HEADER_LEN], record: &[u8], out: &mut BytesMut) -> Result<()> {
        let (payload, tag) = record.split_at(record.len() - TAG_LEN);
        if hdr[0] & FLAG_TRAILERS != 0 {
            self.scratch.clear();
            self.scratch.extend_from_slice(payload);
            self.key.open(self.seq, &hdr, &mut self.scratch, tag)?;
            self.trailers = Some(crate::trailers::decode(&self.scratch)?);
            self.seq += 1;
            self.expect = Expect::Done;
            return Ok(());
        }
        let remaining = self.limits.max_body.saturating_sub(self.total);
        let start = out.len();
        if hdr[0] & FLAG_COMPRESSED == 0 {
            if payload.len() as u64 > remaining {
                return Err(Error::TooLarge(Limit::Body));
            }
            out.extend_from_slice(payload);
            if let Err(e) = self.key.open(self.seq, &hdr, &mut out[start..], tag) {
                out.truncate(start);
                return Err(e);
            }
        } else {
            self.scratch.clear();
            self.scratch.extend_from_slice(payload);
            self.key.open(self.seq, &hdr, &mut self.scratch, tag)?;
            // At most 32 times the record's wire size (and 64 KiB), and what
            // is left of the body limit.
            let record_limit = max_opened(payload.len());
            let limit = (record_limit as u64).min(remaining) as usize;
            codec::decompress(self.codec, &self.scratch, limit, out).map_err(|e| match e {
                Error::TooLarge(_) if limit < record_limit => Error::TooLarge(Limit::Body),
                e => e,
            })?;
        }
        self.total += (out.len() - start) as u64;
        if self.declared.is_some_and(|n| self.total > n) {
            out.truncate(start);
            return Err(Error::LengthMismatch);
        }
        self.seq += 1;
        self.expect = if hdr[0] & FLAG_FINAL != 0 { Expect::Done } else { Expect::Header };
        Ok(())
    }
}
