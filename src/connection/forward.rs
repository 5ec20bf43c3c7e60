//! A TCP address as the target host sees it (a container's address on one of
//! its bridge networks), reached from the control machine through the host's
//! SSH master: a local Unix socket, in a directory only we can open, forwarded
//! to `address:port` (`ssh -L sock:address:port`). The host's sshd makes the
//! connection, so nothing is published on any network and no port is opened
//! on the control machine either.

use std::path::{Path, PathBuf};

use super::{Connection, ConnectionError, Transport, error_chain};

/// Where an HTTP client connects to reach the forwarded address.
pub enum Reach {
    /// A local Unix socket forwarded over SSH to the address.
    UnixSocket(PathBuf),
    /// The address itself (the connection is local: the control machine is the host).
    Direct,
}

/// One open forward; [`ForwardedPort::close`] ends it on the master.
pub struct ForwardedPort {
    pub host: String,
    pub port: u16,
    pub reach: Reach,
    _dir: Option<tempfile::TempDir>,
}

impl Connection {
    /// Forwards `host:port`, as this host resolves and routes it, to the
    /// control machine. Over SSH this needs the server to allow TCP forwarding
    /// (`AllowTcpForwarding`, on by default in OpenSSH).
    pub async fn forward_tcp(
        &self,
        host: &str,
        port: u16,
    ) -> Result<ForwardedPort, ConnectionError> {
        let err = |reason: String| ConnectionError::Config {
            host: self.name.clone(),
            reason,
        };
        match &self.transport {
            Transport::Local => Ok(ForwardedPort {
                host: host.to_string(),
                port,
                reach: Reach::Direct,
                _dir: None,
            }),
            Transport::Ssh(session) => {
                let dir = tempfile::Builder::new()
                    .prefix("deployer-forward-")
                    .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
                    .tempdir()
                    .map_err(|e| err(format!("cannot make a directory for the socket: {e}")))?;
                let local = dir.path().join("port.sock");
                session
                    .request_port_forward(
                        openssh::ForwardType::Local,
                        openssh::Socket::UnixSocket {
                            path: local.as_path().into(),
                        },
                        openssh::Socket::TcpSocket {
                            host: host.into(),
                            port,
                        },
                    )
                    .await
                    .map_err(|e| {
                        err(format!(
                            "cannot forward {host}:{port} over SSH (does sshd allow TCP forwarding?): {}",
                            error_chain(&e)
                        ))
                    })?;
                Ok(ForwardedPort {
                    host: host.to_string(),
                    port,
                    reach: Reach::UnixSocket(local),
                    _dir: Some(dir),
                })
            }
        }
    }
}

impl ForwardedPort {
    pub fn socket(&self) -> Option<&Path> {
        match &self.reach {
            Reach::UnixSocket(p) => Some(p),
            Reach::Direct => None,
        }
    }

    /// Ends the forward on the master (the socket directory goes with `self`).
    pub async fn close(self, conn: &Connection) {
        if let (Transport::Ssh(session), Reach::UnixSocket(local)) = (&conn.transport, &self.reach)
        {
            let _ = session
                .close_port_forward(
                    openssh::ForwardType::Local,
                    openssh::Socket::UnixSocket {
                        path: local.as_path().into(),
                    },
                    openssh::Socket::TcpSocket {
                        host: self.host.as_str().into(),
                        port: self.port,
                    },
                )
                .await;
        }
    }
}
