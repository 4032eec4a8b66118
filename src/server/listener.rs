//! One listening socket per core, all on the same address with SO_REUSEPORT,
//! so the kernel balances new connections across cores with no shared queue.

use super::ServerError;
use socket2::{Domain, Protocol, Socket, Type};
use std::net::SocketAddr;

/// Binds `count` sockets to `addr`. With port 0 the first socket picks the
/// port and the others join it.
/// `flag` names the flag the address came from, for the error.
pub fn bind_all(
    flag: &'static str,
    addr: SocketAddr,
    count: usize,
    backlog: u32,
) -> Result<Vec<Socket>, ServerError> {
    if addr.port() != 0 {
        ensure_unused(addr).map_err(|e| ServerError::Listen(flag, addr, e))?;
    }
    let mut sockets: Vec<Socket> = Vec::with_capacity(count);
    let mut addr = addr;
    for _ in 0..count {
        let socket = bind_one(addr, backlog).map_err(|e| ServerError::Listen(flag, addr, e))?;
        if let Some(bound) = socket.local_addr().ok().and_then(|a| a.as_socket()) {
            addr = bound;
        }
        sockets.push(socket);
    }
    Ok(sockets)
}

/// SO_REUSEPORT would let a second server (a forgotten ringcast, say) join the
/// same port and silently take half its connections. A plain bind first
/// fails with EADDRINUSE if anyone listens there already.
fn ensure_unused(addr: SocketAddr) -> std::io::Result<()> {
    let probe = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    probe.set_reuse_address(true)?;
    probe.bind(&addr.into())
}

fn bind_one(addr: SocketAddr, backlog: u32) -> std::io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
    Ok(socket)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_zero_is_shared_by_every_core() {
        let sockets = bind_all("--listen", "127.0.0.1:0".parse().unwrap(), 3, 16).unwrap();
        let ports: Vec<u16> = sockets
            .iter()
            .map(|s| s.local_addr().unwrap().as_socket().unwrap().port())
            .collect();
        assert!(
            ports[0] != 0 && ports.iter().all(|&p| p == ports[0]),
            "{ports:?}"
        );
    }

    #[test]
    fn a_second_server_cannot_join_a_used_port() {
        let first = bind_all("--listen", "127.0.0.1:0".parse().unwrap(), 1, 16).unwrap();
        let addr = first[0].local_addr().unwrap().as_socket().unwrap();
        assert!(matches!(
            bind_all("--listen", addr, 1, 16),
            Err(ServerError::Listen(..))
        ));
    }

    #[test]
    fn an_address_in_use_is_an_error() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        assert!(matches!(
            bind_all("--listen", addr, 1, 16),
            Err(ServerError::Listen(..))
        ));
    }
}
