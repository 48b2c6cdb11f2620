//! The etcd engine, through etcd's v3 JSON gateway (etcd ≥ 3.4; no gRPC
//! stack or protoc needed). An instance is the key
//! `<prefix><service>/<id>` holding its JSON, under a lease kept alive by
//! the registering proxy. Discovery lists the service's prefix, then
//! follows one watch from the next revision; a watch that falls behind a
//! compaction lists again and reports only a real change.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Value};

use super::http::{self, Lines, Request};
use super::{Error, Instance, Lease, Listing, Registry, Watch};

/// Silence after which a watch stream is opened again from its revision
/// (a connection cut without a reset says nothing).
const WATCH_SILENCE: Duration = Duration::from_secs(30);

/// A client of one etcd cluster.
#[derive(Clone)]
pub struct Etcd {
    authority: String,
    prefix: String,
    timeout: Duration,
}

/// An int64 of etcd's JSON (sent as a string).
fn int(v: &Value) -> u64 {
    match v {
        Value::String(s) => s.parse().unwrap_or(0),
        Value::Number(n) => n.as_u64().unwrap_or(0),
        _ => 0,
    }
}

/// The end of the key range holding every key that starts with `prefix`.
fn range_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

impl Etcd {
    /// A client of the etcd at `authority`, registrations under `prefix`.
    pub fn new(authority: String, prefix: String, timeout: Duration) -> Self {
        Etcd { authority, prefix, timeout }
    }

    fn service_prefix(&self, service: &str) -> String {
        format!("{}{service}/", self.prefix)
    }

    /// A POST of JSON `body` to the gateway's `path`.
    fn request<'a>(&'a self, path: &'a str, body: &'a [u8]) -> Request<'a> {
        Request { authority: &self.authority, method: "POST", target: path, headers: Vec::new(), body }
    }

    async fn post(&self, path: &str, body: Value) -> Result<Value, Error> {
        let body = body.to_string();
        let req = self.request(path, body.as_bytes());
        let reply = http::call(&req, self.timeout).await.map_err(Error::Unreachable)?;
        let value: Value = serde_json::from_slice(&reply.body)
            .map_err(|e| Error::Unreachable(format!("etcd {path}: the answer is not JSON: {e}")))?;
        if reply.status != 200 {
            return Err(Error::Refused {
                status: reply.status,
                code: value["code"].to_string(),
                message: value["message"].as_str().or(value["error"].as_str()).unwrap_or("").to_owned(),
            });
        }
        Ok(value)
    }

    /// The first line of a streaming call (keepalive answers that way).
    async fn first_line(&self, path: &str, body: Value) -> Result<Value, Error> {
        let body = body.to_string();
        let req = self.request(path, body.as_bytes());
        let mut lines = http::stream(&req, self.timeout).await.map_err(Error::Unreachable)?;
        let line = lines
            .next(self.timeout)
            .await
            .map_err(Error::Unreachable)?
            .ok_or_else(|| Error::Unreachable(format!("etcd {path}: no answer within {:?}", self.timeout)))?;
        serde_json::from_slice(&line)
            .map_err(|e| Error::Unreachable(format!("etcd {path}: the answer is not JSON: {e}")))
    }

    fn instance(kv: &Value) -> Option<Instance> {
        let raw = B64.decode(kv["value"].as_str()?).ok()?;
        serde_json::from_slice(&raw).ok()
    }

    /// The keys and values at `key` (every key under it when `prefix`) and
    /// the store's revision.
    pub async fn range(&self, key: &str, prefix: bool) -> Result<(Vec<(String, Vec<u8>)>, u64), Error> {
        let mut body = json!({ "key": B64.encode(key.as_bytes()) });
        if prefix {
            body["range_end"] = json!(B64.encode(range_end(key)));
        }
        let answer = self.post("/v3/kv/range", body).await?;
        let revision = int(&answer["header"]["revision"]);
        let kvs = answer["kvs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|kv| {
                let k = B64.decode(kv["key"].as_str()?).ok()?;
                let v = B64.decode(kv["value"].as_str().unwrap_or("")).ok()?;
                Some((String::from_utf8_lossy(&k).into_owned(), v))
            })
            .collect();
        Ok((kvs, revision))
    }

    /// A watch stream of `key` (every key under it when `prefix`) from
    /// `from_revision`: newline-delimited JSON, each line a watch response.
    pub async fn watch_stream(&self, key: &str, prefix: bool, from_revision: u64) -> Result<Lines, Error> {
        let mut create = json!({ "key": B64.encode(key.as_bytes()), "start_revision": from_revision.to_string() });
        if prefix {
            create["range_end"] = json!(B64.encode(range_end(key)));
        }
        let body = json!({ "create_request": create }).to_string();
        let req = self.request("/v3/watch", body.as_bytes());
        let lines = http::stream(&req, self.timeout).await.map_err(Error::Unreachable)?;
        if lines.status != 200 {
            return Err(Error::Unreachable(format!("etcd /v3/watch: status {}", lines.status)));
        }
        Ok(lines)
    }

    async fn open(&self, service: &str, from_revision: u64) -> Result<Lines, Error> {
        self.watch_stream(&self.service_prefix(service), true, from_revision).await
    }
}

