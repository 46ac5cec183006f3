//! A TCP proxy on loopback that holds every byte for a fixed time in each direction,
//! as the network between a Lambda function and RDS does (about 0.5 ms each way):
//! on plain loopback a per-row INSERT costs one cheap round trip per event, which hides
//! what batching saves. Bytes keep flowing while earlier ones wait (a delay, not a
//! bandwidth limit), and each direction of each connection has its own two threads,
//! because tokio's timer rounds to whole milliseconds.
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// Accepts on `addr` and forwards to the target with the delay, until the process ends.
pub struct DelayProxy {
    pub addr: SocketAddr,
}

impl DelayProxy {
    pub fn start(target: SocketAddr, one_way: Duration) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(target) else {
                    continue;
                };
                let _ = (client.set_nodelay(true), server.set_nodelay(true));
                if let (Ok(c), Ok(s)) = (client.try_clone(), server.try_clone()) {
                    delayed_pipe(c, s, one_way);
                    delayed_pipe(server, client, one_way);
                }
            }
        });
        Ok(Self { addr })
    }
}

fn delayed_pipe(mut from: TcpStream, mut to: TcpStream, delay: Duration) {
    let (tx, rx) = std::sync::mpsc::channel::<(Instant, Vec<u8>)>();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n @ 1..) = from.read(&mut buf) {
            if tx.send((Instant::now() + delay, buf[..n].to_vec())).is_err() {
                break;
            }
        }
    });
    std::thread::spawn(move || {
        for (due, bytes) in rx {
            let wait = due.saturating_duration_since(Instant::now());
            if !wait.is_zero() {
                std::thread::sleep(wait);
            }
            if to.write_all(&bytes).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}

/// `url` (`postgres://user@host:port/db`) with its host and port replaced by `addr`.
pub fn through(url: &str, addr: SocketAddr) -> String {
    let (scheme_user, rest) = url.split_once('@').unwrap_or(("postgres://", url));
    let path = rest.find('/').map_or("", |i| &rest[i..]);
    format!("{scheme_user}@{addr}{path}")
}

/// The `host:port` of `url`.
pub fn target_of(url: &str) -> Option<SocketAddr> {
    let rest = url.split_once('@').map_or(url, |(_, r)| r);
    let host_port = rest.split('/').next()?;
    std::net::ToSocketAddrs::to_socket_addrs(host_port).ok()?.next()
}
