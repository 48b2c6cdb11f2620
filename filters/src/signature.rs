//! The signature value an envelope carries in its `sig` field: made and
//! checked by `sign`, written and parsed by `envelope` (which therefore do
//! not depend on each other both ways).

/// An HMAC-SHA256 signature over an envelope's canonical form.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature(pub [u8; 32]);

impl std::fmt::Debug for Signature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut buf = [0u8; 64];
        f.write_str(crate::hex::encode_into(&self.0, &mut buf))
    }
}
