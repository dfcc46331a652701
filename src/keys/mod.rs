//! Signing keys: one immutable [`KeySet`] snapshot per issuer ([`set`]),
//! fetched from JWKS endpoints or files ([`fetch`]) and kept fresh by a
//! background refresher ([`store`]). Requests only ever read snapshots.

pub mod fetch;
pub mod set;
pub mod store;

use std::sync::Arc;

use tokio::task::JoinHandle;

pub use fetch::{FetchError, Fetcher};
pub use set::{KeyKind, KeySet, VerifyingKey};
pub use store::{FetchOutcome, IssuerKeys, Snapshot};

/// The running refreshers of a set of issuers; dropping it stops them.
pub struct Refreshers(Vec<JoinHandle<()>>);

impl Refreshers {
    pub fn spawn(issuers: &[Arc<IssuerKeys>]) -> Refreshers {
        Refreshers(issuers.iter().map(|k| tokio::spawn(Arc::clone(k).run_refresher())).collect())
    }
}

impl Drop for Refreshers {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}
