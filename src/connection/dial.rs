//! Deployer opens the TCP connection to a host itself and hands it to `ssh`
//! (`ProxyCommand` with `ProxyUseFdpass`), with `TCP_NODELAY` set.
//!
//! `ssh` sets `TCP_NODELAY` only for sessions with a terminal. Without it, a
//! small packet `ssh` writes while an earlier one is not yet acknowledged
//! waits for that acknowledgement, which the server delays by up to 40 ms
//! (Nagle's algorithm meeting delayed ACKs). Opening a session on a new
//! connection hits this once: measured on the testbed, `ssh host sudo true`
//! took 0.203 s through `ssh`'s own connect and 0.163 s through a socket
//! with `TCP_NODELAY` (medians of 11).
//!
//! Only where ssh's own configuration leaves the connecting to `ssh`: the
//! block below is written after the user's configuration (in ssh the first
//! value of an option wins, so a `ProxyCommand` or `ProxyJump` of the user
//! is kept), and not at all when any configuration file ssh reads names a
//! proxy or how to connect (`ProxyCommand`, `ProxyJump`, `ProxyUseFdpass`,
//! `AddressFamily`, `BindAddress`, `BindInterface`, `ConnectionAttempts`,
//! `CanonicalizeHostname`), when an `Include` cannot be followed, or when
//! the host name has characters other than letters, digits and `.-_:`.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The options `ssh` would use to connect by itself: where any is set,
/// deployer leaves connecting to `ssh`.
const CONNECT_OPTIONS: &[&str] = &[
    "proxycommand",
    "proxyjump",
    "proxyusefdpass",
    "addressfamily",
    "bindaddress",
    "bindinterface",
    "connectionattempts",
    "canonicalizehostname",
];

/// The seconds `ssh` is given to connect (`ConnectTimeout` of its command line).
pub const CONNECT_TIMEOUT_SECS: u64 = 15;

/// The lines that make `ssh` use [`connect`] for `host`, to follow the
/// user's configuration in deployer's own config file; `None` where ssh's
/// configuration decides how to connect (see the module docs).
pub fn config_block(user_config: Option<&Path>, host: &str) -> Option<String> {
    let plain = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'));
    if !plain || host.starts_with('-') {
        return None;
    }
    let files = match user_config {
        Some(p) => vec![p.to_path_buf()],
        None => {
            let mut v = Vec::new();
            if let Some(h) = std::env::var_os("HOME") {
                v.push(Path::new(&h).join(".ssh/config"));
            }
            v.push(PathBuf::from("/etc/ssh/ssh_config"));
            v
        }
    };
    for f in &files {
        if !leaves_connecting_to_ssh(f, 0)? {
            return None;
        }
    }
    let exe = std::env::current_exe().ok()?;
    let exe = exe.to_str()?;
    if exe.contains(['\'', '\n', '"', '%']) {
        return None;
    }
    Some(format!(
        "# Hosts that the configuration above sends through no proxy: deployer\n\
         # connects the TCP socket itself (TCP_NODELAY) and hands it to ssh.\n\
         Host *\n  ProxyCommand '{exe}' ssh-connect %h %p\n  ProxyUseFdpass yes\n"
    ))
}

/// `Some(true)`: `path` (missing counts) and the files it includes set none
/// of [`CONNECT_OPTIONS`]; `Some(false)`: one does; `None`: an `Include` that
/// cannot be followed (then so much is unknown that ssh decides).
fn leaves_connecting_to_ssh(path: &Path, depth: usize) -> Option<bool> {
    if depth > 8 {
        return None;
    }
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Some(true),
        Err(_) => return None,
    };
    for (_, key, value) in super::host_keys::config_lines(&text) {
        let key = key.to_ascii_lowercase();
        if CONNECT_OPTIONS.contains(&key.as_str()) {
            return Some(false);
        }
        if key == "include" {
            for inc in value.split_whitespace() {
                for p in super::host_keys::include_files(path, inc.trim_matches('"'))? {
                    if !leaves_connecting_to_ssh(&p, depth + 1)? {
                        return Some(false);
                    }
                }
            }
        }
    }
    Some(true)
}