#[async_trait::async_trait]
impl Registry for Etcd {
    async fn register(&self, service: &str, instance: &Instance, ttl: Duration) -> Result<Lease, Error> {
        let granted = self.post("/v3/lease/grant", json!({ "TTL": ttl.as_secs().max(1) })).await?;
        let lease = int(&granted["ID"]);
        if lease == 0 {
            return Err(Error::Unreachable("etcd granted no lease".to_owned()));
        }
        let key = format!("{}{}", self.service_prefix(service), instance.id);
        let value = serde_json::to_vec(instance).map_err(|e| Error::Unreachable(e.to_string()))?;
        self.post(
            "/v3/kv/put",
            json!({ "key": B64.encode(key.as_bytes()), "value": B64.encode(value), "lease": lease.to_string() }),
        )
        .await?;
        Ok(Lease(lease.to_string()))
    }

    async fn keepalive(&self, lease: &Lease) -> Result<(), Error> {
        let answer = self.first_line("/v3/lease/keepalive", json!({ "ID": lease.0 })).await?;
        match int(&answer["result"]["TTL"]) {
            0 => Err(Error::LeaseGone),
            _ => Ok(()),
        }
    }

    async fn deregister(&self, lease: &Lease) -> Result<(), Error> {
        match self.post("/v3/lease/revoke", json!({ "ID": lease.0 })).await {
            Ok(_) => Ok(()),
            // An expired lease is already gone.
            Err(Error::Refused { message, .. }) if message.contains("not found") => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn list(&self, service: &str) -> Result<Listing, Error> {
        let (kvs, revision) = self.range(&self.service_prefix(service), true).await?;
        let mut instances: Vec<Instance> = kvs.iter().filter_map(|(_, v)| serde_json::from_slice(v).ok()).collect();
        instances.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(Listing { revision, instances })
    }

    async fn watch(&self, service: &str, after: Listing) -> Result<Box<dyn Watch>, Error> {
        let lines = self.open(service, after.revision + 1).await?;
        let members =
            after.instances.iter().map(|i| (format!("{}{}", self.service_prefix(service), i.id), i.clone())).collect();
        Ok(Box::new(EtcdWatch { etcd: self.clone(), service: service.to_owned(), lines, members, last: after }))
    }
}

/// One watch stream over a service's prefix.
struct EtcdWatch {
    etcd: Etcd,
    service: String,
    lines: Lines,
    /// Instances by key, as the events left them.
    members: BTreeMap<String, Instance>,
    /// The last listing returned (its revision: the last seen).
    last: Listing,
}

impl EtcdWatch {
    fn listing(&self, revision: u64) -> Listing {
        let mut instances: Vec<Instance> = self.members.values().cloned().collect();
        instances.sort_by(|a, b| a.id.cmp(&b.id));
        Listing { revision, instances }
    }

    /// Applies one line of the stream; `Some(listing)` when members changed.
    async fn apply(&mut self, line: &[u8]) -> Result<Option<Listing>, Error> {
        let value: Value = serde_json::from_slice(line)
            .map_err(|e| Error::Unreachable(format!("etcd watch: a line that is not JSON: {e}")))?;
        if !value["error"].is_null() {
            return Err(Error::Unreachable(format!("etcd watch: {}", value["error"])));
        }
        let result = &value["result"];
        let revision = int(&result["header"]["revision"]).max(self.last.revision);
        if result["canceled"].as_bool() == Some(true) {
            let compacted = int(&result["compact_revision"]);
            if compacted == 0 {
                return Err(Error::Unreachable(format!("etcd watch canceled: {}", result["cancel_reason"])));
            }
            // Fell behind a compaction: list again, diff, follow from there.
            log::info!(target: "fastproxy::discovery", "etcd watch of {}: compacted at {compacted}; listing again", self.service);
            let listing = self.etcd.list(&self.service).await?;
            self.members = listing
                .instances
                .iter()
                .map(|i| (format!("{}{}", self.etcd.service_prefix(&self.service), i.id), i.clone()))
                .collect();
            self.lines = self.etcd.open(&self.service, listing.revision + 1).await?;
            return Ok(self.changed(listing));
        }
        for event in result["events"].as_array().into_iter().flatten() {
            let kv = &event["kv"];
            let Some(key) = kv["key"].as_str().and_then(|k| B64.decode(k).ok()) else { continue };
            let key = String::from_utf8_lossy(&key).into_owned();
            if event["type"].as_str() == Some("DELETE") {
                self.members.remove(&key);
            } else if let Some(instance) = Etcd::instance(kv) {
                self.members.insert(key, instance);
            }
        }
        let listing = self.listing(revision);
        Ok(self.changed(listing))
    }

    /// Records `listing` as seen; returns it when its members changed.
    fn changed(&mut self, listing: Listing) -> Option<Listing> {
        let changed = !listing.same_members(&self.last);
        self.last = listing;
        changed.then(|| self.last.clone())
    }
}

#[async_trait::async_trait]
impl Watch for EtcdWatch {
    async fn next(&mut self) -> Result<Listing, Error> {
        loop {
            match self.lines.next(WATCH_SILENCE).await {
                Ok(Some(line)) => {
                    if let Some(listing) = self.apply(&line).await? {
                        return Ok(listing);
                    }
                }
                // Silence: resume from the last revision seen on a new stream.
                Ok(None) => self.lines = self.etcd.open(&self.service, self.last.revision + 1).await?,
                Err(e) => return Err(Error::Unreachable(format!("etcd watch: {e}"))),
            }
        }
    }
}
