//! The sandbox's one door to the network (`Network::Proxy`): inside the new network
//! namespace the launcher brings up loopback, listens on `127.0.0.1:port`, and
//! forwards each connection to the gateway's egress proxy over a UNIX socket, which a
//! process in another network namespace can reach by path. The forwarding runs in a
//! process of its own inside the sandbox's PID namespace, not in the server. The server is told to use
//! `http://127.0.0.1:port` as its HTTP(S) proxy.

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// At most this many connections through the door at once.
const MAX_CONNECTIONS: usize = 64;

/// Brings up loopback in the launcher's new network namespace and listens on
/// `127.0.0.1:port`.
pub(crate) fn open(port: u16) -> Result<TcpListener, String> {
    loopback_up()?;
    TcpListener::bind((Ipv4Addr::LOCALHOST, port))
        .map_err(|e| format!("proxy door 127.0.0.1:{port}: {e}"))
}

fn loopback_up() -> Result<(), String> {
    // The ioctl needs some socket; nothing is up yet, so bind nothing.
    let sock = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Datagram,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| format!("loopback: {e}"))?;
    // SAFETY: `ifreq` is a plain C struct of integers and byte arrays, for which all
    // zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads the interface named in `req` and writes its flags
    // into `req.ifr_ifru`; `req` is a valid, exclusively borrowed `ifreq` that outlives
    // the call, and the descriptor is an open socket.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } != 0 {
        return Err(format!(
            "loopback flags: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: SIOCGIFFLAGS succeeded, so `ifru_flags` is the member the kernel wrote.
    unsafe {
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
    }
    // SAFETY: as above; SIOCSIFFLAGS only reads `req`.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } != 0 {
        return Err(format!("loopback up: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Forwards every connection on `listener` to `socket`, one thread per direction;
/// runs until the listener fails (the process is killed with the sandbox).
pub(crate) fn forward(listener: TcpListener, socket: PathBuf) {
    let active = Arc::new(AtomicUsize::new(0));
    {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            if active.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
                active.fetch_sub(1, Ordering::AcqRel);
                continue;
            }
            let socket = socket.clone();
            let active = Arc::clone(&active);
            std::thread::spawn(move || {
                if let Ok(up) = UnixStream::connect(&socket) {
                    pipe(conn, up);
                }
                active.fetch_sub(1, Ordering::AcqRel);
            });
        }
    }
}

/// Copies both ways until either side closes.
fn pipe(tcp: TcpStream, unix: UnixStream) {
    let (Ok(mut tcp_r), Ok(mut unix_r)) = (tcp.try_clone(), unix.try_clone()) else {
        return;
    };
    let (mut tcp_w, mut unix_w) = (tcp, unix);
    let up = std::thread::spawn(move || {
        let _ = std::io::copy(&mut tcp_r, &mut unix_w);
        let _ = unix_w.shutdown(std::net::Shutdown::Write);
    });
    let _ = std::io::copy(&mut unix_r, &mut tcp_w);
    let _ = tcp_w.shutdown(std::net::Shutdown::Write);
    let _ = up.join();
}
