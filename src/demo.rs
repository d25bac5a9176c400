//! `frontdesk demo`: three small origin servers in this process and a proxy balancing over them,
//! so `curl` shows load balancing without installing anything else.

use crate::config::Source;
use crate::pipeline::body::ClientBody;
use http::{header, Response};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use tokio::net::TcpListener;

/// Starts one demo origin on a free loopback port; it answers every path with its own name.
pub async fn start_origin(name: String) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let name = name.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let body = format!("Hello from {name} ({} {})\n", req.method(), req.uri().path());
                    let mut r = Response::new(ClientBody::full(body));
                    r.headers_mut()
                        .insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/plain"));
                    if let Ok(v) = header::HeaderValue::from_str(&name) {
                        r.headers_mut().insert("x-demo-origin", v);
                    }
                    async move { Ok::<_, Infallible>(r) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(addr)
}

/// The demo configuration for the given listen address and origin addresses.
pub fn config(listen: &str, admin: &str, origins: &[SocketAddr]) -> Source {
    let servers: Vec<String> = origins.iter().map(|a| format!("\"{a}\"")).collect();
    let text = format!(
        r#"# frontdesk demo configuration (generated)
[admin]
listen = "{admin}"

[log]
access = "stdout"

[[listener]]
listen = "{listen}"

[upstream.demo]
balance = "round_robin"
servers = [{servers}]
health = {{ path = "/healthz", interval = "2s", rise = 1, fall = 2 }}

[[route]]
match = {{ path = "/hello" }}
respond = {{ status = 200, body = "Hello from frontdesk itself\n" }}

[[route]]
upstream = "demo"
"#,
        servers = servers.join(", ")
    );
    Source::inline("demo.toml", &text)
}
