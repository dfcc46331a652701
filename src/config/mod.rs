//! Configuration: the TOML file is read into raw serde structs
//! ([`raw`]), `${NAME}` references are resolved ([`interpolate`]), and one
//! validation step ([`validate`], a module per TOML table) turns them into
//! the typed [`Config`] ([`types`]) the rest of the gateway uses, reporting
//! every problem at once. What a key left out means is in [`defaults`].

mod assertion;
pub mod cel;
pub mod defaults;
pub mod hosts;
mod interpolate;
mod introspection;
mod rate_limit;
mod raw;
mod source;
pub mod spiffe;
mod types;
mod validate;
mod values;
mod wording;

pub use assertion::{AssertionAlg, AssertionConfig};
pub use introspection::{IntrospectMode, IntrospectionAuth, IntrospectionConfig, Secret};
pub use rate_limit::{OnStoreError, RateLimitConfig, RateLimitKey, RateLimitStoreConfig};
pub use source::Position;
pub use types::{
    AuthMode, CacheConfig, ClientAuth, ClientIdentity, Config, CorsConfig, DpopMode, Edge, ForwardAuthConfig,
    HeadersConfig, IssuerConfig, JwksLimits, JwksSource, LimitsConfig, MethodOverride, Protocols, PublicUrl,
    ResourceMetadataConfig, RouteConfig, ServerConfig, ServerTlsConfig, TENANT, Tenants, TracingConfig,
    TracingProtocol, UpstreamConfig, UpstreamProtocol, fetchable_tenant,
};
pub use validate::is_loopback;
pub use values::{
    ClaimPath, DEFAULT_MAX_JSON_DEPTH, SUPPORTED_ALGORITHMS, TokenLocation, WELL_KNOWN_RESOURCE_METADATA,
};

use std::fmt;
use std::path::Path;

/// One thing wrong with the configuration, named by its key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub message: String,
    /// Where in the file; found from `key` when the file is read.
    pub at: Option<Position>,
}

impl Problem {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self { key: key.into(), message: message.into(), at: None }
    }
}

/// Why a configuration could not be loaded. Its `Display` is the message an
/// operator sees: one line per problem, `FILE:LINE:COL: key: problem — fix`,
/// the form editors and CI annotations jump to.
#[derive(Debug)]
pub struct ConfigError {
    pub file: String,
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            match problem.at {
                Some(at) => write!(f, "{}:{}:{}: ", self.file, at.line, at.column)?,
                None => write!(f, "{}: ", self.file)?,
            }
            if !problem.key.is_empty() {
                write!(f, "{}: ", problem.key)?;
            }
            f.write_str(&problem.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads and validates the file at `path`. Relative `jwks_file` paths are
    /// resolved against the file's directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Self::load_checked(path, |_| Vec::new())
    }

