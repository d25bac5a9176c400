//! Point 4: matching on host, path, method, header, cookie and query; redirects, fixed responses,
//! prefix rewrites and header edits.

use crate::harness::*;
use http::Request;
use http_body_util::Full;

async fn routed() -> (TestProxy, Origin, Origin) {
    let api = Origin::named("api").await;
    let web = Origin::named("web").await;
    let cfg = format!(
        r#"
[log]
access = "off"
[[listener]]
listen = "127.0.0.1:0"

[upstream.api]
servers = ["{api}"]
[upstream.web]
servers = ["{web}"]

[[route]]
name = "exact"
match = {{ host = "a.test", path = "/exact" }}
respond = {{ status = 200, body = "exact" }}

[[route]]
name = "regex-redirect"
match = {{ path_regex = "^/old/(?P<id>[0-9]+)$" }}
redirect = {{ to = "https://{{host}}/new/${{id}}?{{query}}", status = 301 }}

[[route]]
name = "api"
match = {{ host = ["a.test", "*.api.test"], path_prefix = "/api/" }}
upstream = "api"
strip_prefix = "/api"
add_prefix = "/v2"
request_headers = {{ set = {{ "x-env" = "prod" }}, add = {{ "x-added" = "1" }}, remove = ["x-secret"] }}
response_headers = {{ set = {{ "x-served-by" = "frontdesk" }}, remove = ["x-origin"] }}

[[route]]
name = "post-only"
match = {{ method = ["POST", "PUT"], path = "/submit" }}
respond = {{ status = 201, body = "created", headers = {{ "x-kind" = "fixed" }} }}

[[route]]
name = "beta"
match = {{ header = {{ "x-beta" = "yes" }}, cookie = {{ session = "*" }}, query = {{ debug = "1" }} }}
respond = {{ status = 200, body = "beta" }}

[[route]]
name = "web"
match = {{ host = "a.test" }}
upstream = "web"
"#,
        api = api.addr,
        web = web.addr
    );
    (proxy(&cfg).await, api, web)
}

fn req(method: &str, host: &str, path: &str, headers: &[(&str, &str)]) -> Request<Full<bytes::Bytes>> {
    let mut b = Request::builder().method(method).uri(path).header("host", host);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Full::default()).unwrap()
}

#[tokio::test]
async fn host_and_path_matching_first_match_wins() {
    let (p, api, _web) = routed().await;
    let addr = p.addr(0);
    assert_eq!(get_host(addr, "a.test", "/exact").await.body, "exact");
    assert_eq!(get_host(addr, "a.test", "/api/users").await.body, "api");
    assert_eq!(get_host(addr, "eu.api.test", "/api/users").await.body, "api");
    assert_eq!(get_host(addr, "a.test", "/other").await.body, "web");
    assert_eq!(
        get_host(addr, "A.TEST:8080", "/other").await.body,
        "web",
        "host is case-insensitive, port ignored"
    );
    let none = get_host(addr, "b.test", "/other").await;
    assert_eq!(none.status, 404);
    assert_eq!(api.requests(), 2);
}

#[tokio::test]
async fn prefix_rewrite_and_header_edits() {
    let (p, api, _web) = routed().await;
    let a = send(
        p.addr(0),
        req(
            "GET",
            "a.test",
            "/api/users?page=2",
            &[("x-secret", "s"), ("x-env", "dev")],
        ),
    )
    .await;
    let seen = api.last_seen();
    assert_eq!(seen.method, "GET");
    assert_eq!(seen.uri, "/v2/users?page=2");
    assert_eq!(seen.headers.get("x-env").unwrap(), "prod");
    assert_eq!(seen.headers.get("x-added").unwrap(), "1");
    assert!(seen.headers.get("x-secret").is_none());
    assert_eq!(a.header("x-served-by"), "frontdesk");
    assert_eq!(a.header("x-origin"), "", "response header removed");
}

#[tokio::test]
async fn method_header_cookie_query_predicates() {
    let (p, _api, _web) = routed().await;
    let addr = p.addr(0);
    let a = send(addr, req("POST", "x", "/submit", &[])).await;
    assert_eq!(
        (a.status.as_u16(), a.body.as_str(), a.header("x-kind")),
        (201, "created", "fixed")
    );
    assert_eq!(send(addr, req("GET", "x", "/submit", &[])).await.status, 404);

    let beta = [("x-beta", "yes"), ("cookie", "a=1; session=abc")];
    assert_eq!(send(addr, req("GET", "x", "/?debug=1", &beta)).await.body, "beta");
    assert_eq!(send(addr, req("GET", "x", "/?debug=0", &beta)).await.status, 404);
    assert_eq!(
        send(addr, req("GET", "x", "/?debug=1", &[("x-beta", "yes")]))
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn redirect_with_captures() {
    let (p, _api, _web) = routed().await;
    let a = get_host(p.addr(0), "shop.test", "/old/42?ref=mail").await;
    assert_eq!(a.status, 301);
    assert_eq!(a.header("location"), "https://shop.test/new/42?ref=mail");
}

#[tokio::test]
async fn http_to_https_redirect() {
    let cfg = r#"
[log]
access = "off"
[[listener]]
listen = "127.0.0.1:0"
redirect_https = true
https_port = 8443
[[route]]
respond = { status = 200, body = "never" }
"#;
    let p = proxy(cfg).await;
    let a = get_host(p.addr(0), "secure.test", "/a/b?c=d").await;
    assert_eq!(a.status, 308);
    assert_eq!(a.header("location"), "https://secure.test:8443/a/b?c=d");
}
