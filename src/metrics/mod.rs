//! Metrics. Every counter the request path touches is a plain atomic in a
//! table fixed at start-up, so recording never takes a lock or allocates;
//! at scrape time a `prometheus-client` collector reads the tables and the
//! crate writes the Prometheus text format.
//!
//! Process-wide series live in [`Metrics`] and survive config reloads; the
//! per-issuer ones in [`IssuerCounters`], which travel with the issuer's key
//! store (kept across reloads when the issuer did not change).

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

mod process;
mod rate_limit;
mod series;

pub use rate_limit::RateLimitSeries;
pub use series::{MethodLabel, RouteSeries};

/// `jwtgate_build_info` labels: what `--version` says.
const BUILD_VERSION: &str = crate::version::VERSION;
const BUILD_COMMIT: &str = crate::version::COMMIT;

/// `outcome` label values of `jwtgate_requests_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Allowed,
    Public,
    Refused,
    UpstreamError,
    /// The client went away before the answer's head (status 499, as nginx logs it).
    Abandoned,
}

impl Outcome {
    const ALL: [Outcome; 5] =
        [Outcome::Allowed, Outcome::Public, Outcome::Refused, Outcome::UpstreamError, Outcome::Abandoned];

    pub fn label(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Public => "public",
            Outcome::Refused => "refused",
            Outcome::UpstreamError => "upstream_error",
            Outcome::Abandoned => "abandoned",
        }
    }
}

/// Declares [`Reason`] from one list, so its variants, their labels and
/// the counters indexed by them cannot drift apart: a new refusal reason is
/// a new line here, and the exhaustive matches that map failures onto it
/// (`AuthFailure::reason`, `ScopeFailure::reason`) fail to compile until
/// it has one.
macro_rules! reasons {
    ($($variant:ident => $label:literal,)*) => {
        /// The `reason` label of `jwtgate_auth_failures_total`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Reason {
            $($variant,)*
        }

        impl Reason {
            pub const ALL: &[Reason] = &[$(Reason::$variant,)*];

            pub fn label(self) -> &'static str {
                match self {
                    $(Reason::$variant => $label,)*
                }
            }
        }
    };
}

reasons! {
    MissingToken => "missing_token",
    InvalidRequest => "invalid_request",
    TokenTooLarge => "token_too_large",
    MalformedToken => "malformed_token",
    UnsupportedCrit => "unsupported_crit",
    AlgNotAllowed => "alg_not_allowed",
    WrongIssuer => "wrong_issuer",
    KeysUnavailable => "keys_unavailable",
    TenantLimit => "tenant_limit",
    UnknownKid => "unknown_kid",
    KeyMismatch => "key_mismatch",
    BadSignature => "bad_signature",
    MissingExp => "missing_exp",
    BadTimeClaim => "bad_time_claim",
    Expired => "expired",
    NotYetValid => "not_yet_valid",
    WrongAudience => "wrong_audience",
    WrongType => "wrong_type",
    LifetimeTooLong => "lifetime_too_long",
    MissingClaim => "missing_claim",
    WrongLocation => "wrong_location",
    NotSpiffeId => "not_spiffe_id",
    SpiffeIdNotAllowed => "spiffe_id_not_allowed",
    RuleDenied => "rule_denied",
    DpopProof => "invalid_dpop_proof",
    DpopReplayed => "dpop_replayed",
    DpopBinding => "dpop_binding",
    DpopNonce => "use_dpop_nonce",
    CertNotPresented => "cert_not_presented",
    CertMismatch => "cert_mismatch",
    CertBindingRequired => "cert_binding_required",
    InsufficientScope => "insufficient_scope",
    ClaimsMismatch => "claims_mismatch",
    IssuerNotAllowed => "issuer_not_allowed",
    InactiveToken => "inactive_token",
    IntrospectionUnavailable => "introspection_unavailable",
    BoundToken => "bound_token",
}

/// Auth failures and JWKS fetches of one issuer.
#[derive(Debug)]
pub struct IssuerCounters {
    /// Indexed by [`Reason`].
    failures: [AtomicU64; Reason::ALL.len()],
    fetch_ok: AtomicU64,
    fetch_not_modified: AtomicU64,
    fetch_error: AtomicU64,
}

/// The `result` of one JWKS fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchResult {
    Ok,
    NotModified,
    Error,
}

