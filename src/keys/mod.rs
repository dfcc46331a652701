//! Signing keys: one immutable [`KeySet`] snapshot per issuer ([`set`]),
//! fetched from JWKS endpoints or files ([`fetch`]) and kept fresh by a
//! background refresher ([`store`]). Requests only ever read snapshots.

pub mod fetch;
pub mod set;
pub mod store;

pub use fetch::{FetchError, Fetcher, FetcherError};
pub use set::{KeyBinding, KeyKind, KeySet, VerifyingKey};
pub use store::{FetchOutcome, IssuerKeys, Snapshot};
