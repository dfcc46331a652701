//! Where an issuer's keys are held: one store for all its tokens, or one
//! per tenant (see [`super::tenants`]).

use std::sync::Arc;

use super::fetch::Fetcher;
use super::store::IssuerKeys;
use super::tenants::TenantKeys;
use crate::config::IssuerConfig;
use crate::metrics::{IssuerCounters, KeyFacts};

#[derive(Debug, Clone)]
pub enum IssuerStore {
    Shared(Arc<IssuerKeys>),
    PerTenant(Arc<TenantKeys>),
}

impl IssuerStore {
    /// The store `config` asks for, fetching already (a listed tenant's
    /// too; an open issuer's tenants wait for their first token).
    pub fn start(config: &IssuerConfig, fetcher: Fetcher) -> IssuerStore {
        if config.keys_per_tenant() {
            return IssuerStore::PerTenant(Arc::new(TenantKeys::new(config, fetcher)));
        }
        let store = Arc::new(IssuerKeys::new(config, fetcher));
        IssuerKeys::spawn_refresher(&store);
        IssuerStore::Shared(store)
    }

    /// The issuer as configured (`{tenant}` and all).
    pub fn issuer(&self) -> &str {
        match self {
            IssuerStore::Shared(keys) => keys.issuer(),
            IssuerStore::PerTenant(tenants) => &tenants.config().issuer,
        }
    }

    /// Ready to serve: keys loaded (every listed tenant's).
    pub fn has_keys(&self) -> bool {
        match self {
            IssuerStore::Shared(keys) => keys.has_keys(),
            IssuerStore::PerTenant(tenants) => tenants.has_keys(),
        }
    }

    /// Whether a reloaded configuration can keep this store, keys and all.
    pub fn same_source(&self, config: &IssuerConfig) -> bool {
        match self {
            IssuerStore::Shared(keys) => !config.keys_per_tenant() && keys.same_source(config),
            IssuerStore::PerTenant(tenants) => {
                let kept = tenants.config();
                config.keys_per_tenant()
                    && IssuerKeys::same_fetching(kept, config)
                    && kept.tenants == config.tenants
                    && kept.max_tenants == config.max_tenants
            }
        }
    }

    /// Whether both are the very same store (a reload kept it).
    pub fn same_store(&self, other: &IssuerStore) -> bool {
        match (self, other) {
            (IssuerStore::Shared(a), IssuerStore::Shared(b)) => Arc::ptr_eq(a, b),
            (IssuerStore::PerTenant(a), IssuerStore::PerTenant(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }

    pub fn counters(&self) -> &IssuerCounters {
        match self {
            IssuerStore::Shared(keys) => keys.counters(),
            IssuerStore::PerTenant(tenants) => tenants.counters(),
        }
    }

    /// Its facts for the metrics collector.
    pub fn facts(&self) -> Arc<dyn KeyFacts> {
        match self {
            IssuerStore::Shared(keys) => Arc::clone(keys) as Arc<dyn KeyFacts>,
            IssuerStore::PerTenant(tenants) => Arc::clone(tenants) as Arc<dyn KeyFacts>,
        }
    }
}
