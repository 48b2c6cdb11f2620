//! fastproxy: the gateway binary.
//!
//! The outbound and inbound proxy roles are built on Pingora in the next
//! milestone; for now the binary links Pingora (so build cost and system
//! packages are settled) and offers `fastproxy demo`, which seals a request
//! with the `filters` codec and opens it again, printing what would cross the
//! wire.

use bytes::BytesMut;
use filters::{AeadKey, Algorithm, Codec, CompressOptions, Envelope, KeyRing, Limits, Nonce, Protection, SignKey, Target};
use ring::rand::{SecureRandom, SystemRandom};

fn main() {
    env_logger::init();
    match std::env::args().nth(1).as_deref() {
        Some("demo") => {
            if let Err(e) = demo() {
                eprintln!("demo failed: {e}");
                std::process::exit(1);
            }
        }
        _ => {
            // Parses Pingora's standard options (-c, -d, -t, -u) and builds the server.
            let opt = pingora::server::configuration::Opt::parse_args();
            match pingora::server::Server::new(Some(opt)) {
                Ok(mut server) => {
                    server.bootstrap();
                    eprintln!("fastproxy: no proxy role is configured yet; run `fastproxy demo` for a sealed round trip");
                }
                Err(e) => {
                    eprintln!("fastproxy: {e}");
                    std::process::exit(1);
                }
            }
        }
    }
}

/// Seals a JSON request under fresh random keys, prints the wire form, opens it.
fn demo() -> Result<(), filters::Error> {
    let rng = SystemRandom::new();
    let mut secret = [0u8; 32];
    let mut keys = KeyRing::new();
    rng.fill(&mut secret).map_err(|_| filters::Error::BadKey)?;
    keys.add_aead(AeadKey::new("room-v2", Algorithm::Aes256Gcm, &secret)?);
    rng.fill(&mut secret).map_err(|_| filters::Error::BadKey)?;
    keys.add_sign(SignKey::new("sign-v1", &secret)?);

    let body = br#"{"user":42,"action":"transfer","amount":"10.00"}"#;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    let env = Envelope {
        target: Target::Request { method: "POST", path: "/api/service", query: "id=7" },
        service: "token_service",
        caller: "song_service",
        content_type: "application/json",
        codec: Codec::None,
        protection: Protection::Encrypt { alg: Algorithm::Aes256Gcm, key: "room-v2" },
        sign_key: "sign-v1",
        timestamp_ms: now,
        nonce: Nonce::random(&rng)?,
        length: Some(body.len() as u64),
        deadline_ms: None,
    };
    let (sig, mut sealer) = keys.seal(&env, CompressOptions::default())?;
    let mut wire = BytesMut::new();
    sealer.seal(body, &mut wire)?;
    sealer.finish(&mut wire)?;

    println!("POST /token_service/api/service?id=7");
    env.write_headers(&sig, |name, value| println!("{name}: {value}"));
    println!("\n{} sealed bytes: {}", wire.len(), filters::hex::encode(&wire));

    let mut opener = keys.verify(&env, &sig)?.opener(Limits::default());
    let mut plain = BytesMut::new();
    opener.open(&wire, &mut plain)?;
    opener.finish()?;
    println!("\nopened: {}", String::from_utf8_lossy(&plain));
    Ok(())
}