    /// [`Config::load`], then `more` problems found by the caller (files
    /// that higher layers read, such as TLS certificates), placed in the
    /// file like the rest. `more` needs a valid configuration, so it runs
    /// once everything else is right.
    pub fn load_checked(path: &Path, more: impl FnOnce(&Config) -> Vec<Problem>) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: file.clone(),
            problems: vec![Problem::new("", format!("cannot read the file: {e}"))],
        })?;
        let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Self::parse_checked(&text, &file, &base_dir, &|name| std::env::var(name).ok(), more)
    }

    /// Parses configuration text. `file` names it in errors; `lookup`
    /// resolves `${NAME}` references.
    pub fn parse(
        text: &str,
        file: &str,
        base_dir: &Path,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        Self::parse_checked(text, file, base_dir, lookup, |_| Vec::new())
    }

    /// Every problem is found in one run: all syntax errors; else every
    /// unknown key and wrong type (each removed, then the rest read again),
    /// every placeholder, and every semantic problem of what remains.
    fn parse_checked(
        text: &str,
        file: &str,
        base_dir: &Path,
        lookup: &dyn Fn(&str) -> Option<String>,
        more: impl FnOnce(&Config) -> Vec<Problem>,
    ) -> Result<Config, ConfigError> {
        let fail = |problems| ConfigError { file: file.to_string(), problems };
        let positions = source::KeyPositions::index(text).map_err(fail)?;
        let mut table: toml::Table = toml::from_str(text).map_err(|e| {
            fail(vec![Problem::new("", format!("invalid TOML: {}", e.message().lines().next().unwrap_or("")))])
        })?;
        let mut problems = Vec::new();
        interpolate::interpolate_table(&mut table, "", lookup, &mut problems);
        source::placeholders(&mut table, &mut problems);
        let (raw, structural) = read_raw(table);
        problems.extend(structural);
        // A bad list item removed its whole list (see `remove`): the list counts as reported.
        let reported: Vec<String> = problems.iter().map(|p| wording::without_index(&p.key).to_string()).collect();
        let config = match raw.map(|raw| validate::validate(raw, base_dir)) {
            Some(Ok(config)) => Some(config),
            Some(Err(semantic)) => {
                // A key already reported (unreadable, so removed; or a
                // placeholder) is not reported again as missing or malformed.
                let under = |key: &str, parent: &str| {
                    key == parent || key.starts_with(&format!("{parent}.")) || key.starts_with(&format!("{parent}["))
                };
                problems.extend(semantic.into_iter().filter(|p| !reported.iter().any(|r| under(&p.key, r))));
                None
            }
            None => None,
        };
        if let (Some(config), true) = (&config, problems.is_empty()) {
            problems.extend(more(config));
        }
        for problem in &mut problems {
            problem.at = problem.at.or_else(|| Some(positions.find(&problem.key)));
        }
        problems.sort_by_key(|p| p.at.map(|at| (at.line, at.column)));
        match config {
            Some(config) if problems.is_empty() => Ok(config),
            _ => Err(fail(problems)),
        }
    }
}

/// Reads the raw structs, removing each unknown key or value of the wrong
/// type and reading again, so one run names them all. `None` when what is
/// left still cannot be read.
fn read_raw(table: toml::Table) -> (Option<raw::RawConfig>, Vec<Problem>) {
    let mut root = toml::Value::Table(table);
    let mut problems: Vec<Problem> = Vec::new();
    // Each round removes one key, so this bounds the rounds by the file.
    for _ in 0..1000 {
        match serde_path_to_error::deserialize::<_, raw::RawConfig>(root.clone()) {
            Ok(raw) => return (Some(raw), problems),
            Err(error) => {
                let path = error.path().clone();
                let key = path.to_string();
                let key = if key == "." { String::new() } else { key };
                let message = wording::structural(&key, error.into_inner().message());
                problems.push(Problem::new(key, message));
                if !remove(&mut root, &path) {
                    return (None, problems);
                }
            }
        }
    }
    (None, problems)
}

/// Removes the key at `path` (for a list item, the whole list).
fn remove(root: &mut toml::Value, path: &serde_path_to_error::Path) -> bool {
    use serde_path_to_error::Segment;
    let mut segments: Vec<&Segment> = path.iter().collect();
    while matches!(segments.last(), Some(Segment::Seq { .. })) {
        segments.pop();
    }
    let Some((Segment::Map { key: last }, parents)) = segments.split_last() else { return false };
    let mut current = root;
    for segment in parents {
        let next = match (segment, current) {
            (Segment::Map { key }, toml::Value::Table(table)) => table.get_mut(key.as_str()),
            (Segment::Seq { index }, toml::Value::Array(items)) => items.get_mut(*index),
            _ => None,
        };
        let Some(next) = next else { return false };
        current = next;
    }
    match current {
        toml::Value::Table(table) => table.remove(last.as_str()).is_some(),
        _ => false,
    }
}

#[cfg(test)]
mod tests;
