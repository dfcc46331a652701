//! What one `[[rate_limits]]` check costs a request: a local GCRA bucket
//! (one client, and 10,000 clients in turn), and one through Redis on
//! loopback (one EVALSHA round trip), when `redis-server` is installed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use jwtgate::Config;
use jwtgate::auth::ClaimPlan;
use jwtgate::metrics::Metrics;
use jwtgate::rate_limit::{RateLimits, RouteRef};

const ROUTE: RouteRef<'static> = RouteRef { index: 0, name: "/api" };

fn limits(extra: &str) -> Arc<RateLimits> {
    // A rate no benchmark spends: every check is an admitted one.
    let text = format!(
        "[upstream]\nurl = \"http://127.0.0.1:9000\"\n[[issuers]]\nissuer = \"https://i/\"\naudiences = [\"a\"]\n\
         [[routes]]\npath = \"/api\"\n[[rate_limits]]\nkey = \"ip\"\nrate = \"10000000/s\"\n{extra}"
    );
    let config = Config::parse(&text, "bench.toml", Path::new("."), &|_| None).unwrap();
    let routes = [ROUTE, RouteRef { index: 1, name: "(default)" }];
    RateLimits::new(
        &config.rate_limits,
        config.rate_limit_store.as_ref(),
        routes.into_iter(),
        &mut ClaimPlan::default(),
        &Metrics::default(),
    )
    .unwrap()
    .unwrap()
}

/// A local check never waits: one poll finishes it, without a runtime.
fn check_now(limits: &RateLimits, ip: IpAddr) -> bool {
    let mut check = std::pin::pin!(limits.check(&ROUTE, None, ip));
    match check.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(result) => result.is_ok(),
        Poll::Pending => unreachable!("a local limit never waits"),
    }
}

fn local(c: &mut Criterion) {
    let mut group = c.benchmark_group("rate_limit");
    let limits = limits("");
    let client = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10));
    group.bench_function("local: one client", |b| b.iter(|| check_now(&limits, black_box(client))));
    let clients: Vec<IpAddr> = (0..10_000u32).map(|i| IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i))).collect();
    let mut next = 0;
    group.bench_function("local: 10,000 clients in turn", |b| {
        b.iter(|| {
            next = (next + 1) % clients.len();
            check_now(&limits, black_box(clients[next]))
        })
    });
    group.finish();
}

/// One check through Redis on loopback: a redis-server of its own on a free port.
fn redis(c: &mut Criterion) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let server = std::process::Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .stdout(std::process::Stdio::null())
        .spawn();
    let Ok(server) = server else {
        eprintln!("rate_limit/redis: skipped, no redis-server (apt-get install redis-server)");
        return;
    };
    // Killed however the benchmark ends, a failed assertion included.
    let _server = Killed(server);
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let limits = runtime.block_on(async {
        limits(&format!("[rate_limit_store]\nredis_url = \"redis://127.0.0.1:{port}\"\non_store_error = \"deny\"\n"))
    });
    let client = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10));
    let mut group = c.benchmark_group("rate_limit");
    group.bench_function("redis: one round trip on loopback", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let started = Instant::now();
                for _ in 0..iters {
                    assert!(limits.check(&ROUTE, None, black_box(client)).await.is_ok());
                }
                started.elapsed()
            })
        })
    });
    group.finish();
}

struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

criterion_group!(benches, local, redis);
criterion_main!(benches);
