//! What this build is: the package version and the commit it was built
//! from (`build.rs` finds the commit: `$JWTGATE_COMMIT`, else git, else
//! `unknown`). `--version` shows both; so can a metric.

/// The package version, `X.Y.Z`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The commit, 7 hex digits from git (or as the builder gave it), or `unknown`.
pub const COMMIT: &str = env!("JWTGATE_COMMIT");

/// `X.Y.Z (COMMIT)`: what `jwtgate --version` prints after the name.
pub const LONG: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("JWTGATE_COMMIT"), ")");
