//! The floor's work on tokio: one task per client connection on a single-threaded runtime,
//! upstream connections in a per-origin pool (last in, first out) shared by the tasks of the
//! one thread. It tells how much of frontdesk's cost over the epoll loop is the runtime's.
use std::cell::RefCell;
use std::net::{SocketAddr, TcpListener};
use std::rc::Rc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CBUF: usize = 16 * 1024;
const UBUF: usize = 128 * 1024;

struct Pool {
    servers: Vec<SocketAddr>,
    idle: Vec<Vec<TcpStream>>,
    rr: usize,
}

pub fn run(listener: TcpListener, servers: Vec<SocketAddr>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    let local = tokio::task::LocalSet::new();
    let n = servers.len();
    let pool = Rc::new(RefCell::new(Pool {
        servers,
        idle: (0..n).map(|_| vec![]).collect(),
        rr: 0,
    }));
    local.block_on(&rt, async move {
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        loop {
            let Ok((client, _)) = listener.accept().await else {
                continue;
            };
            client.set_nodelay(true).unwrap();
            tokio::task::spawn_local(serve(client, pool.clone()));
        }
    });
}

async fn serve(mut client: TcpStream, pool: Rc<RefCell<Pool>>) {
    let mut cbuf = vec![0u8; CBUF];
    let mut ubuf = vec![0u8; UBUF];
    loop {
        let n = match client.read(&mut cbuf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let (origin, idle) = {
            let mut p = pool.borrow_mut();
            let origin = p.rr % p.servers.len();
            p.rr += 1;
            (origin, p.idle[origin].pop())
        };
        let mut up = match idle {
            Some(up) => up,
            None => {
                let addr = pool.borrow().servers[origin];
                let up = TcpStream::connect(addr).await.unwrap();
                up.set_nodelay(true).unwrap();
                up
            }
        };
        if up.write_all(&cbuf[..n]).await.is_err() {
            return;
        }
        let mut len = 0;
        while !super::complete(&ubuf[..len]) {
            match up.read(&mut ubuf[len..]).await {
                Ok(0) | Err(_) => return,
                Ok(n) => len += n,
            }
        }
        if client.write_all(&ubuf[..len]).await.is_err() {
            return;
        }
        pool.borrow_mut().idle[origin].push(up);
    }
}
