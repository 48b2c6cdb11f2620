//! An HTTP/2 (h2c) callee that ends its responses in the ways HTTP/2 allows
//! and the gRPC server never does: an empty body announced with
//! `content-length: 0` and then trailers, or a response that ends with its
//! header section (END_STREAM on HEADERS) and says no length.

use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response};

/// A running callee; stops with the test process. It answers by path:
/// - `…/empty-then-trailers`: 200, `content-length: 0`, no data, trailers
///   `x-done: yes`;
/// - `…/ends-with-headers`: 200, no length, END_STREAM on the headers;
/// - `…/empty-data`: 200, `content-length: 0`, one empty DATA frame that
///   ends the stream;
/// - `…/no-trailers`: 200, `content-length: 5`, the body `hello`;
/// - anything else: 200, the body `hello` and the trailers `x-done: yes`.
pub struct H2Callee {
    pub addr: SocketAddr,
}

impl H2Callee {
    pub fn start() -> H2Callee {
        let addr = super::h2_relay::serve(serve);
        H2Callee { addr }
    }
}

use super::h2_relay::Error;

async fn serve(conn: tokio::net::TcpStream) -> Result<(), Error> {
    let mut server = h2::server::handshake(conn).await?;
    while let Some(req) = server.accept().await {
        let (req, mut respond) = req?;
        tokio::spawn(async move {
            let path = req.uri().path().to_string();
            // Read the request to its end first.
            let mut body = req.into_body();
            while let Some(Ok(data)) = body.data().await {
                let _ = body.flow_control().release_capacity(data.len());
            }
            let mut trailers = HeaderMap::new();
            trailers.insert("x-done", HeaderValue::from_static("yes"));
            let head = |length: Option<&str>| {
                let mut r = Response::builder().status(200).header("content-type", "text/plain");
                if let Some(n) = length {
                    r = r.header("content-length", n);
                }
                r.body(()).expect("response")
            };
            if path.ends_with("/ends-with-headers") {
                let _ = respond.send_response(head(None), true);
            } else if path.ends_with("/empty-then-trailers") {
                if let Ok(mut send) = respond.send_response(head(Some("0")), false) {
                    let _ = send.send_trailers(trailers);
                }
            } else if path.ends_with("/empty-data") {
                if let Ok(mut send) = respond.send_response(head(Some("0")), false) {
                    let _ = send.send_data(Bytes::new(), true);
                }
            } else if path.ends_with("/no-trailers") {
                if let Ok(mut send) = respond.send_response(head(Some("5")), false) {
                    let _ = send.send_data(Bytes::from_static(b"hello"), true);
                }
            } else if let Ok(mut send) = respond.send_response(head(Some("5")), false) {
                let _ = send.send_data(Bytes::from_static(b"hello"), false);
                let _ = send.send_trailers(trailers);
            }
        });
    }
    Ok(())
}

/// What an HTTP/2 client saw of one response: status, header section, body
/// and trailers (`None` when the response ended without them).
pub struct H2Response {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub trailers: Option<HeaderMap>,
}

/// A GET over h2c (prior knowledge) to `addr` with `headers`, read to its end
/// (curl does not show trailers). An error says how the response broke.
pub fn h2_get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Result<H2Response, String> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
    let run = async {
        let conn = tokio::net::TcpStream::connect(addr).await?;
        let (client, connection) = h2::client::handshake(conn).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let mut req = http::Request::builder().uri(format!("http://{addr}{path}"));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let mut client = client.ready().await?;
        let (resp, _) = client.send_request(req.body(())?, true)?;
        let (parts, mut body) = resp.await?.into_parts();
        let mut bytes = Vec::new();
        while let Some(data) = body.data().await {
            let data = data?;
            let _ = body.flow_control().release_capacity(data.len());
            bytes.extend_from_slice(&data);
        }
        let trailers = body.trailers().await?;
        Ok::<_, Error>(H2Response { status: parts.status.as_u16(), headers: parts.headers, body: bytes, trailers })
    };
    rt.block_on(async { tokio::time::timeout(std::time::Duration::from_secs(10), run).await })
        .map_err(|_| "timed out".to_string())?
        .map_err(|e| e.to_string())
}
