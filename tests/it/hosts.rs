//! Host routing (issue 20, part 2): `routes[].hosts`, checked before the
//! path, with the request's host case-folded and without its port, and
//! every spelling of a host that servers could read differently refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct World {
    key: SigningKey,
    idp: TestIdp,
    main: TestUpstream,
    billing: TestUpstream,
    gateway: TestGateway,
}

async fn world(extra: &str) -> World {
    let key = SigningKey::rsa("k");
    let idp = TestIdp::start(&[&key]).await;
    let (main, billing) = (TestUpstream::start().await, TestUpstream::start().await);
    let text = format!(
        "[upstream]\nurl = \"{}\"\n[upstreams.billing]\nurl = \"{}\"\n[[issuers]]\nissuer = \"{}\"\naudiences = [\"api\"]\n\
         {extra}\
         [[routes]]\npath = \"/\"\nhosts = [\"admin.example.com\"]\nscopes = [\"admin\"]\n\
         [[routes]]\npath = \"/\"\nhosts = [\"*.Billing.example\", \"bücher.example\"]\nupstream = \"billing\"\n\
         [[routes]]\npath = \"/public\"\nauth = \"public\"\n",
        main.url(),
        billing.url(),
        idp.issuer
    );
    let gateway = TestGateway::start(&text).await;
    gateway.wait_for_keys().await;
    World { key, idp, main, billing, gateway }
}

impl World {
    fn token(&self, scope: &str) -> String {
        let mut claims = claims(&self.idp.issuer, "api");
        claims["scope"] = json!(scope);
        self.key.mint(&claims)
    }
}

