//! The center's state, as a plain state machine (no I/O, time passed in):
//! services → instances, each under a lease that a client keeps alive; a
//! revision that grows with every change; and the JSON it is persisted as.
//! A restart restores the registrations and gives every lease its full TTL
//! from the restart (clients could not renew while the center was down).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::membership::{Instance, Listing};

/// Most instances the center holds, all services together.
pub const MAX_INSTANCES: usize = 65_536;

/// Why a store operation was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No such lease (expired, revoked, or never granted).
    LeaseNotFound,
    /// The lease belongs to another client.
    NotOwner,
    /// The center holds [`MAX_INSTANCES`] already.
    Full,
}

struct Entry {
    instance: Instance,
    lease: u64,
}

struct LeaseState {
    node: String,
    ttl: Duration,
    expires: Instant,
    keys: BTreeSet<(String, String)>,
}

#[derive(Default)]
struct Service {
    /// Revision of the last change to this service.
    modified: u64,
    instances: BTreeMap<String, Entry>,
}

/// Registrations, leases, config documents and the revision.
#[derive(Default)]
pub struct Store {
    revision: u64,
    next_lease: u64,
    services: BTreeMap<String, Service>,
    leases: HashMap<u64, LeaseState>,
    count: usize,
    configs: BTreeMap<String, Document>,
}

/// A config document the center serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Document {
    /// Its text (YAML), as published.
    pub text: String,
    /// The revision that last changed it.
    pub modified: u64,
}

/// Most config documents the center holds.
pub const MAX_CONFIGS: usize = 1024;

/// The persisted form.
#[derive(Serialize, Deserialize)]
struct Saved {
    revision: u64,
    next_lease: u64,
    registrations: Vec<SavedRegistration>,
    #[serde(default)]
    configs: BTreeMap<String, Document>,
}

#[derive(Serialize, Deserialize)]
struct SavedRegistration {
    service: String,
    instance: Instance,
    lease: u64,
    node: String,
    ttl_ms: u64,
}

impl Store {
    /// The current revision.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// The revision of the last change to `service` (0 if never seen).
    pub fn modified(&self, service: &str) -> u64 {
        self.services.get(service).map_or(0, |s| s.modified)
    }

    fn touch(&mut self, service: &str) {
        self.revision += 1;
        let revision = self.revision;
        self.services.entry(service.to_owned()).or_default().modified = revision;
    }

    /// Removes `service`/`id` (its lease no longer holds it).
    fn remove(&mut self, service: &str, id: &str) -> Option<u64> {
        let s = self.services.get_mut(service)?;
        let entry = s.instances.remove(id)?;
        self.count -= 1;
        if let Some(l) = self.leases.get_mut(&entry.lease) {
            l.keys.remove(&(service.to_owned(), id.to_owned()));
        }
        self.touch(service);
        Some(entry.lease)
    }

    /// Registers `instance` under `service` for `node` with a new lease of
    /// `ttl`; replaces an instance of the same id. Returns the lease.
    pub fn register(
        &mut self,
        node: &str,
        service: &str,
        instance: Instance,
        ttl: Duration,
        now: Instant,
    ) -> Result<u64, Refusal> {
        let id = instance.id.clone();
        let replaced = self.remove(service, &id);
        if replaced.is_none() && self.count >= MAX_INSTANCES {
            return Err(Refusal::Full);
        }
        if let Some(old) = replaced {
            self.drop_if_empty(old);
        }
        self.next_lease += 1;
        let lease = self.next_lease;
        let keys = BTreeSet::from([(service.to_owned(), id.clone())]);
        self.leases.insert(lease, LeaseState { node: node.to_owned(), ttl, expires: now + ttl, keys });
        self.services.entry(service.to_owned()).or_default().instances.insert(id, Entry { instance, lease });
        self.count += 1;
        self.touch(service);
        Ok(lease)
    }

    /// A lease left holding nothing (its instance re-registered under a
    /// new one) ends.
    fn drop_if_empty(&mut self, lease: u64) {
        if self.leases.get(&lease).is_some_and(|l| l.keys.is_empty()) {
            self.leases.remove(&lease);
        }
    }

    fn owned(&mut self, node: &str, lease: u64) -> Result<&mut LeaseState, Refusal> {
        match self.leases.get_mut(&lease) {
            None => Err(Refusal::LeaseNotFound),
            Some(l) if l.node != node => Err(Refusal::NotOwner),
            Some(l) => Ok(l),
        }
    }

    /// Renews `lease` for its TTL; returns the TTL.
    pub fn keepalive(&mut self, node: &str, lease: u64, now: Instant) -> Result<Duration, Refusal> {
        let l = self.owned(node, lease)?;
        l.expires = now + l.ttl;
        Ok(l.ttl)
    }

    /// Ends `lease` and removes what it holds.
    pub fn revoke(&mut self, node: &str, lease: u64) -> Result<(), Refusal> {
        self.owned(node, lease)?;
        self.end(lease);
        Ok(())
    }

    fn end(&mut self, lease: u64) {
        if let Some(l) = self.leases.remove(&lease) {
            for (service, id) in l.keys {
                self.remove(&service, &id);
            }
        }
    }

    /// Ends every lease expired at `now`; returns how many ended.
    pub fn sweep(&mut self, now: Instant) -> usize {
        let expired: Vec<u64> = self.leases.iter().filter(|(_, l)| l.expires <= now).map(|(id, _)| *id).collect();
        for lease in &expired {
            self.end(*lease);
        }
        expired.len()
    }

