//! The Docker API of a target, reached through the host's SSH master: a local
//! Unix socket forwarded to the remote daemon socket (`ssh -L sock:sock`, the
//! way `docker -H ssh://` reaches it), so no Docker port is ever opened on the
//! network. One forward per connection and socket path, opened on first use.

use std::path::Path;

use bollard::{ClientVersion, Docker};

use super::{Connection, ConnectionError, Transport, error_chain};

/// Engine 20.10 (Debian 12's `docker.io`) speaks API 1.41; every call we
/// make exists in 1.41, and newer daemons still accept it.
pub const API_VERSION: ClientVersion = ClientVersion {
    major_version: 1,
    minor_version: 41,
};

/// The default daemon socket on a Linux host.
pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";

/// A forwarded socket: the client and the directory holding the local end,
/// which must live as long as the client.
pub(super) struct DockerTunnel {
    pub(super) remote_socket: String,
    pub(super) client: Docker,
    pub(super) _dir: Option<tempfile::TempDir>,
}

impl Connection {
    /// A Docker API client for the daemon behind `remote_socket` on this host.
    /// Over SSH the daemon is reached as the SSH login user, whatever the
    /// task's `become`: that user must be able to open the socket (root, or a
    /// member of the `docker` group).
    pub async fn docker(&self, remote_socket: &str) -> Result<Docker, ConnectionError> {
        let mut tunnels = self.docker.lock().await;
        if let Some(t) = tunnels.iter().find(|t| t.remote_socket == remote_socket) {
            return Ok(t.client.clone());
        }
        let err = |reason: String| ConnectionError::Docker {
            host: self.name.clone(),
            reason,
        };
        let (local, dir) = match &self.transport {
            Transport::Local => (remote_socket.to_string(), None),
            Transport::Ssh(session) => {
                let dir = tempfile::Builder::new()
                    .prefix("deployer-docker-")
                    .tempdir()
                    .map_err(|e| err(format!("cannot make a directory for the socket: {e}")))?;
                let local = dir.path().join("docker.sock");
                session
                    .request_port_forward(
                        openssh::ForwardType::Local,
                        openssh::Socket::UnixSocket {
                            path: local.as_path().into(),
                        },
                        openssh::Socket::UnixSocket {
                            path: Path::new(remote_socket).into(),
                        },
                    )
                    .await
                    .map_err(|e| {
                        err(format!(
                            "cannot forward the Docker socket {remote_socket} over SSH: {}",
                            error_chain(&e)
                        ))
                    })?;
                (local.to_string_lossy().into_owned(), Some(dir))
            }
        };
        let client = Docker::connect_with_unix(&local, 120, &API_VERSION)
            .map_err(|e| err(format!("cannot open the Docker API client: {e}")))?;
        if let Err(e) = client.ping().await {
            return Err(err(format!(
                "the Docker daemon at {remote_socket} does not answer through SSH ({}); \
                 is it running, and may the SSH login user open the socket (root, or a member of its group)?",
                error_chain(&e)
            )));
        }
        tunnels.push(DockerTunnel {
            remote_socket: remote_socket.to_string(),
            client: client.clone(),
            _dir: dir,
        });
        Ok(client)
    }
}
