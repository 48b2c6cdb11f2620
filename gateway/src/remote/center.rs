//! The config as a document of a fastproxy center (`PUT /v1/config/{name}`
//! publishes it, `fastproxy publish` does that), read and watched with the
//! center's long poll.

use std::time::Duration;

use super::{ConfigSource, Doc};
use crate::discovery::center_client::CenterClient;

/// How long the center holds a watch.
const WAIT: Duration = Duration::from_secs(30);

/// A config document of a center.
pub struct CenterConfig {
    client: CenterClient,
    name: String,
    timeout: Duration,
}

impl CenterConfig {
    /// Document `name` of the center `client` talks to.
    pub fn new(client: CenterClient, name: String, timeout: Duration) -> Self {
        CenterConfig { client, name, timeout }
    }

    async fn get(&self, target: &str, total: Duration) -> Result<Doc, String> {
        let reply = self.client.call("GET", target, b"", total).await.map_err(|e| e.to_string())?;
        let value = CenterClient::json(reply).map_err(|e| e.to_string())?;
        let text = value["text"].as_str().ok_or("the center's answer holds no text")?;
        let revision = value["revision"].as_u64().ok_or("the center's answer holds no revision")?;
        Ok(Doc::parsed(text, revision.to_string()))
    }
}

#[async_trait::async_trait]
impl ConfigSource for CenterConfig {
    async fn fetch(&self) -> Result<Doc, String> {
        self.get(&format!("/v1/config/{}", self.name), self.timeout).await
    }

    async fn next(&self, current: &Doc) -> Result<Option<Doc>, String> {
        let target = format!("/v1/config/{}?index={}&wait={}s", self.name, current.revision, WAIT.as_secs());
        let doc = self.get(&target, WAIT + self.timeout).await?;
        Ok((doc.revision != current.revision).then_some(doc))
    }
}