    /// The instances of `service`, at the current revision.
    pub fn listing(&self, service: &str) -> Listing {
        let instances = self
            .services
            .get(service)
            .map(|s| s.instances.values().map(|e| e.instance.clone()).collect())
            .unwrap_or_default();
        Listing { revision: self.revision, instances }
    }

    /// Every service with instances, and how many.
    pub fn services(&self) -> BTreeMap<String, usize> {
        self.services
            .iter()
            .filter(|(_, s)| !s.instances.is_empty())
            .map(|(n, s)| (n.clone(), s.instances.len()))
            .collect()
    }

    /// Publishes config document `name` (a new revision even when the text
    /// is the same: a publish is an event).
    pub fn publish(&mut self, name: &str, text: String) -> Result<u64, Refusal> {
        if !self.configs.contains_key(name) && self.configs.len() >= MAX_CONFIGS {
            return Err(Refusal::Full);
        }
        self.revision += 1;
        self.configs.insert(name.to_owned(), Document { text, modified: self.revision });
        Ok(self.revision)
    }

    /// Config document `name`, if published.
    pub fn config(&self, name: &str) -> Option<&Document> {
        self.configs.get(name)
    }

    /// The persisted form of the state.
    pub fn save(&self) -> Vec<u8> {
        let mut registrations = Vec::new();
        for (service, s) in &self.services {
            for e in s.instances.values() {
                let (node, ttl) =
                    self.leases.get(&e.lease).map_or((String::new(), Duration::ZERO), |l| (l.node.clone(), l.ttl));
                registrations.push(SavedRegistration {
                    service: service.clone(),
                    instance: e.instance.clone(),
                    lease: e.lease,
                    node,
                    ttl_ms: ttl.as_millis() as u64,
                });
            }
        }
        let configs = self.configs.clone();
        serde_json::to_vec(&Saved { revision: self.revision, next_lease: self.next_lease, registrations, configs })
            .unwrap_or_default()
    }

    /// The state saved as `bytes`, every lease renewed from `now`.
    pub fn restore(bytes: &[u8], now: Instant) -> Result<Store, String> {
        let saved: Saved = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        let mut store = Store {
            revision: saved.revision,
            next_lease: saved.next_lease,
            configs: saved.configs,
            ..Store::default()
        };
        for r in saved.registrations {
            let ttl = Duration::from_millis(r.ttl_ms.max(1_000));
            let lease = store.leases.entry(r.lease).or_insert_with(|| LeaseState {
                node: r.node.clone(),
                ttl,
                expires: now + ttl,
                keys: BTreeSet::new(),
            });
            lease.keys.insert((r.service.clone(), r.instance.id.clone()));
            let s = store.services.entry(r.service).or_default();
            s.modified = saved.revision;
            s.instances.insert(r.instance.id.clone(), Entry { instance: r.instance, lease: r.lease });
            store.count += 1;
            store.next_lease = store.next_lease.max(r.lease);
        }
        Ok(store)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inst(id: &str, port: u16) -> Instance {
        Instance { id: id.into(), addr: ([127, 0, 0, 1], port).into(), weight: 1, metadata: BTreeMap::new() }
    }

    #[test]
    fn leases_hold_registrations_until_they_expire_or_are_revoked() {
        let t0 = Instant::now();
        let ttl = Duration::from_secs(10);
        let mut s = Store::default();
        let a = s.register("in-a", "billing", inst("a", 1), ttl, t0).expect("register");
        let b = s.register("in-b", "billing", inst("b", 2), ttl, t0).expect("register");
        assert_eq!(s.listing("billing").instances.len(), 2);
        let r = s.revision();
        assert_eq!(s.keepalive("in-b", a, t0), Err(Refusal::NotOwner));
        assert_eq!(s.revoke("in-b", a), Err(Refusal::NotOwner));
        s.keepalive("in-a", a, t0 + Duration::from_secs(8)).expect("renew");
        assert_eq!(s.sweep(t0 + Duration::from_secs(11)), 1, "b expired, a was renewed");
        assert!(s.modified("billing") > r);
        assert_eq!(s.listing("billing").instances, vec![inst("a", 1)]);
        assert_eq!(s.keepalive("in-b", b, t0), Err(Refusal::LeaseNotFound));
        s.revoke("in-a", a).expect("revoke");
        assert!(s.listing("billing").instances.is_empty());
    }

    #[test]
    fn a_new_registration_of_an_id_takes_it_over_and_the_state_survives_a_restart() {
        let t0 = Instant::now();
        let ttl = Duration::from_secs(10);
        let mut s = Store::default();
        let old = s.register("in-a", "billing", inst("a", 1), ttl, t0).expect("register");
        let new = s.register("in-a", "billing", inst("a", 1), ttl, t0).expect("take over");
        assert_ne!(old, new);
        assert_eq!(s.keepalive("in-a", old, t0), Err(Refusal::LeaseNotFound), "the old lease held nothing else");
        assert_eq!(s.listing("billing").instances.len(), 1);
        let later = t0 + Duration::from_secs(9);
        let restored = Store::restore(&s.save(), later).expect("restore");
        assert_eq!(restored.listing("billing"), s.listing("billing"));
        let mut restored = restored;
        assert_eq!(restored.sweep(later + Duration::from_secs(9)), 0, "leases resume with their full TTL");
        restored.keepalive("in-a", new, later).expect("the lease resumed");
        assert_eq!(restored.sweep(later + Duration::from_secs(21)), 1);
    }
}
