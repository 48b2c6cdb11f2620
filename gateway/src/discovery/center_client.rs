//! The center engine's client: the HTTP JSON API of docs/CENTER.md, every
//! request signed with the node's center key and every answer checked
//! against it.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::center_auth as auth;
use super::http::{self, Reply, Request};
use super::{Error, Instance, Lease, Listing, Registry, Watch};

/// How long a watch asks the center to hold it when nothing changes.
const WATCH_WAIT: Duration = Duration::from_secs(30);

/// A client of one center.
pub struct CenterClient {
    authority: String,
    node: String,
    key: Arc<ring::hmac::Key>,
    timeout: Duration,
}

impl CenterClient {
    /// A client of the center at `authority`, signing as `node` with `key`;
    /// each call waits at most `timeout` (a watch, its hold time more).
    pub fn new(authority: String, node: String, key: Arc<ring::hmac::Key>, timeout: Duration) -> Self {
        CenterClient { authority, node, key, timeout }
    }

    /// Sends a signed request and checks that the answer is the center's,
    /// signed for this request.
    pub async fn call(&self, method: &str, target: &str, body: &[u8], total: Duration) -> Result<Reply, Error> {
        let (authorization, sig) =
            auth::authorization(&self.key, &self.node, method, target, body).map_err(Error::Unreachable)?;
        let req = Request {
            authority: &self.authority,
            method,
            target,
            headers: vec![("authorization", authorization)],
            body,
        };
        let reply = http::call(&req, total).await.map_err(Error::Unreachable)?;
        let signed = reply
            .header(auth::RESPONSE_HEADER)
            .is_some_and(|s| auth::verify(&self.key, &auth::response_string(&sig, reply.status, &reply.body), s));
        if !signed {
            return Err(Error::Unreachable(format!(
                "{}: an answer ({}) not signed by the center for this request",
                self.authority, reply.status
            )));
        }
        Ok(reply)
    }

    /// The JSON of a 2xx answer, or the refusal it carries.
    pub fn json(reply: Reply) -> Result<serde_json::Value, Error> {
        let value: serde_json::Value = serde_json::from_slice(&reply.body)
            .map_err(|e| Error::Unreachable(format!("the center's answer is not JSON: {e}")))?;
        if (200..300).contains(&reply.status) {
            return Ok(value);
        }
        let code = value["error"]["code"].as_str().unwrap_or("").to_owned();
        if code == "lease_not_found" {
            return Err(Error::LeaseGone);
        }
        Err(Error::Refused {
            status: reply.status,
            code,
            message: value["error"]["message"].as_str().unwrap_or("").to_owned(),
        })
    }

    fn listing(value: serde_json::Value) -> Result<Listing, Error> {
        serde_json::from_value(value).map_err(|e| Error::Unreachable(format!("the center's listing is malformed: {e}")))
    }
}

#[async_trait::async_trait]
impl Registry for CenterClient {
    async fn register(&self, service: &str, instance: &Instance, ttl: Duration) -> Result<Lease, Error> {
        let body = json!({
            "addr": instance.addr.to_string(),
            "weight": instance.weight,
            "metadata": instance.metadata,
            "ttl_ms": ttl.as_millis() as u64,
        })
        .to_string();
        let target = format!("/v1/services/{service}/instances/{}", instance.id);
        let value = Self::json(self.call("PUT", &target, body.as_bytes(), self.timeout).await?)?;
        match value["lease"].as_str() {
            Some(lease) => Ok(Lease(lease.to_owned())),
            None => Err(Error::Unreachable("the center's answer names no lease".to_owned())),
        }
    }

    async fn keepalive(&self, lease: &Lease) -> Result<(), Error> {
        let target = format!("/v1/leases/{}/keepalive", lease.0);
        Self::json(self.call("POST", &target, b"", self.timeout).await?).map(|_| ())
    }

    async fn deregister(&self, lease: &Lease) -> Result<(), Error> {
        let target = format!("/v1/leases/{}", lease.0);
        match Self::json(self.call("DELETE", &target, b"", self.timeout).await?) {
            Ok(_) | Err(Error::LeaseGone) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn list(&self, service: &str) -> Result<Listing, Error> {
        let target = format!("/v1/services/{service}");
        Self::listing(Self::json(self.call("GET", &target, b"", self.timeout).await?)?)
    }

    async fn watch(&self, service: &str, after: Listing) -> Result<Box<dyn Watch>, Error> {
        Ok(Box::new(CenterWatch { client: self.clone_ref(), service: service.to_owned(), last: after }))
    }
}

impl CenterClient {
    fn clone_ref(&self) -> CenterClient {
        CenterClient {
            authority: self.authority.clone(),
            node: self.node.clone(),
            key: self.key.clone(),
            timeout: self.timeout,
        }
    }
}

/// A long poll on the service's revision, asked again until its members
/// change.
struct CenterWatch {
    client: CenterClient,
    service: String,
    last: Listing,
}

#[async_trait::async_trait]
impl Watch for CenterWatch {
    async fn next(&mut self) -> Result<Listing, Error> {
        loop {
            let target =
                format!("/v1/services/{}?index={}&wait={}s", self.service, self.last.revision, WATCH_WAIT.as_secs());
            let reply = self.client.call("GET", &target, b"", WATCH_WAIT + self.client.timeout).await?;
            let listing = CenterClient::listing(CenterClient::json(reply)?)?;
            let changed = !listing.same_members(&self.last);
            if listing.revision < self.last.revision {
                log::info!(target: "fastproxy::discovery", "center {}: revision went back ({} < {}): the center's state was reset", self.client.authority, listing.revision, self.last.revision);
            }
            self.last = listing.clone();
            if changed {
                return Ok(listing);
            }
        }
    }
}