impl Default for IssuerCounters {
    fn default() -> Self {
        IssuerCounters {
            failures: std::array::from_fn(|_| AtomicU64::new(0)),
            fetch_ok: AtomicU64::new(0),
            fetch_not_modified: AtomicU64::new(0),
            fetch_error: AtomicU64::new(0),
        }
    }
}

impl IssuerCounters {
    pub fn auth_failure(&self, reason: Reason) {
        self.failures[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn fetch(&self, result: FetchResult) {
        let counter = match result {
            FetchResult::Ok => &self.fetch_ok,
            FetchResult::NotModified => &self.fetch_not_modified,
            FetchResult::Error => &self.fetch_error,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Process-wide series.
#[derive(Debug)]
pub struct Metrics {
    /// Every route label a configuration has had, so a reload that keeps a
    /// route keeps its counters (locked only while a gateway is built).
    routes: Mutex<Vec<Arc<RouteSeries>>>,
    /// Requests answered before any route was chosen (a malformed path, the
    /// resource metadata): `route=""`.
    unrouted: Arc<RouteSeries>,
    /// Failures with no issuer to name (no token, or an unknown `iss`).
    unattributed: IssuerCounters,
    in_flight: AtomicI64,
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
    cache_evictions: AtomicU64,
    /// Upgraded (WebSocket) sessions open now; each also keeps its
    /// connection's place under `server.max_connections`.
    websocket_sessions: Arc<AtomicU64>,
    /// Every `[[rate_limits]]` a configuration has had, by name (as `routes`).
    rate_limits: Mutex<Vec<Arc<RateLimitSeries>>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            routes: Mutex::new(Vec::new()),
            unrouted: Arc::new(RouteSeries::new("")),
            unattributed: IssuerCounters::default(),
            in_flight: AtomicI64::new(0),
            cache_hits: AtomicU64::new(0),
            cache_misses: AtomicU64::new(0),
            cache_evictions: AtomicU64::new(0),
            websocket_sessions: Arc::default(),
            rate_limits: Mutex::default(),
        }
    }
}

impl Metrics {
    /// The series of the route labelled `label`: the one it had before
    /// (a reload keeps its counters), else a new one.
    pub fn route_series(&self, label: &str) -> Arc<RouteSeries> {
        let mut routes = self.routes.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(series) = routes.iter().find(|s| s.label() == label) {
            return Arc::clone(series);
        }
        let series = Arc::new(RouteSeries::new(label));
        routes.push(Arc::clone(&series));
        series
    }

    /// The series of the rate limit named `name`: the one it had before, else a new one.
    pub fn rate_limit_series(&self, name: &str) -> Arc<RateLimitSeries> {
        let mut limits = self.rate_limits.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(series) = limits.iter().find(|s| s.label() == name) {
            return Arc::clone(series);
        }
        let series = Arc::new(RateLimitSeries::new(name));
        limits.push(Arc::clone(&series));
        series
    }

    /// The series of requests answered before a route was chosen.
    pub fn unrouted(&self) -> &Arc<RouteSeries> {
        &self.unrouted
    }

    /// An auth failure; `issuer` when the token named a configured one.
    pub fn auth_failure(&self, issuer: Option<&IssuerCounters>, reason: Reason) {
        issuer.unwrap_or(&self.unattributed).auth_failure(reason);
    }

    pub fn token_cache_lookup(&self, hit: bool) {
        let counter = if hit { &self.cache_hits } else { &self.cache_misses };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn token_cache_eviction(&self) {
        self.cache_evictions.fetch_add(1, Ordering::Relaxed);
    }

    /// The count of open upgraded sessions, for the tasks that splice them.
    pub fn websocket_sessions(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.websocket_sessions)
    }

    /// Counts a request in flight until the guard is dropped.
    pub fn in_flight(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(Arc::clone(self))
    }

    /// The Prometheus text exposition of everything, for `GET /metrics`:
    /// the series of `routes` (the current configuration's) and `issuers`.
    pub fn render(self: &Arc<Self>, issuers: Vec<Arc<dyn KeyFacts>>, routes: &[Arc<RouteSeries>]) -> String {
        let mut distinct: Vec<Arc<RouteSeries>> = vec![Arc::clone(&self.unrouted)];
        for series in routes {
            if !distinct.iter().any(|s| Arc::ptr_eq(s, series)) {
                distinct.push(Arc::clone(series));
            }
        }
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Scrape { metrics: Arc::clone(self), issuers, routes: distinct }));
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &registry);
        text
    }
}

