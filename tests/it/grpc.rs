//! gRPC through the gateway: a real tonic client and server
//! (grpc.health.v1) over an h2c upstream, trailers both ways, and
//! refusals a gRPC client reads as statuses.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support::keys::{SigningKey, claims};
use crate::support::{TestGateway, TestIdp, TestUpstream, toml};
use bytes::Bytes;
use serde_json::json;
use tonic::codegen::Service;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, health_server::HealthServer};

/// tonic's health service, served as h2c by the test HTTP server.
async fn grpc_upstream() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let (_reporter, service) = tonic_health::server::health_reporter();
    let service: HealthServer<_> = service;
    crate::support::http::serve(move |request: hyper::Request<hyper::body::Incoming>| {
        let mut service = service.clone();
        async move { service.call(request).await.unwrap() }
    })
    .await
}

async fn gateway_for(idp: &TestIdp, upstream: &str) -> TestGateway {
    toml(upstream, &idp.issuer)
        .upstream("protocol = \"h2c\"")
        .issuer("[[routes]]\npath = \"/grpc.health.v1.Health\"\nscopes = [\"health:read\"]\n")
        .start()
        .await
}

fn client(
    gateway: &TestGateway,
    token: Option<String>,
) -> HealthClient<tonic::service::interceptor::InterceptedService<Channel, impl tonic::service::Interceptor>> {
    let channel = Channel::from_shared(format!("http://{}", gateway.addr)).unwrap().connect_lazy();
    HealthClient::with_interceptor(channel, move |mut request: tonic::Request<()>| {
        if let Some(token) = &token {
            request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
        }
        Ok(request)
    })
}

#[tokio::test]
async fn grpc_calls_pass_with_a_token_and_get_grpc_statuses_without() {
    let key = SigningKey::rsa("k");
    let idp = TestIdp::start(&[&key]).await;
    let (addr, _server) = grpc_upstream().await;
    let gateway = gateway_for(&idp, &format!("http://{addr}")).await;
    let token = |scope: &str| {
        let mut c = claims(&idp.issuer, "api");
        c["scope"] = json!(scope);
        key.mint(&c)
    };

    // The answer's grpc-status comes in the upstream's trailers, through the gateway.
    let answer = client(&gateway, Some(token("health:read")))
        .check(HealthCheckRequest { service: String::new() })
        .await
        .unwrap();
    assert_eq!(answer.into_inner().status(), ServingStatus::Serving);

    // A server-streaming call works too.
    let mut watch = client(&gateway, Some(token("health:read")))
        .watch(HealthCheckRequest { service: String::new() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(watch.message().await.unwrap().unwrap().status(), ServingStatus::Serving);

    let status = client(&gateway, None).check(HealthCheckRequest::default()).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    assert_eq!(status.message(), "this route needs a bearer token in the Authorization header");

    let status = client(&gateway, Some("not.a.jwt".into())).check(HealthCheckRequest::default()).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");

    let status = client(&gateway, Some(token("other"))).check(HealthCheckRequest::default()).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");

    // No upstream: a gRPC status, not an HTTP error page.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let nowhere = gateway_for(&idp, &format!("http://{closed}")).await;
    let status = client(&nowhere, Some(token("health:read"))).check(HealthCheckRequest::default()).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
}

#[tokio::test]
/// Issue 14, finding 5: request trailers never reach the upstream (an
/// `X-Auth-Subject` there would sit beside the gateway's real header);
/// response trailers (gRPC's status) come back.
async fn identity_headers_in_request_trailers_are_dropped_and_response_trailers_pass() {
    let key = SigningKey::rsa("k");
    let idp = TestIdp::start(&[&key]).await;
    let upstream = TestUpstream::start().await;
    let gateway = toml(&upstream.url(), &idp.issuer)
        .upstream("protocol = \"h2c\"")
        .issuer("[headers]\nclaims = { sub = \"X-Auth-Subject\" }\n")
        .start()
        .await;
    let token = key.mint(&claims(&idp.issuer, "api"));

    let stream = tokio::net::TcpStream::connect(gateway.addr).await.unwrap();
    let (client, connection) = h2::client::handshake(stream).await.unwrap();
    tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    let request = hyper::Request::post(format!("http://{}/echo", gateway.addr))
        .header("authorization", format!("Bearer {token}"))
        .header("te", "trailers")
        .body(())
        .unwrap();
    let (response, mut send) = client.send_request(request, false).unwrap();
    send.send_data(Bytes::from_static(b"payload"), false).unwrap();
    let mut trailers = http::HeaderMap::new();
    trailers.insert("x-checksum", "abc123".parse().unwrap());
    trailers.insert("x-auth-subject", "admin".parse().unwrap());
    send.send_trailers(trailers).unwrap();

    // /echo answers with the request's body and a trailer naming the
    // request trailers it saw.
    let response = response.await.unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut data = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        body.flow_control().release_capacity(chunk.len()).unwrap();
        data.extend_from_slice(&chunk);
    }
    assert_eq!(data, b"payload");
    let trailers = body.trailers().await.unwrap().expect("trailers came back");
    assert_eq!(trailers["x-request-trailers"], "none");
    assert_eq!(upstream.last().headers["te"], "trailers");
}