/// `deployer ssh-connect HOST PORT`, run by `ssh` as its `ProxyCommand`:
/// connects to HOST (each address in turn, as `ssh` does), sets
/// `TCP_NODELAY` and passes the socket to `ssh` over stdout. Exit 255 with
/// `ssh`'s own words when no address connects.
pub fn connect(host: &str, port: &str) -> i32 {
    use std::os::fd::AsFd;
    connect_to(host, port, std::io::stdout().as_fd())
}

/// [`connect`], passing the socket over `out` (a Unix socket).
fn connect_to(host: &str, port: &str, out: std::os::fd::BorrowedFd<'_>) -> i32 {
    let fail = |reason: String| {
        let _ = writeln!(
            std::io::stderr(),
            "ssh: connect to host {host} port {port}: {reason}"
        );
        255
    };
    let Ok(port_n) = port.parse::<u16>() else {
        return fail("bad port".into());
    };
    let addrs: Vec<std::net::SocketAddr> =
        match std::net::ToSocketAddrs::to_socket_addrs(&(host, port_n)) {
            Ok(a) => a.collect(),
            Err(e) => {
                let _ = writeln!(
                    std::io::stderr(),
                    "ssh: Could not resolve hostname {host}: {e}"
                );
                return 255;
            }
        };
    let mut last = String::from("no address");
    for a in addrs {
        match std::net::TcpStream::connect_timeout(&a, Duration::from_secs(CONNECT_TIMEOUT_SECS)) {
            Ok(s) => {
                if let Err(e) = s.set_nodelay(true) {
                    return fail(format!("cannot set TCP_NODELAY: {e}"));
                }
                use std::os::fd::AsFd;
                return match send_fd(s.as_fd(), out) {
                    Ok(()) => 0,
                    Err(e) => fail(format!("cannot pass the connection to ssh: {e}")),
                };
            }
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                last = "Connection timed out".into();
            }
            Err(e) => last = io_reason(&e),
        }
    }
    fail(last)
}

