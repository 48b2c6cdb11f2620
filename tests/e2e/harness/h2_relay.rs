//! An HTTP/2 (h2c) relay between the proxies that can change what it
//! forwards: the attacker on the link for HTTP/2 traffic, where a byte-level
//! tamper would only break the header compression. It forwards each stream
//! as it flows (headers, data, trailers) and applies one [`TrailerTamper`]
//! to every response's trailers.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use bytes::Bytes;
use h2::{RecvStream, SendStream};
use http::HeaderMap;

/// What the relay does to the trailers of responses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrailerTamper {
    /// Forward them as they are.
    None,
    /// XOR one byte (at this offset) of the trailer record in `x-fp-trailer`.
    FlipRecordByte(usize),
    /// Remove `x-fp-trailer`.
    DropRecord,
    /// Add `grpc-status: 0` and `grpc-message: forged` beside the record.
    AddForgedStatus,
    /// End each response with its header section (END_STREAM on HEADERS),
    /// dropping its body and trailers: a truncation that leaves no partial
    /// body behind.
    CutAfterHeaders,
}

/// A running relay; stops with the test process.
pub struct H2Relay {
    pub addr: SocketAddr,
    tamper: Arc<Mutex<TrailerTamper>>,
    /// Trailer sections seen (after tampering), for assertions.
    pub seen: Arc<Mutex<Vec<HeaderMap>>>,
}

impl H2Relay {
    pub fn start(to: SocketAddr) -> H2Relay {
        let tamper = Arc::new(Mutex::new(TrailerTamper::None));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (t, s) = (tamper.clone(), seen.clone());
        let addr = serve(move |down| relay_connection(down, to, t.clone(), s.clone()));
        H2Relay { addr, tamper, seen }
    }

    pub fn set(&self, tamper: TrailerTamper) {
        *self.tamper.lock().unwrap() = tamper;
    }
}

pub(crate) type Error = Box<dyn std::error::Error + Send + Sync>;

/// Accepts connections on a new 127.0.0.1 port, on a thread of its own,
/// and runs `handle` for each; returns the address.
pub(crate) fn serve<F, Fut>(handle: F) -> SocketAddr
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<(), Error>> + Send + 'static,
{
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("rt");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            loop {
                let Ok((conn, _)) = listener.accept().await else { continue };
                tokio::spawn(handle(conn));
            }
        });
    });
    addr
}

async fn relay_connection(
    down: tokio::net::TcpStream,
    to: SocketAddr,
    tamper: Arc<Mutex<TrailerTamper>>,
    seen: Arc<Mutex<Vec<HeaderMap>>>,
) -> Result<(), Error> {
    let up = tokio::net::TcpStream::connect(to).await?;
    let (client, up_conn) = h2::client::handshake(up).await?;
    tokio::spawn(async move {
        let _ = up_conn.await;
    });
    let mut server = h2::server::handshake(down).await?;
    while let Some(req) = server.accept().await {
        let (req, respond) = req?;
        let client = client.clone();
        let (tamper, seen) = (tamper.clone(), seen.clone());
        tokio::spawn(async move {
            let _ = relay_stream(client, req, respond, tamper, seen).await;
        });
    }
    Ok(())
}

async fn relay_stream(
    client: h2::client::SendRequest<Bytes>,
    req: http::Request<RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
    tamper: Arc<Mutex<TrailerTamper>>,
    seen: Arc<Mutex<Vec<HeaderMap>>>,
) -> Result<(), Error> {
    let (parts, body) = req.into_parts();
    let end = body.is_end_stream();
    let mut client = client.ready().await?;
    let (resp, send) = client.send_request(http::Request::from_parts(parts, ()), end)?;
    if !end {
        tokio::spawn(pump(body, send, None));
    }
    let resp = resp.await?;
    let (parts, body) = resp.into_parts();
    let cut = *tamper.lock().unwrap() == TrailerTamper::CutAfterHeaders;
    let end = body.is_end_stream() || cut;
    let send = respond.send_response(http::Response::from_parts(parts, ()), end)?;
    if !end {
        let t = *tamper.lock().unwrap();
        pump(body, send, Some((t, seen))).await?;
    }
    Ok(())
}

/// Copies data and trailers from `from` to `to`, tampering with trailers
/// when asked.
async fn pump(
    mut from: RecvStream,
    mut to: SendStream<Bytes>,
    tamper: Option<(TrailerTamper, Arc<Mutex<Vec<HeaderMap>>>)>,
) -> Result<(), Error> {
    while let Some(data) = from.data().await {
        let data = data?;
        let _ = from.flow_control().release_capacity(data.len());
        to.send_data(data, false)?;
    }
    match from.trailers().await? {
        Some(mut trailers) => {
            if let Some((t, seen)) = tamper {
                change(&mut trailers, t);
                seen.lock().unwrap().push(trailers.clone());
            }
            to.send_trailers(trailers)?;
        }
        None => to.send_data(Bytes::new(), true)?,
    }
    Ok(())
}

fn change(trailers: &mut HeaderMap, t: TrailerTamper) {
    let b64 = base64::engine::general_purpose::STANDARD;
    match t {
        TrailerTamper::None => {}
        TrailerTamper::FlipRecordByte(at) => {
            if let Some(v) = trailers.get("x-fp-trailer") {
                let mut record = b64.decode(v.as_bytes()).expect("base64 record");
                let at = at.min(record.len() - 1);
                record[at] ^= 0x01;
                trailers.insert("x-fp-trailer", b64.encode(record).parse().expect("value"));
            }
        }
        TrailerTamper::DropRecord => {
            trailers.remove("x-fp-trailer");
        }
        TrailerTamper::AddForgedStatus => {
            trailers.insert("grpc-status", "0".parse().expect("value"));
            trailers.insert("grpc-message", "forged".parse().expect("value"));
        }
        TrailerTamper::CutAfterHeaders => {}
    }
}
