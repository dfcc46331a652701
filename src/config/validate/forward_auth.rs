//! `[forward_auth]`: checks for an edge proxy.

use super::Problems;
use crate::config::raw::RawForwardAuth;
use crate::config::{Edge, ForwardAuthConfig};

pub(super) fn forward_auth(raw: &RawForwardAuth, p: &mut Problems) -> Option<ForwardAuthConfig> {
    let edge = match raw.edge.as_deref() {
        None | Some("nginx") => Edge::Nginx,
        Some("traefik") => Edge::Traefik,
        Some("caddy") => Edge::Caddy,
        Some("envoy") => Edge::Envoy,
        Some(other) => {
            p.add(
                "forward_auth.edge",
                format!("must be \"nginx\", \"traefik\", \"caddy\" or \"envoy\" (got {other:?})"),
            );
            Edge::Nginx
        }
    };
    let path = p.required("forward_auth.path", raw.path.as_ref())?;
    match crate::path::normalize(path) {
        Ok(normal) if normal.len() > 1 && (normal == *path || normal == format!("{path}/")) => {
            Some(ForwardAuthConfig { path: path.trim_end_matches('/').to_string(), edge })
        }
        Ok(_) => {
            p.add("forward_auth.path", format!("must be a normalised path other than / (got {path:?})"));
            None
        }
        Err(why) => {
            p.add("forward_auth.path", format!("{why} (got {path:?})"));
            None
        }
    }
}