/// An error as `ssh` words it ("Connection refused"), without Rust's "(os error N)".
fn io_reason(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// The control space for one descriptor.
fn fd_space() -> usize {
    // SAFETY: CMSG_SPACE only computes a size.
    unsafe { libc::CMSG_SPACE(std::mem::size_of::<libc::c_int>() as u32) as usize }
}

/// A message of one byte (`iov`) with room for one descriptor (`control`,
/// [`fd_space`] bytes). The pointers in it point into `iov` and `control`.
fn one_fd_message(iov: &mut libc::iovec, control: &mut [u8]) -> libc::msghdr {
    // SAFETY: a zeroed msghdr is a valid empty message.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = control.len() as _;
    msg
}

/// Sends the descriptor `fd` over the Unix socket `out` with SCM_RIGHTS, as
/// one message of one zero byte (how `ssh` passes descriptors: its
/// `ProxyUseFdpass` and its control socket read them so).
pub(crate) fn send_fd(
    fd: std::os::fd::BorrowedFd<'_>,
    out: std::os::fd::BorrowedFd<'_>,
) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let (fd, out) = (fd.as_raw_fd(), out.as_raw_fd());
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    let mut control = vec![0u8; fd_space()];
    let msg = one_fd_message(&mut iov, &mut control);
    // SAFETY: msg_control holds CMSG_SPACE(sizeof(int)) bytes, room for one header and one int.
    unsafe {
        let cm = libc::CMSG_FIRSTHDR(&msg);
        if cm.is_null() {
            return Err(std::io::Error::other("no room for the descriptor"));
        }
        (*cm).cmsg_level = libc::SOL_SOCKET;
        (*cm).cmsg_type = libc::SCM_RIGHTS;
        (*cm).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<libc::c_int>() as u32) as _;
        std::ptr::copy_nonoverlapping(
            (&fd as *const libc::c_int).cast::<u8>(),
            libc::CMSG_DATA(cm),
            std::mem::size_of::<libc::c_int>(),
        );
    }
    loop {
        // SAFETY: a descriptor and a fully initialised msghdr.
        let n = unsafe { libc::sendmsg(out, &msg, libc::MSG_NOSIGNAL) };
        if n >= 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_with(config: &str, host: &str) -> Option<String> {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("config");
        std::fs::write(&f, config).expect("write");
        config_block(Some(&f), host)
    }

    /// A proxy or connect option anywhere in the user's configuration (or
    /// a file it includes) leaves connecting to ssh; so does a host name
    /// that is not plain.
    #[test]
    fn the_block_is_written_only_where_ssh_would_connect_by_itself() {
        assert!(block_with("Host *\n  User deploy\n", "web1.example").is_some());
        assert!(block_with("Host b\n  ProxyJump bastion\n", "web1").is_none());
        assert!(block_with("Host b\n  proxycommand=nc %h %p\n", "web1").is_none());
        assert!(block_with("AddressFamily inet\n", "web1").is_none());
        assert!(block_with("", "web1;touch x").is_none());
        assert!(block_with("", "-oProxyCommand=x").is_none());
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path().join("conf.d");
        std::fs::create_dir(&d).expect("dir");
        std::fs::write(d.join("a.conf"), "Host x\n  ProxyJump y\n").expect("write");
        let inc = format!("Include {}/*.conf\n", d.display());
        assert!(block_with(&inc, "web1").is_none());
        std::fs::write(d.join("a.conf"), "Host x\n  Port 2222\n").expect("write");
        let block = block_with(&inc, "web1").expect("block");
        assert!(block.contains("ProxyUseFdpass yes"), "{block}");
        assert!(block.contains("ssh-connect %h %p"), "{block}");
        // An include that cannot be followed: unknown, so ssh connects.
        assert!(block_with(&format!("Include {}/*/x\n", d.display()), "web1").is_none());
    }

    /// The descriptor received over a Unix socket, as `ssh` receives it.
    fn receive_fd(u: &std::os::unix::net::UnixStream) -> std::net::TcpStream {
        use std::os::fd::{AsRawFd, FromRawFd};
        let mut byte = [0u8; 1];
        let mut iov = libc::iovec {
            iov_base: byte.as_mut_ptr().cast(),
            iov_len: 1,
        };
        let mut control = vec![0u8; fd_space()];
        let mut msg = one_fd_message(&mut iov, &mut control);
        let n = unsafe { libc::recvmsg(u.as_raw_fd(), &mut msg, 0) };
        assert_eq!(n, 1, "recvmsg: {}", std::io::Error::last_os_error());
        let cm = unsafe { libc::CMSG_FIRSTHDR(&msg) };
        assert!(!cm.is_null(), "no descriptor came");
        let mut fd: libc::c_int = -1;
        unsafe {
            std::ptr::copy_nonoverlapping(
                libc::CMSG_DATA(cm),
                (&mut fd as *mut libc::c_int).cast::<u8>(),
                std::mem::size_of::<libc::c_int>(),
            );
            std::net::TcpStream::from_raw_fd(fd)
        }
    }

    /// The socket passed is connected to the listener, with TCP_NODELAY set;
    /// a refused port is ssh's exit 255.
    #[test]
    fn the_connection_is_passed_with_nodelay() {
        use std::io::{Read, Write};
        use std::os::fd::AsFd;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port().to_string();
        let (ours, theirs) = std::os::unix::net::UnixStream::pair().expect("pair");
        assert_eq!(connect_to("127.0.0.1", &port, theirs.as_fd()), 0);
        let mut passed = receive_fd(&ours);
        assert!(passed.nodelay().expect("nodelay"), "TCP_NODELAY is not set");
        let (mut server, _) = listener.accept().expect("accept");
        passed.write_all(b"hi").expect("write");
        let mut got = [0u8; 2];
        server.read_exact(&mut got).expect("read");
        assert_eq!(&got, b"hi");
        // Nothing listens on port 1 (as in tests/unreachable_report.rs): refused.
        assert_eq!(connect_to("127.0.0.1", "1", theirs.as_fd()), 255);
    }
}
