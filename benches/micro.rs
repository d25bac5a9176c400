//! Micro-benchmarks of per-request work that regressions would show in: route matching,
//! balancer picks and request and response head parsing. `cargo bench --bench micro`.

use criterion::{criterion_group, criterion_main, Criterion};
use frontdesk::route::{Action, FixedResponse, HostPattern, Matcher, PathMatch, Route, Router};
use frontdesk::server::h1::{RawRequest, RequestHead, ResponseHead};
use frontdesk::server::limits::Limits;
use frontdesk::upstream::balance::{Balancer, HashKey, HashRing, PickInput};
use frontdesk::upstream::Backend;
use std::hint::black_box;
use std::sync::{Arc, Mutex};

const REQUEST: &[u8] = b"GET /api/v1/users/42?expand=profile HTTP/1.1\r\nHost: shop.example.com\r\nUser-Agent: wrk/4.1\r\nAccept: */*\r\nAccept-Encoding: gzip, br\r\nCookie: session=abc123; theme=dark\r\nX-Request-Id: 0123456789abcdef\r\n\r\n";

const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Sat, 28 Nov 2026 09:54:34 GMT\r\nContent-Type: text/plain\r\nContent-Length: 100\r\nConnection: keep-alive\r\n\r\n";

fn router() -> Router {
    let route = |name: &str, host: &str, prefix: &str| Route {
        name: name.into(),
        matcher: Matcher {
            hosts: vec![HostPattern::parse(host)],
            path: PathMatch::Prefix(prefix.into()),
            ..Matcher::any()
        },
        action: Action::Respond(FixedResponse {
            status: http::StatusCode::OK,
            headers: Default::default(),
            body: Default::default(),
        }),
        rewrite: Default::default(),
        stages: Vec::new(),
        #[cfg(feature = "acceleration")]
        cache: None,
        #[cfg(feature = "acceleration")]
        compress: None,
    };
    let mut routes: Vec<Route> = (0..9)
        .map(|i| route(&format!("r{i}"), &format!("site{i}.example.com"), "/"))
        .collect();
    routes.push(route("api", "*.example.com", "/api/"));
    Router { routes }
}

fn bench_parse_and_route(c: &mut Criterion) {
    let limits = Limits::default();
    let router = router();
    c.bench_function("h1 head parse", |b| {
        let mut head = RequestHead::default();
        b.iter(|| black_box(head.parse(black_box(REQUEST), &limits).is_ok()))
    });
    c.bench_function("h1 response head parse", |b| {
        let mut head = ResponseHead::default();
        b.iter(|| black_box(head.parse(black_box(RESPONSE)).is_ok()))
    });
    c.bench_function("route find (10 routes, last matches)", |b| {
        let mut head = RequestHead::default();
        let _ = head.parse(REQUEST, &limits);
        let view = RawRequest {
            buf: REQUEST,
            head: &head,
        };
        b.iter(|| black_box(router.find(&view, black_box("shop.example.com")).map(|r| r.name.len())))
    });
}

fn bench_balancers(c: &mut Criterion) {
    let backends: Vec<Arc<Backend>> = (0..8)
        .map(|i| Arc::new(Backend::new(&format!("10.0.0.{i}:80"))))
        .collect();
    let weights = vec![1; 8];
    let addrs: Vec<String> = backends.iter().map(|b| b.addr.to_string()).collect();
    let refs: Vec<&str> = addrs.iter().map(String::as_str).collect();
    let policies = [
        ("round_robin", Balancer::round_robin(0)),
        ("weighted_round_robin", Balancer::Weighted(Mutex::new(Vec::new()))),
        ("least_conn", Balancer::LeastConn),
        ("p2c_ewma", Balancer::P2cEwma),
        (
            "hash",
            Balancer::Hash(HashRing::new(&refs, &weights), HashKey::ClientIp),
        ),
    ];
    for (name, balancer) in &policies {
        c.bench_function(&format!("pick {name} (8 backends)"), |b| {
            let mut key = 0u64;
            b.iter(|| {
                key = key.wrapping_add(0x9e37_79b9_7f4a_7c15);
                black_box(balancer.pick(
                    &backends,
                    &weights,
                    &PickInput {
                        key_hash: Some(key),
                        exclude: &[],
                    },
                ))
            })
        });
    }
}

criterion_group!(benches, bench_parse_and_route, bench_balancers);
criterion_main!(benches);
