//! Signing keys: one immutable [`KeySet`] snapshot per issuer ([`set`]),
//! fetched from JWKS endpoints or files ([`fetch`]) and kept fresh by a
//! background refresher ([`store`]); an issuer whose tenants publish their
//! own keys has a store per tenant ([`tenants`], [`IssuerStore`]).
//! Requests only ever read snapshots.

pub mod fetch;
mod issuer;
pub mod set;
pub mod store;
mod tenants;

pub use fetch::{FetchError, Fetcher, FetcherError};
pub use issuer::IssuerStore;
pub use set::{KeyBinding, KeyKind, KeySet, VerifyingKey};
pub use store::{FetchOutcome, IssuerKeys, Snapshot};
pub use tenants::{TenantKeys, TenantRefusal};
