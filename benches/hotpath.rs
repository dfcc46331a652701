//! The request path's own work, token aside: path normalisation, route
//! matching, and preparing the upstream request.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use http::{Method, Request};
use jwtgate::Config;
use jwtgate::auth::ClaimPlan;
use jwtgate::proxy::{Admitted, Upstream};
use jwtgate::routes::{RouteTable, Upstreams};
use jwtgate::server::Peer;

fn config() -> Config {
    let mut text = String::from(
        "[upstream]\nurl = \"http://127.0.0.1:9000\"\n[[issuers]]\nissuer = \"https://i/\"\naudiences = [\"a\"]\n",
    );
    for i in 0..20 {
        text.push_str(&format!(
            "[[routes]]\npath = \"/service-{i}/items\"\nmethods = [\"GET\"]\nscopes = [\"read:{i}\"]\n"
        ));
    }
    Config::parse(&text, "bench.toml", Path::new("."), &|_| None).unwrap()
}

fn hot_path(c: &mut Criterion) {
    let mut group = c.benchmark_group("hotpath");
    group.bench_function("normalize: already normal", |b| {
        b.iter(|| jwtgate::path::normalize(black_box("/api/v1/orders/12345/items")).unwrap())
    });
    group.bench_function("normalize: dots, slashes, escapes", |b| {
        b.iter(|| jwtgate::path::normalize(black_box("/api/./v1//%6Frders/../orders/12345/%7Eitems")).unwrap())
    });

    let config = config();
    let table = RouteTable::new(
        &config.routes,
        &Upstreams { default: (), named: Vec::new() },
        false,
        &mut ClaimPlan::default(),
    )
    .unwrap();
    group.bench_function("route: last of 20", |b| {
        b.iter(|| table.find(None, black_box(&Method::GET), black_box("/service-19/items/42")).name().len())
    });
    group.bench_function("route: no match (default)", |b| {
        b.iter(|| table.find(None, black_box(&Method::GET), black_box("/elsewhere/42")).name().len())
    });
    // The same 20 routes, each for its own host: the host is read, then
    // matched in the same pass.
    let mut by_host = config.clone();
    for (i, route) in by_host.routes.iter_mut().enumerate() {
        route.hosts = vec![jwtgate::config::hosts::HostPattern::parse(&format!("*.svc{i}.example.com")).unwrap()];
    }
    let by_host = RouteTable::new(
        &by_host.routes,
        &Upstreams { default: (), named: Vec::new() },
        false,
        &mut ClaimPlan::default(),
    )
    .unwrap();
    group.bench_function("route with hosts: read Host, last of 20", |b| {
        b.iter(|| {
            let host = jwtgate::config::hosts::request_host(black_box("API.svc19.example.com:8443")).unwrap();
            by_host.find(Some(&host), black_box(&Method::GET), black_box("/service-19/items/42")).name().len()
        })
    });

    let upstream = Upstream::new("default", &config.upstream, config.server.send_timeout).unwrap();
    let client = Peer::new("192.0.2.10:51234".parse().unwrap(), false);
    let request = Request::builder()
        .method(Method::GET)
        .uri("/api/v1/orders/12345?expand=items")
        .header("host", "api.example.com")
        .header("user-agent", "bench/1.0")
        .header("accept", "application/json")
        .header("authorization", "Bearer abc.def.ghi")
        .header("x-request-id", "0123456789abcdef")
        .header("x-forwarded-for", "203.0.113.7")
        .header("connection", "keep-alive")
        .body(())
        .unwrap();
    let (parts, ()) = request.into_parts();
    group.bench_function("remove untrusted headers (none present)", |b| {
        b.iter_batched_ref(
            || parts.headers.clone(),
            |headers| jwtgate::headers::remove_untrusted(black_box(headers), true),
            criterion::BatchSize::SmallInput,
        )
    });
    group.bench_function("prepare upstream request", |b| {
        b.iter(|| {
            let parts = parts.clone();
            let admitted = Admitted::unjudged_for_benchmarks("/api/v1/orders/12345");
            upstream.prepare(admitted, black_box(parts), (), &client).unwrap()
        })
    });
    // One CEL rule per request (issue 20): the evaluation, with the
    // request's variables built for it.
    let rule =
        jwtgate::config::cel::CelRule::parse(r#"request.method == "GET" && request.headers["x-tenant"] == "acme""#)
            .unwrap();
    let policy = jwtgate::policy::Policy::new("routes[0]", "/orders", Some(&rule), None, &mut ClaimPlan::default())
        .unwrap()
        .unwrap();
    let mut headers = http::HeaderMap::new();
    headers.insert("x-tenant", http::HeaderValue::from_static("acme"));
    headers.insert("user-agent", http::HeaderValue::from_static("bench"));
    let facts = jwtgate::policy::Facts {
        method: &Method::GET,
        path: "/orders/1",
        host: None,
        headers: &headers,
        verified: None,
    };
    group.bench_function("rule: one CEL allow_if (method and a header)", |b| {
        b.iter(|| policy.judge(black_box(&facts), &mut ()).is_ok())
    });
    // The same, by the cel interpreter (startsWith is not on the fast path).
    let interpreted = jwtgate::config::cel::CelRule::parse(
        r#"request.path.startsWith("/orders") && request.headers["x-tenant"] == "acme""#,
    )
    .unwrap();
    let interpreted =
        jwtgate::policy::Policy::new("routes[0]", "/orders", Some(&interpreted), None, &mut ClaimPlan::default())
            .unwrap()
            .unwrap();
    group.bench_function("rule: one CEL allow_if, interpreted (startsWith and a header)", |b| {
        b.iter(|| interpreted.judge(black_box(&facts), &mut ()).is_ok())
    });
    group.finish();
}

criterion_group!(benches, hot_path);
criterion_main!(benches);
