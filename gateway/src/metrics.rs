//! Prometheus metrics, registered in the registry `pingora-prometheus` serves
//! (the `prometheus` crate's default one) and exposed on the admin listener.
//!
//! Label values come only from config (callers, services, pools, backends)
//! or from fixed sets (roles, status classes, error codes): a request can
//! never create a new series. Paths are never labels.

use std::time::Duration;

use std::sync::OnceLock;

use pingora_prometheus::prometheus::{
    self, exponential_buckets, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts,
};

use crate::error::Role;

/// One role's series of the per-request metrics labelled by role only.
struct RoleSeries {
    duration: Histogram,
    upstream_duration: Histogram,
    bytes_in: IntCounter,
    bytes_out: IntCounter,
}

/// Every metric fastproxy exports.
pub struct Metrics {
    /// Each role's series of the per-request metrics whose only label is
    /// the role, looked up once (on the role's first request) instead of by
    /// label on every request.
    per_role: [OnceLock<RoleSeries>; 3],
    requests: IntCounterVec,
    duration: HistogramVec,
    upstream_duration: HistogramVec,
    bytes: IntCounterVec,
    errors: IntCounterVec,
    retries: IntCounterVec,
    ejections: IntCounterVec,
    inflight: IntGaugeVec,
    backend_up: IntGaugeVec,
    backend_ejected: IntGaugeVec,
    opened: IntGaugeVec,
    connections: IntGaugeVec,
    refused: IntCounterVec,
    header_timeouts: IntCounterVec,
    reloads: IntCounterVec,
    discovery_members: IntGaugeVec,
    discovery_revision: IntGaugeVec,
    discovery_updates: IntCounterVec,
    discovery_errors: IntCounterVec,
    registered: IntGaugeVec,
    registration_errors: IntCounterVec,
    center_requests: IntCounterVec,
    remote_errors: IntCounterVec,
}

fn counter(name: &str, help: &str, labels: &[&str]) -> prometheus::Result<IntCounterVec> {
    let c = IntCounterVec::new(Opts::new(name, help), labels)?;
    prometheus::register(Box::new(c.clone()))?;
    Ok(c)
}

fn gauge(name: &str, help: &str, labels: &[&str]) -> prometheus::Result<IntGaugeVec> {
    let g = IntGaugeVec::new(Opts::new(name, help), labels)?;
    prometheus::register(Box::new(g.clone()))?;
    Ok(g)
}

fn histogram(name: &str, help: &str) -> prometheus::Result<HistogramVec> {
    // 0.5 ms … ~8 s.
    let buckets = exponential_buckets(0.0005, 2.0, 15)?;
    let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), &["role"])?;
    prometheus::register(Box::new(h.clone()))?;
    Ok(h)
}

/// What one finished request contributes.
pub struct RequestRecord<'a> {
    /// Which proxy.
    pub role: Role,
    /// Configured caller name, or `unknown`.
    pub caller: &'a str,
    /// Configured service name, or `unknown`.
    pub service: &'a str,
    /// Status sent to the client; 0 when none was.
    pub status: u16,
    /// Error code, when the proxy produced an error.
    pub error: Option<&'static str>,
    /// Whole request time.
    pub total: Duration,
    /// From the first upstream attempt to the response header, when reached.
    pub upstream: Option<Duration>,
    /// Body bytes read from the client.
    pub bytes_in: u64,
    /// Body bytes sent to the client.
    pub bytes_out: u64,
}