pub struct InFlight(Arc<Metrics>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What a scrape reads of one issuer's keys. `keys::IssuerKeys` implements
/// it, so metrics need not know the key store (the dependency points from
/// keys to metrics only).
pub trait KeyFacts: std::fmt::Debug + Send + Sync {
    fn issuer(&self) -> &str;
    fn counters(&self) -> &IssuerCounters;
    /// Usable keys now.
    fn key_count(&self) -> usize;
    /// When the keys were last fetched or confirmed unchanged.
    fn last_success(&self) -> Option<SystemTime>;
    /// Tenants holding their own keys, for an issuer with keys per tenant.
    fn tenants(&self) -> Option<usize> {
        None
    }
}

/// One scrape's view: reads the atomics, hands the numbers to the encoder.
#[derive(Debug)]
struct Scrape {
    metrics: Arc<Metrics>,
    issuers: Vec<Arc<dyn KeyFacts>>,
    routes: Vec<Arc<RouteSeries>>,
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let m = &self.metrics;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);

        let mut family = encoder.encode_descriptor(
            "jwtgate_requests",
            "Requests answered, by route, method, outcome and status",
            None,
            MetricType::Counter,
        )?;
        for route in &self.routes {
            for (method, outcome, status, count) in route.requests.series() {
                let status = status.to_string();
                let labels =
                    [("route", route.label()), ("method", method), ("outcome", outcome), ("status", status.as_str())];
                counter(&mut family.encode_family(&labels)?, count)?;
            }
            let overflow = load(&route.requests.overflow);
            if overflow > 0 {
                let labels = [("route", route.label()), ("method", "other"), ("outcome", "other"), ("status", "other")];
                counter(&mut family.encode_family(&labels)?, overflow)?;
            }
        }

        route_histograms(
            &mut encoder,
            "jwtgate_request_duration_seconds",
            "Time from a request's head to the end of its answer, by route",
            &self.routes,
            |route| &route.request_duration,
        )?;
        route_histograms(
            &mut encoder,
            "jwtgate_upstream_duration_seconds",
            "Time from sending a request upstream to its response head, by route",
            &self.routes,
            |route| &route.upstream_duration,
        )?;

        let mut family = encoder.encode_descriptor(
            "jwtgate_auth_failures",
            "Requests refused for authentication or authorisation, by issuer and reason",
            None,
            MetricType::Counter,
        )?;
        let attributed = self.issuers.iter().map(|k| (k.issuer(), k.counters()));
        for (issuer, counters) in std::iter::once(("", &m.unattributed)).chain(attributed) {
            for (reason, value) in Reason::ALL.iter().zip(&counters.failures) {
                let count = load(value);
                if count > 0 {
                    counter(&mut family.encode_family(&[("issuer", issuer), ("reason", reason.label())])?, count)?;
                }
            }
        }

        let mut family = encoder.encode_descriptor(
            "jwtgate_jwks_fetches",
            "JWKS fetches, by issuer and result",
            None,
            MetricType::Counter,
        )?;
        for keys in &self.issuers {
            let c = keys.counters();
            for (result, value) in
                [("ok", &c.fetch_ok), ("not_modified", &c.fetch_not_modified), ("error", &c.fetch_error)]
            {
                counter(&mut family.encode_family(&[("issuer", keys.issuer()), ("result", result)])?, load(value))?;
            }
        }

        let mut family =
            encoder.encode_descriptor("jwtgate_jwks_keys", "Usable keys per issuer", None, MetricType::Gauge)?;
        for keys in &self.issuers {
            let count = keys.key_count();
            family.encode_family(&[("issuer", keys.issuer())])?.encode_gauge(&(count as u64))?;
        }

        let mut family = encoder.encode_descriptor(
            "jwtgate_issuer_tenants",
            "Tenants holding their own key set, for issuers with keys per tenant",
            None,
            MetricType::Gauge,
        )?;
        for keys in &self.issuers {
            let Some(tenants) = keys.tenants() else { continue };
            family.encode_family(&[("issuer", keys.issuer())])?.encode_gauge(&(tenants as u64))?;
        }

        let mut family = encoder.encode_descriptor(
            "jwtgate_jwks_age_seconds",
            "Seconds since the issuer's keys were last fetched or confirmed unchanged",
            None,
            MetricType::Gauge,
        )?;
        for keys in &self.issuers {
            let Some(at) = keys.last_success() else { continue };
            let age = SystemTime::now().duration_since(at).unwrap_or_default().as_secs_f64();
            family.encode_family(&[("issuer", keys.issuer())])?.encode_gauge(&age)?;
        }

        let mut family = encoder.encode_descriptor(
            "jwtgate_token_cache_lookups",
            "Verified-token cache lookups, by result",
            None,
            MetricType::Counter,
        )?;
        for (result, value) in [("hit", &m.cache_hits), ("miss", &m.cache_misses)] {
            counter(&mut family.encode_family(&[("result", result)])?, load(value))?;
        }
        let mut family = encoder.encode_descriptor(
            "jwtgate_token_cache_evictions",
            "Verified tokens evicted from the cache to make room",
            None,
            MetricType::Counter,
        )?;
        counter(&mut family, load(&m.cache_evictions))?;

        let mut family = encoder.encode_descriptor(
            "jwtgate_in_flight_requests",
            "Requests being handled right now",
            None,
            MetricType::Gauge,
        )?;
        family.encode_gauge(&m.in_flight.load(Ordering::Relaxed))?;

        let mut family = encoder.encode_descriptor(
            "jwtgate_websocket_sessions",
            "Upgraded (WebSocket) sessions open right now",
            None,
            MetricType::Gauge,
        )?;
        family.encode_gauge(&(m.websocket_sessions.load(Ordering::Relaxed) as i64))?;
        let limits = m.rate_limits.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        rate_limit::encode(&limits, &mut encoder)?;

        let mut family = encoder.encode_descriptor(
            "jwtgate_build_info",
            "The running build: version and commit",
            None,
            MetricType::Gauge,
        )?;
        family.encode_family(&[("version", BUILD_VERSION), ("commit", BUILD_COMMIT)])?.encode_gauge(&1i64)?;

        let process = process::Process::read();
        let gauges = [
            ("process_resident_memory_bytes", "Resident memory size in bytes", process.resident_memory_bytes),
            ("process_open_fds", "Open file descriptors", process.open_fds),
            ("process_max_fds", "The limit on open file descriptors", process.max_fds),
        ];
        for (name, help, value) in gauges {
            if let Some(value) = value {
                encoder.encode_descriptor(name, help, None, MetricType::Gauge)?.encode_gauge(&(value as i64))?;
            }
        }
        if let Some(seconds) = process.start_time_seconds {
            let help = "Start time of the process since the Unix epoch, in seconds";
            encoder
                .encode_descriptor("process_start_time_seconds", help, None, MetricType::Gauge)?
                .encode_gauge(&seconds)?;
        }
        if let Some(seconds) = process.cpu_seconds {
            let help = "User and system CPU time spent, in seconds";
            let mut family = encoder.encode_descriptor("process_cpu_seconds", help, None, MetricType::Counter)?;
            family.encode_counter::<prometheus_client::encoding::NoLabelSet, _, u64>(&seconds, None)?;
        }
        Ok(())
    }
}

