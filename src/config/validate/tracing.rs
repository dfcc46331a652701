//! `[tracing]`: OpenTelemetry spans over OTLP. Without `otlp_endpoint`
//! tracing is off, whatever else the table says (its keys are still checked).

use reqwest::Url;

use super::Problems;
use crate::config::raw::RawTracing;
use crate::config::{TracingConfig, TracingProtocol, defaults};

/// The OTLP/HTTP path for traces (OTLP specification, "OTLP/HTTP Request").
const HTTP_TRACES_PATH: &str = "/v1/traces";

pub(super) fn tracing(raw: &RawTracing, p: &mut Problems) -> Option<TracingConfig> {
    let protocol = match raw.protocol.as_deref() {
        None | Some("http") => TracingProtocol::Http,
        Some("grpc") => TracingProtocol::Grpc,
        Some(other) => {
            p.add(
                "tracing.protocol",
                format!("must be \"http\" (OTLP/HTTP, port 4318) or \"grpc\" (OTLP/gRPC, port 4317) (got {other:?})"),
            );
            TracingProtocol::Http
        }
    };
    let sample_ratio = raw.sample_ratio.unwrap_or(defaults::TRACING_SAMPLE_RATIO);
    if !(0.0..=1.0).contains(&sample_ratio) {
        p.add(
            "tracing.sample_ratio",
            format!(
                "must be between 0.0 and 1.0 (got {sample_ratio}) — 1.0 records every request, 0.1 one in ten, 0.0 only \
                 those whose caller's traceparent is sampled"
            ),
        );
    }
    let service_name = raw.service_name.clone().unwrap_or_else(|| defaults::TRACING_SERVICE_NAME.to_string());
    if service_name.trim().is_empty() {
        p.add("tracing.service_name", "must not be empty — leave it out for \"jwtgate\"");
    }
    let written = raw.otlp_endpoint.as_ref()?;
    let endpoint = endpoint(written, protocol, p)?;
    let record_subject = raw.record_subject.unwrap_or(false);
    Some(TracingConfig { endpoint, protocol, sample_ratio, service_name, record_subject })
}