impl Metrics {
    /// Creates and registers every metric. Call once per process.
    pub fn register() -> prometheus::Result<Self> {
        Ok(Metrics {
            per_role: Default::default(),
            requests: counter(
                "fastproxy_requests_total",
                "Requests handled, by role, caller, callee service and status class.",
                &["role", "caller", "service", "class"],
            )?,
            duration: histogram("fastproxy_request_duration_seconds", "Whole request time at this proxy.")?,
            upstream_duration: histogram(
                "fastproxy_upstream_duration_seconds",
                "Time from the first upstream attempt to the upstream response header.",
            )?,
            bytes: counter("fastproxy_body_bytes_total", "Body bytes from (in) and to (out) clients.", &["role", "direction"])?,
            errors: counter(
                "fastproxy_errors_total",
                "Requests the proxy answered with an error (or aborted), by stable error code: seal/open failures, denials, rate limits, upstream failures.",
                &["role", "code"],
            )?,
            retries: counter("fastproxy_upstream_retries_total", "Retries granted, by pool.", &["pool"])?,
            ejections: counter("fastproxy_upstream_ejections_total", "Backends ejected by outlier detection, by pool.", &["pool"])?,
            inflight: gauge("fastproxy_upstream_inflight", "Requests in flight to the pool.", &["pool"])?,
            backend_up: gauge(
                "fastproxy_upstream_backend_healthy",
                "1 when the active health check sees the backend up (1 without health checks).",
                &["pool", "backend"],
            )?,
            backend_ejected: gauge("fastproxy_upstream_backend_ejected", "1 while the backend is ejected.", &["pool", "backend"])?,
            opened: gauge(
                "fastproxy_opened_buffer_bytes",
                "Opened request plaintext held in memory, not yet written to callees (within inbound.max_opened_buffer).",
                &[],
            )?,
            connections: gauge("fastproxy_connections", "Client connections open on the role's listeners.", &["role"])?,
            refused: counter(
                "fastproxy_connections_refused_total",
                "Connections refused with 503 too_many_connections (the role's max_connections was reached).",
                &["role"],
            )?,
            header_timeouts: counter(
                "fastproxy_header_timeouts_total",
                "Connections closed because a request head did not arrive whole within header_timeout.",
                &["role"],
            )?,
            reloads: counter(
                "fastproxy_config_reloads_total",
                "Config reloads by result: ok, invalid (did not load or validate), refused (changes what needs an upgrade), error.",
                &["result"],
            )?,
            discovery_members: gauge(
                "fastproxy_discovery_members",
                "Instances of a discovered service in the last listing, by registry and service.",
                &["registry", "service"],
            )?,
            discovery_revision: gauge(
                "fastproxy_discovery_revision",
                "Registry revision of the last listing of a discovered service.",
                &["registry", "service"],
            )?,
            discovery_updates: counter(
                "fastproxy_discovery_updates_total",
                "Listings of a discovered service whose members changed (the pools took them).",
                &["registry", "service"],
            )?,
            discovery_errors: counter(
                "fastproxy_discovery_errors_total",
                "Failed list or watch calls for a discovered service (the last known members keep serving).",
                &["registry", "service"],
            )?,
            registered: gauge(
                "fastproxy_registered",
                "1 while this proxy holds a live registration of the service.",
                &["registry", "service"],
            )?,
            registration_errors: counter(
                "fastproxy_registration_errors_total",
                "Failed register, keepalive or deregister calls.",
                &["registry", "service"],
            )?,
            remote_errors: counter(
                "fastproxy_remote_config_errors_total",
                "Failed fetches or watches of the remote config source (the config in force keeps serving).",
                &[],
            )?,
            center_requests: counter(
                "fastproxy_center_requests_total",
                "Requests to the center's API, by result: ok or the error code of the refusal.",
                &["result"],
            )?,
        })
    }

    /// Records a listing of `service` from `registry` (`changed`: its
    /// members differ from the previous one).
    pub fn discovery_listing(&self, registry: &str, service: &str, members: usize, revision: u64, changed: bool) {
        let labels = [registry, service];
        self.discovery_members.with_label_values(&labels).set(members as i64);
        self.discovery_revision.with_label_values(&labels).set(revision as i64);
        if changed {
            self.discovery_updates.with_label_values(&labels).inc();
        }
    }

    /// Counts a failed list or watch call.
    pub fn discovery_error(&self, registry: &str, service: &str) {
        self.discovery_errors.with_label_values(&[registry, service]).inc();
    }

    /// Records whether this proxy holds a registration of `service`.
    pub fn set_registered(&self, registry: &str, service: &str, live: bool) {
        self.registered.with_label_values(&[registry, service]).set(i64::from(live));
    }

    /// Counts a failed fetch or watch of the remote config source.
    pub fn remote_config_error(&self) {
        self.remote_errors.with_label_values(&[] as &[&str]).inc();
    }

    /// Counts a request to the center's API (`result`: `ok` or a stable
    /// error code).
    pub fn center_request(&self, result: &str) {
        self.center_requests.with_label_values(&[result]).inc();
    }

    /// Counts a failed registration call.
    pub fn registration_error(&self, registry: &str, service: &str) {
        self.registration_errors.with_label_values(&[registry, service]).inc();
    }

