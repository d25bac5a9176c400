//! Point 7 (upgrades): a WebSocket handshake and frames pass through the proxy both ways.

use crate::harness::*;
use futures_util::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

#[tokio::test]
async fn websocket_echo_through_the_proxy() {
    let origin = Origin::start(|mut req| async move {
        let key = req
            .headers()
            .get("sec-websocket-key")
            .expect("key forwarded")
            .as_bytes()
            .to_vec();
        assert_eq!(req.headers().get("upgrade").unwrap(), "websocket");
        let on_upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            let upgraded = on_upgrade.await.expect("origin side upgraded");
            let mut ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
            while let Some(Ok(msg)) = ws.next().await {
                if msg.is_text() {
                    ws.send(Message::text(format!("echo: {}", msg.to_text().unwrap())))
                        .await
                        .unwrap();
                }
            }
        });
        http::Response::builder()
            .status(101)
            .header("upgrade", "websocket")
            .header("connection", "upgrade")
            .header("sec-websocket-accept", derive_accept_key(&key))
            .body(TestBody::empty())
            .unwrap()
    })
    .await;
    let cfg = format!(
        "[log]\naccess = \"off\"\n[[listener]]\nlisten = \"127.0.0.1:0\"\n[upstream.app]\nservers = [\"{}\"]\n[[route]]\nupstream = \"app\"\n",
        origin.addr
    );
    let p = proxy(&cfg).await;
    let (mut ws, resp) = tokio_tungstenite::connect_async(format!("ws://{}/chat", p.addr(0)))
        .await
        .expect("handshake through proxy");
    assert_eq!(resp.status(), 101);
    for i in 0..3 {
        ws.send(Message::text(format!("hello {i}"))).await.unwrap();
        let reply = ws.next().await.unwrap().unwrap();
        assert_eq!(reply.to_text().unwrap(), format!("echo: hello {i}"));
    }
}
