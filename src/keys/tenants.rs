//! Key sets per tenant: an issuer like `https://sso.example.com/realms/{tenant}`
//! whose tenants each publish their own keys (`{tenant}` in `jwks_url`, or
//! each tenant's own discovery document). Every tenant gets an
//! [`IssuerKeys`] of its own, so a token of one tenant is verified only by
//! that tenant's keys.
//!
//! Listed tenants (`tenants = ["a", "b"]`) are loaded at start like any
//! issuer. With `tenants = ["*"]` a tenant's keys are fetched on its first
//! token: that request waits for the fetch. The tenant name comes from a
//! token nobody has verified yet, so admitting tenants is guarded: the name
//! must be one that cannot move the fetch elsewhere ([`fetchable_tenant`]),
//! one first fetch runs at a time (tokens naming made-up tenants cost the
//! identity provider one request at a time, never a burst), a failed tenant
//! is not asked again within `min_refresh_interval`, only tenants whose
//! keys loaded are kept, and at most `max_tenants` of them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use tokio::sync::Mutex;
use tokio::time::Instant;
use tracing::{info, warn};

use super::fetch::Fetcher;
use super::store::IssuerKeys;
use crate::config::{IssuerConfig, Tenants, fetchable_tenant};
use crate::metrics::{IssuerCounters, KeyFacts};

/// Why a tenant's store cannot be had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TenantRefusal {
    /// Not a tenant this issuer serves (unlisted, or a name no key URL may hold).
    NotServed,
    /// Its keys did not load (now, or within `min_refresh_interval`).
    Unavailable,
    /// An open issuer holds `max_tenants` key sets already.
    Limit,
}

/// The key stores of one templated issuer, one per tenant.
pub struct TenantKeys {
    /// The issuer as configured, `{tenant}` and all.
    template: IssuerConfig,
    fetcher: Fetcher,
    /// Shared by every tenant's store: metrics name the template, so a
    /// thousand tenants make one series, not a thousand.
    counters: Arc<IssuerCounters>,
    /// `tenants = ["*"]`: admitted on first use, up to `max_tenants`.
    open: bool,
    /// Read lock-free on every request; replaced whole when a tenant joins.
    stores: ArcSwap<HashMap<Box<str>, Arc<IssuerKeys>>>,
    /// Held while a new tenant's first fetch runs; maps each tenant whose
    /// first fetch failed to when, so it is not asked again too soon.
    admitting: Mutex<HashMap<Box<str>, Instant>>,
}

impl std::fmt::Debug for TenantKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantKeys").field("issuer", &self.template.issuer).field("tenants", &self.tenants()).finish()
    }
}

impl TenantKeys {
    /// The stores of a templated issuer with keys per tenant; a listed
    /// tenant's store starts fetching now.
    pub fn new(config: &IssuerConfig, fetcher: Fetcher) -> TenantKeys {
        let counters = Arc::new(IssuerCounters::default());
        let listed = match &config.tenants {
            Some(Tenants::Only(list)) => list.as_slice(),
            _ => &[],
        };
        let stores = listed
            .iter()
            .map(|tenant| {
                let store = Arc::new(IssuerKeys::sharing(&config.for_tenant(tenant), fetcher.clone(), &counters));
                IssuerKeys::spawn_refresher(&store);
                (Box::from(tenant.as_str()), store)
            })
            .collect();
        TenantKeys {
            template: config.clone(),
            fetcher,
            counters,
            open: config.tenants == Some(Tenants::Any),
            stores: ArcSwap::from_pointee(stores),
            admitting: Mutex::new(HashMap::new()),
        }
    }

    pub fn config(&self) -> &IssuerConfig {
        &self.template
    }

    pub fn counters(&self) -> &IssuerCounters {
        &self.counters
    }

    pub fn counters_arc(&self) -> Arc<IssuerCounters> {
        Arc::clone(&self.counters)
    }

    /// Tenants whose store exists now.
    pub fn tenants(&self) -> usize {
        self.stores.load().len()
    }

    /// The store of `tenant`, if it has one now.
    pub fn store(&self, tenant: &str) -> Option<Arc<IssuerKeys>> {
        self.stores.load().get(tenant).cloned()
    }

    /// Every tenant store there is now.
    pub fn stores(&self) -> Vec<Arc<IssuerKeys>> {
        self.stores.load().values().cloned().collect()
    }

    /// Ready when every listed tenant has keys; an open issuer has nothing
    /// to wait for (its tenants load on their first token).
    pub fn has_keys(&self) -> bool {
        self.open || self.stores.load().values().all(|store| store.has_keys())
    }

    /// The store of `tenant` (a tenant `find_issuer` accepted), admitting
    /// it first when the issuer is open and it is new.
    pub async fn keys_for(&self, tenant: &str) -> Result<Arc<IssuerKeys>, TenantRefusal> {
        if let Some(store) = self.stores.load().get(tenant) {
            return Ok(Arc::clone(store));
        }
        if !self.open || !fetchable_tenant(tenant) {
            return Err(TenantRefusal::NotServed);
        }
        // Boxed: rare, and inline it would enlarge every request's future.
        Box::pin(self.admit(tenant)).await
    }

    async fn admit(&self, tenant: &str) -> Result<Arc<IssuerKeys>, TenantRefusal> {
        let mut failed = self.admitting.lock().await;
        let current = self.stores.load_full();
        if let Some(store) = current.get(tenant) {
            return Ok(Arc::clone(store));
        }
        let now = Instant::now();
        let quiet = self.template.min_refresh_interval;
        failed.retain(|_, at| now.duration_since(*at) < quiet);
        if failed.contains_key(tenant) {
            return Err(TenantRefusal::Unavailable);
        }
        if current.len() >= self.template.max_tenants {
            warn!(issuer = %self.template.issuer, tenant, max_tenants = self.template.max_tenants,
                "a new tenant is refused: the issuer holds max_tenants key sets already");
            return Err(TenantRefusal::Limit);
        }
        let config = self.template.for_tenant(tenant);
        let store = Arc::new(IssuerKeys::sharing(&config, self.fetcher.clone(), &self.counters));
        match store.fetch().await {
            Ok(_) => {
                let mut next = HashMap::clone(&current);
                next.insert(Box::from(tenant), Arc::clone(&store));
                self.stores.store(Arc::new(next));
                info!(issuer = %config.issuer, keys = store.key_count(), "loaded the signing keys of a new tenant");
                IssuerKeys::spawn_refresher_after(&store, store.next_refresh().await);
                Ok(store)
            }
            Err(error) => {
                // Bounded like the stores: past it, a failing tenant is
                // simply asked again (still one fetch at a time).
                if failed.len() < self.template.max_tenants {
                    failed.insert(Box::from(tenant), now);
                }
                warn!(issuer = %config.issuer, %error, "cannot load a new tenant's signing keys");
                Err(TenantRefusal::Unavailable)
            }
        }
    }
}

impl KeyFacts for TenantKeys {
    fn issuer(&self) -> &str {
        &self.template.issuer
    }

    fn counters(&self) -> &IssuerCounters {
        &self.counters
    }

    fn key_count(&self) -> usize {
        self.stores.load().values().map(|store| store.key_count()).sum()
    }

    /// The oldest tenant's: an alert on key age fires when any tenant's keys go stale.
    fn last_success(&self) -> Option<SystemTime> {
        self.stores.load().values().filter_map(|store| store.last_success()).min()
    }

    fn tenants(&self) -> Option<usize> {
        Some(TenantKeys::tenants(self))
    }
}