    /// Counts a config reload's outcome.
    pub fn config_reload(&self, result: &str) {
        self.reloads.with_label_values(&[result]).inc();
    }

    /// Pre-labelled handles for one role's listeners.
    pub fn listener(&self, role: Role) -> ListenerMetrics {
        let role = [role.name()];
        ListenerMetrics {
            open: self.connections.with_label_values(&role),
            refused: self.refused.with_label_values(&role),
            header_timeouts: self.header_timeouts.with_label_values(&role),
        }
    }

    /// Sets the opened plaintext held now.
    pub fn set_opened(&self, bytes: usize) {
        self.opened.with_label_values(&[] as &[&str]).set(bytes as i64);
    }

    /// Records a finished request.
    pub fn request(&self, r: &RequestRecord<'_>) {
        let role = r.role.name();
        let class = match r.status {
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            500..=599 => "5xx",
            _ => "none",
        };
        self.requests.with_label_values(&[role, r.caller, r.service, class]).inc();
        let slot = match r.role {
            Role::Outbound => 0,
            Role::Inbound => 1,
            Role::Center => 2,
        };
        let series = self.per_role[slot].get_or_init(|| RoleSeries {
            duration: self.duration.with_label_values(&[role]),
            upstream_duration: self.upstream_duration.with_label_values(&[role]),
            bytes_in: self.bytes.with_label_values(&[role, "in"]),
            bytes_out: self.bytes.with_label_values(&[role, "out"]),
        });
        series.duration.observe(r.total.as_secs_f64());
        if let Some(u) = r.upstream {
            series.upstream_duration.observe(u.as_secs_f64());
        }
        series.bytes_in.inc_by(r.bytes_in);
        series.bytes_out.inc_by(r.bytes_out);
        if let Some(code) = r.error {
            self.errors.with_label_values(&[role, code]).inc();
        }
    }

    /// Pre-labelled handles for one pool.
    pub fn pool(&self, pool: &str) -> PoolMetrics {
        PoolMetrics {
            retries: self.retries.with_label_values(&[pool]),
            ejections: self.ejections.with_label_values(&[pool]),
            inflight: self.inflight.with_label_values(&[pool]),
            backend_up: self.backend_up.clone(),
            backend_ejected: self.backend_ejected.clone(),
            pool: pool.to_owned(),
        }
    }
}

/// One role's listener metrics.
#[derive(Clone)]
pub struct ListenerMetrics {
    /// Open connections.
    pub open: IntGauge,
    /// Connections refused at the cap.
    pub refused: IntCounter,
    /// Connections closed at the header timeout.
    pub header_timeouts: IntCounter,
}

/// One pool's metrics.
#[derive(Clone)]
pub struct PoolMetrics {
    /// Retries granted.
    pub retries: IntCounter,
    /// Ejections.
    pub ejections: IntCounter,
    /// In-flight requests.
    pub inflight: IntGauge,
    backend_up: IntGaugeVec,
    backend_ejected: IntGaugeVec,
    pool: String,
}

impl PoolMetrics {
    /// Sets a backend's health.
    pub fn set_healthy(&self, backend: &str, up: bool) {
        self.backend_up.with_label_values(&[&self.pool, backend]).set(i64::from(up));
    }

    /// Sets a backend's ejection state.
    pub fn set_ejected(&self, backend: &str, ejected: bool) {
        self.backend_ejected.with_label_values(&[&self.pool, backend]).set(i64::from(ejected));
    }
}

/// The text exposition of every registered metric.
pub fn render() -> (String, Vec<u8>) {
    use prometheus::Encoder;
    let encoder = prometheus::TextEncoder::new();
    let mut out = Vec::new();
    if let Err(e) = encoder.encode(&prometheus::gather(), &mut out) {
        log::warn!("encoding metrics failed: {e}");
    }
    #[cfg(feature = "alloc-count")]
    out.extend_from_slice(
        format!(
            "# HELP fastproxy_heap_allocations_total Heap allocations since start (alloc-count builds).\n# TYPE fastproxy_heap_allocations_total counter\nfastproxy_heap_allocations_total {}\n",
            crate::alloc::count()
        )
        .as_bytes(),
    );
    (encoder.format_type().to_owned(), out)
}