/// A histogram family with a series for each route that has observed something.
fn route_histograms(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    routes: &[Arc<RouteSeries>],
    pick: fn(&RouteSeries) -> &series::Histogram,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
    for route in routes.iter().filter(|r| pick(r).count.load(Ordering::Relaxed) > 0) {
        pick(route).encode(family.encode_family(&[("route", route.label())])?)?;
    }
    Ok(())
}

fn counter(encoder: &mut prometheus_client::encoding::MetricEncoder<'_>, value: u64) -> Result<(), std::fmt::Error> {
    encoder.encode_counter::<prometheus_client::encoding::NoLabelSet, _, u64>(&value, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;
    use std::time::Duration;

    #[test]
    fn renders_prometheus_text() {
        let metrics = Arc::new(Metrics::default());
        let orders = metrics.route_series("/orders");
        orders.request(MethodLabel::of(&Method::GET), Outcome::Allowed, 200, Duration::from_micros(900));
        orders.request(MethodLabel::of(&Method::GET), Outcome::Allowed, 200, Duration::from_millis(3));
        orders.request(
            MethodLabel::of(&Method::from_bytes(b"PROPFIND").unwrap()),
            Outcome::Refused,
            401,
            Duration::from_micros(40),
        );
        orders.upstream_duration(Duration::from_millis(3));
        metrics.unrouted().request(MethodLabel::of(&Method::GET), Outcome::Refused, 400, Duration::from_micros(20));
        metrics.auth_failure(None, Reason::MissingToken);
        let _guard = metrics.in_flight();
        let text = metrics.render(Vec::new(), &[Arc::clone(&orders), Arc::clone(&orders)]);
        let lines = [
            "# TYPE jwtgate_requests_total counter",
            "jwtgate_requests_total{route=\"/orders\",method=\"GET\",outcome=\"allowed\",status=\"200\"} 2",
            "jwtgate_requests_total{route=\"/orders\",method=\"other\",outcome=\"refused\",status=\"401\"} 1",
            "jwtgate_requests_total{route=\"\",method=\"GET\",outcome=\"refused\",status=\"400\"} 1",
            "jwtgate_request_duration_seconds_bucket{route=\"/orders\",le=\"0.0001\"} 1",
            "jwtgate_request_duration_seconds_bucket{route=\"/orders\",le=\"0.001\"} 2",
            "jwtgate_request_duration_seconds_bucket{route=\"/orders\",le=\"+Inf\"} 3",
            "jwtgate_request_duration_seconds_count{route=\"/orders\"} 3",
            "jwtgate_upstream_duration_seconds_bucket{route=\"/orders\",le=\"0.0025\"} 0",
            "jwtgate_upstream_duration_seconds_bucket{route=\"/orders\",le=\"0.005\"} 1",
            "jwtgate_upstream_duration_seconds_count{route=\"/orders\"} 1",
            "jwtgate_auth_failures_total{issuer=\"\",reason=\"missing_token\"} 1",
            "jwtgate_in_flight_requests 1",
            "# TYPE process_cpu_seconds_total counter",
            "# TYPE process_resident_memory_bytes gauge",
            "# TYPE process_open_fds gauge",
            "# TYPE process_start_time_seconds gauge",
        ];
        for line in lines {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
        let build = format!("jwtgate_build_info{{version=\"{BUILD_VERSION}\",commit=\"{BUILD_COMMIT}\"}} 1");
        assert!(text.contains(&build), "{build} missing from:\n{text}");
        // A route given twice (two routes, one label) is one set of series.
        assert_eq!(text.matches("jwtgate_request_duration_seconds_count{route=\"/orders\"}").count(), 1, "{text}");
        // A route that served nothing has no upstream histogram.
        assert!(!text.contains("jwtgate_upstream_duration_seconds_count{route=\"\"}"), "{text}");
    }

    #[test]
    fn a_reload_that_keeps_a_route_keeps_its_series() {
        let metrics = Metrics::default();
        let before = metrics.route_series("/a");
        assert!(Arc::ptr_eq(&before, &metrics.route_series("/a")));
        assert!(!Arc::ptr_eq(&before, &metrics.route_series("/b")));
    }

    /// Issue 18: four reasons were counted as `other` because the table was
    /// looked up by string. Every reason is now its own series.
    #[test]
    fn every_refusal_reason_is_exported_under_its_own_label() {
        let metrics = Arc::new(Metrics::default());
        for (i, reason) in Reason::ALL.iter().enumerate() {
            assert_eq!(*reason as usize, i, "Reason::ALL is in declaration order");
            for _ in 0..=i {
                metrics.auth_failure(None, *reason);
            }
        }
        let text = metrics.render(Vec::new(), &[]);
        let mut labels = std::collections::HashSet::new();
        for (i, reason) in Reason::ALL.iter().enumerate() {
            let label = reason.label();
            assert!(labels.insert(label), "{label} is used twice");
            assert!(label.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "{label}");
            let line = format!("jwtgate_auth_failures_total{{issuer=\"\",reason=\"{label}\"}} {}", i + 1);
            assert!(text.contains(&line), "{line} missing from:\n{text}");
        }
        assert!(!text.contains("reason=\"other\""), "{text}");
    }
}
