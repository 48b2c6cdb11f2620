//! The `x-fp` header parser: any value, as a request's and as a response's
//! envelope. It must never panic, and what it accepts must encode back to a
//! value it accepts again.
#![no_main]

use filters::{Algorithm, Codec, Envelope, Nonce, Protection, Target};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = std::str::from_utf8(data) else { return };
    if let Ok((env, sig)) = Envelope::parse_request(Some(value), "POST", "token_service", "/api", "a=1") {
        let again = env.header_value(&sig);
        let (env2, sig2) = Envelope::parse_request(Some(&again), "POST", "token_service", "/api", "a=1")
            .expect("an accepted envelope encodes to an accepted value");
        assert_eq!(env, env2);
        assert_eq!(sig.0, sig2.0);
    }
    let request = Envelope {
        target: Target::Request { method: "", path: "", query: "" },
        service: "token_service",
        caller: "song_service",
        content_type: "",
        codec: Codec::None,
        protection: Protection::Encrypt { alg: Algorithm::Aes256Gcm, key: "room-v2" },
        sign_key: "sign-v1",
        timestamp_ms: 0,
        nonce: Nonce([7; 16]),
        length: None,
        deadline_ms: None,
    };
    let _ = Envelope::parse_response(Some(value), 200, &request);
});