/// The status line of `head` (request line and headers, without the blank
/// line) sent as is, with `Connection: close`.
async fn raw(addr: std::net::SocketAddr, head: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(format!("{head}\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    String::from_utf8_lossy(&answer).lines().next().unwrap_or("").to_owned()
}

#[tokio::test]
async fn routes_with_hosts_judge_by_the_requests_host_before_its_path() {
    let w = world("").await;
    let user = w.token("read");
    let admin = w.token("admin");
    let get = |host: &str, path: &str, token: &str| {
        let addr = w.gateway.addr;
        let head = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}");
        async move { raw(addr, &head).await }
    };
    // The admin host needs the admin scope on every path, /public included:
    // hosts are checked before the path.
    for host in ["admin.example.com", "ADMIN.Example.COM", "admin.example.com:8443"] {
        assert_eq!(get(host, "/orders", &user).await, "HTTP/1.1 403 Forbidden", "{host}");
        assert_eq!(get(host, "/public", "-").await, "HTTP/1.1 401 Unauthorized", "{host}");
    }
    assert_eq!(get("admin.example.com", "/orders", &admin).await, "HTTP/1.1 200 OK");
    // A wildcard takes every name below its suffix, to its own upstream.
    let before = w.main.count();
    for host in ["eu.billing.example", "a.b.billing.example:80", "xn--bcher-kva.example"] {
        assert_eq!(get(host, "/orders", &user).await, "HTTP/1.1 200 OK", "{host}");
    }
    assert_eq!(w.billing.count(), 3);
    assert_eq!(w.main.count(), before);
    // The suffix itself and other hosts fall to the routes without hosts.
    for host in ["billing.example", "example.org", "admin.example.com.evil"] {
        assert_eq!(get(host, "/orders", &user).await, "HTTP/1.1 200 OK", "{host}");
        assert_eq!(get(host, "/public", "-").await, "HTTP/1.1 200 OK", "{host}");
    }
    assert_eq!(w.billing.count(), 3);
    // The upstream sees the host it was asked for.
    assert_eq!(w.main.last().headers["x-forwarded-host"], "admin.example.com.evil");
}

/// Every spelling of the admin host that some server would read as it and
/// another would not is refused, never judged by a weaker route.
#[tokio::test]
async fn host_spellings_servers_read_differently_are_refused() {
    let w = world("").await;
    let user = w.token("read");
    let refused = "HTTP/1.1 400 Bad Request";
    for host in [
        "admin.example.com.",
        "admin.example.com.:443",
        "admin%2eexample.com",
        "admin.example.com%00",
        "user@admin.example.com",
        "admin.example.com:x",
        "[::1",
        "",
    ] {
        let head = format!("GET /orders HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {user}");
        assert_eq!(raw(w.gateway.addr, &head).await, refused, "Host: {host:?}");
    }
    // Two hosts, or a request target naming another host than Host.
    let two =
        format!("GET /orders HTTP/1.1\r\nHost: example.org\r\nHost: admin.example.com\r\nAuthorization: Bearer {user}");
    assert_eq!(raw(w.gateway.addr, &two).await, refused);
    let absolute =
        format!("GET http://example.org/orders HTTP/1.1\r\nHost: admin.example.com\r\nAuthorization: Bearer {user}");
    assert_eq!(raw(w.gateway.addr, &absolute).await, refused);
    let agreeing = format!(
        "GET http://Admin.Example.com/orders HTTP/1.1\r\nHost: admin.example.com\r\nAuthorization: Bearer {user}"
    );
    assert_eq!(raw(w.gateway.addr, &agreeing).await, "HTTP/1.1 403 Forbidden");
    // No host at all (HTTP/1.0): no route can be chosen by it.
    let bare = format!("GET /orders HTTP/1.0\r\nAuthorization: Bearer {user}");
    assert_eq!(raw(w.gateway.addr, &bare).await, "HTTP/1.0 400 Bad Request");
    // Non-ASCII bytes in Host (UTF-8 for bücher.example): not a host name.
    let mut stream = tokio::net::TcpStream::connect(w.gateway.addr).await.unwrap();
    let head = format!(
        "GET /orders HTTP/1.1\r\nHost: b\u{fc}cher.example\r\nAuthorization: Bearer {user}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    assert!(String::from_utf8_lossy(&answer).starts_with(refused), "{}", String::from_utf8_lossy(&answer));
    assert_eq!(w.main.count() + w.billing.count(), 0, "nothing reached an upstream");
}

/// Forward-auth: the host comes from the configured edge's own header
/// (`X-Original-Host` for nginx); a client's `X-Forwarded-Host`, which
/// nginx passes along, is not read.
#[tokio::test]
async fn forward_auth_reads_the_host_from_the_edges_own_header() {
    let w = world("[forward_auth]\npath = \"/auth\"\nedge = \"nginx\"\n").await;
    let user = w.token("read");
    let check = |host: Option<&str>, spoof: Option<&str>| {
        let mut request = client()
            .get(w.gateway.url("/auth"))
            .header("authorization", format!("Bearer {user}"))
            .header("x-original-uri", "/orders")
            .header("x-original-method", "GET");
        if let Some(host) = host {
            request = request.header("x-original-host", host);
        }
        if let Some(spoof) = spoof {
            request = request.header("x-forwarded-host", spoof);
        }
        async move {
            let response = request.send().await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };
    let insufficient = "token lacks a scope this route requires";
    let (status, body) = check(Some("admin.example.com"), None).await;
    assert!(status == 403 && body.contains(insufficient), "{body}");
    assert_eq!(check(Some("example.org"), Some("admin.example.com")).await.0, 200);
    let (status, body) = check(Some("admin.example.com"), Some("example.org")).await;
    assert!(status == 403 && body.contains(insufficient), "{body}");
    // Refused as a bad request (edges pass only 401 and 403 on: a 403).
    let (status, body) = check(None, None).await;
    assert!(status == 403 && body.contains("the request names no host"), "the edge must say which host: {body}");
    let (status, body) = check(Some("admin.example.com."), None).await;
    assert!(status == 403 && body.contains("ends with a dot"), "{body}");
}

/// `jwtgate explain --host` picks the route the gateway would.
#[tokio::test]
async fn explain_judges_at_the_host_it_is_given() {
    let w = world("").await;
    let config = jwtgate::config::Config::parse(
        &format!(
            "[upstream]\nurl = \"{}\"\n[[issuers]]\nissuer = \"{}\"\naudiences = [\"api\"]\n\
             [[routes]]\npath = \"/\"\nhosts = [\"admin.example.com\"]\nscopes = [\"admin\"]\n",
            w.main.url(),
            w.idp.issuer
        ),
        "hosts.toml",
        std::path::Path::new("."),
        &|_| None,
    )
    .unwrap();
    let user = w.token("read");
    let options = |host: Option<&str>| jwtgate::explain::Options {
        host: host.map(str::to_owned),
        path: "/orders".into(),
        ..Default::default()
    };
    let (report, allowed) =
        jwtgate::explain::explain(&config, &user, &options(Some("Admin.example.com:443"))).await.unwrap();
    assert!(!allowed, "{report}");
    assert!(report.contains("route     /  auth required  hosts admin.example.com  scopes admin"), "{report}");
    let (report, allowed) = jwtgate::explain::explain(&config, &user, &options(Some("example.org"))).await.unwrap();
    assert!(allowed, "{report}");
    assert!(report.contains("route     (default)"), "{report}");
    let (report, allowed) = jwtgate::explain::explain(&config, &user, &options(None)).await.unwrap();
    assert!(!allowed);
    assert!(report.contains("names no host"), "{report}");
}