/// The URL spans are sent to. An OTLP/HTTP endpoint written without a
/// path gets `/v1/traces` (as `OTEL_EXPORTER_OTLP_ENDPOINT` does); one with
/// a path is used as written (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`). gRPC
/// takes an origin only: its path names the service method.
fn endpoint(written: &str, protocol: TracingProtocol, p: &mut Problems) -> Option<String> {
    let key = "tracing.otlp_endpoint";
    let port = match protocol {
        TracingProtocol::Http => 4318,
        TracingProtocol::Grpc => 4317,
    };
    let url = match Url::parse(written) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => url,
        _ => {
            p.add(
                key,
                format!("must be an http:// or https:// URL such as \"http://127.0.0.1:{port}\" (got {written:?})"),
            );
            return None;
        }
    };
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() || url.password().is_some() {
        p.add(
            key,
            format!(
                "must have no query, fragment or user:password (got {written:?}) — a collector's credentials go in \
                 $OTEL_EXPORTER_OTLP_HEADERS"
            ),
        );
        return None;
    }
    let path = url.path();
    match protocol {
        TracingProtocol::Http if path.is_empty() || path == "/" => {
            Some(format!("{}{HTTP_TRACES_PATH}", written.trim_end_matches('/')))
        }
        TracingProtocol::Http => Some(written.to_string()),
        TracingProtocol::Grpc if url.scheme() == "https" => {
            p.add(
                key,
                format!(
                    "OTLP/gRPC is spoken in cleartext only (got {written:?}) — for TLS write protocol = \"http\" \
                     and the collector's OTLP/HTTP https:// URL"
                ),
            );
            None
        }
        TracingProtocol::Grpc if path.is_empty() || path == "/" => Some(written.trim_end_matches('/').to_string()),
        TracingProtocol::Grpc => {
            p.add(
                key,
                format!(
                    "an OTLP/gRPC endpoint is an origin without a path (got {written:?}) — write \"{}\"",
                    url.origin().ascii_serialization()
                ),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{Config, TracingConfig, TracingProtocol};

    /// A minimal file whose `[tracing]` table holds `lines` (none: no table):
    /// its tracing, or each problem as `key: message`.
    fn parse(lines: Option<&str>) -> Result<Option<TracingConfig>, Vec<String>> {
        let table = lines.map(|lines| format!("[tracing]\n{lines}\n")).unwrap_or_default();
        let text = format!(
            "[upstream]\nurl = \"http://127.0.0.1:9000\"\n[[issuers]]\nissuer = \"https://i.example/\"\n\
             audiences = [\"a\"]\n{table}"
        );
        Config::parse(&text, "t.toml", Path::new("."), &|_| None)
            .map(|config| config.tracing)
            .map_err(|error| error.problems.iter().map(|p| format!("{}: {}", p.key, p.message)).collect())
    }

    #[test]
    fn tracing_is_off_without_an_endpoint_and_validated_with_one() {
        assert_eq!(parse(None), Ok(None));
        // The table's other keys are checked, but without an endpoint nothing is traced.
        assert_eq!(parse(Some("protocol = \"grpc\"\nsample_ratio = 0.5")), Ok(None));

        let http = parse(Some("otlp_endpoint = \"http://127.0.0.1:4318\"")).unwrap().unwrap();
        let expected = TracingConfig {
            endpoint: "http://127.0.0.1:4318/v1/traces".into(),
            protocol: TracingProtocol::Http,
            sample_ratio: 1.0,
            service_name: "jwtgate".into(),
            record_subject: false,
        };
        assert_eq!(http, expected);
        let written =
            "otlp_endpoint = \"https://collector.example/otlp/v1/traces\"\nsample_ratio = 0\nservice_name = \"edge\"";
        let http = parse(Some(written)).unwrap().unwrap();
        assert_eq!(http.endpoint, "https://collector.example/otlp/v1/traces");
        assert_eq!((http.sample_ratio, http.service_name.as_str()), (0.0, "edge"));
        let grpc = "otlp_endpoint = \"http://otel:4317/\"\nprotocol = \"grpc\"\nsample_ratio = 0.25";
        let grpc = parse(Some(grpc)).unwrap().unwrap();
        assert_eq!(
            (grpc.endpoint.as_str(), grpc.protocol, grpc.sample_ratio),
            ("http://otel:4317", TracingProtocol::Grpc, 0.25)
        );
    }

    #[test]
    fn every_tracing_problem_is_named_with_its_fix() {
        let bad = "otlp_endpoint = \"otel:4317\"\nprotocol = \"udp\"\nsample_ratio = 1.5\nservice_name = \"\"\nsampler = \"x\"";
        assert_eq!(
            parse(Some(bad)).unwrap_err(),
            [
                "tracing.otlp_endpoint: must be an http:// or https:// URL such as \"http://127.0.0.1:4318\" (got \"otel:4317\")",
                "tracing.protocol: must be \"http\" (OTLP/HTTP, port 4318) or \"grpc\" (OTLP/gRPC, port 4317) (got \"udp\")",
                "tracing.sample_ratio: must be between 0.0 and 1.0 (got 1.5) — 1.0 records every request, 0.1 one in ten, 0.0 only those whose caller's traceparent is sampled",
                "tracing.service_name: must not be empty — leave it out for \"jwtgate\"",
                "tracing.sampler: unknown key — the keys allowed here are otlp_endpoint, protocol, sample_ratio, service_name, record_subject",
            ]
        );
        assert_eq!(
            parse(Some("otlp_endpoint = \"http://otel:4317/v1\"\nprotocol = \"grpc\"\nsample_ratio = \"0.5\""))
                .unwrap_err(),
            [
                "tracing.otlp_endpoint: an OTLP/gRPC endpoint is an origin without a path (got \"http://otel:4317/v1\") — write \"http://otel:4317\"",
                "tracing.sample_ratio: expected a number such as 0.5, found the string \"0.5\" — write sample_ratio = 0.5 without quotes",
            ]
        );
        assert_eq!(
            parse(Some("otlp_endpoint = \"http://u:p@otel:4318\"")).unwrap_err(),
            [
                "tracing.otlp_endpoint: must have no query, fragment or user:password (got \"http://u:p@otel:4318\") — a collector's credentials go in $OTEL_EXPORTER_OTLP_HEADERS"
            ]
        );
        assert_eq!(
            parse(Some("otlp_endpoint = \"https://otel:4317\"\nprotocol = \"grpc\"")).unwrap_err(),
            [
                "tracing.otlp_endpoint: OTLP/gRPC is spoken in cleartext only (got \"https://otel:4317\") — for TLS write protocol = \"http\" and the collector's OTLP/HTTP https:// URL"
            ]
        );
    }
}
