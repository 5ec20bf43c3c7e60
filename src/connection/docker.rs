//! The Docker API of a target, reached through the host's SSH master, so no
//! Docker port is ever opened on the network:
//! - as the SSH login user: a local Unix socket forwarded to the remote daemon
//!   socket (`ssh -L sock:sock`, the way `docker -H ssh://` reaches it);
//! - with `become`: one remote relay per host, started as the become user
//!   through `sudo -n` (or `sudo -S`), listening on a socket in a private
//!   directory that only the login user may open and relaying to the daemon
//!   socket; the local socket is forwarded to it as above, so each API
//!   connection is one SSH channel, not one process. The relay is a few lines
//!   of `python3` (on every Ansible host) and ends when its SSH session does.
//!   Without python3, or with `DEPLOYER_DOCKER_BRIDGE=stdio`, every
//!   connection gets its own `sudo` bridge process instead (`docker system
//!   dial-stdio`, `socat` or `python3`), which costs one execution per API
//!   request (bollard does not pool connections).
//!
//! One client per connection, socket path and become user, opened on first use.

use std::path::Path;
use std::sync::Arc;

use bollard::{ClientVersion, Docker};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

use super::{Become, Connection, ConnectionError, Transport, error_chain, shell_quote};

/// Engine 20.10 (Debian 12's `docker.io`) speaks API 1.41; every call we
/// make exists in 1.41, and newer daemons still accept it.
pub const API_VERSION: ClientVersion = ClientVersion {
    major_version: 1,
    minor_version: 41,
};

/// The default daemon socket on a Linux host.
pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";

/// A client and what keeps its local socket alive: the directory holding
/// the socket and, for a bridge, the task accepting its connections (aborted
/// on drop, with every bridge it started).
pub(super) struct DockerTunnel {
    remote_socket: String,
    become_user: Option<String>,
    client: Docker,
    _dir: Option<tempfile::TempDir>,
    bridge: Option<Bridge>,
    relay: Option<Relay>,
}

/// The remote relay's process; closing its stdin ends it.
struct Relay {
    child: openssh::Child<Arc<openssh::Session>>,
}

/// The accept loop of a bridged socket and the signal that ends it.
struct Bridge {
    task: tokio::task::JoinHandle<()>,
    stop: tokio::sync::oneshot::Sender<()>,
}

impl DockerTunnel {
    /// Ends the bridges and waits until they have let go of the SSH session,
    /// so the connection can close its master cleanly.
    pub(super) async fn shutdown(mut self) {
        if let Some(b) = self.bridge.take() {
            let _ = b.stop.send(());
            let _ = b.task.await;
        }
        if let Some(mut r) = self.relay.take() {
            drop(r.child.stdin().take());
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), r.child.wait()).await;
        }
    }
}

impl Drop for DockerTunnel {
    fn drop(&mut self) {
        if let Some(b) = &self.bridge {
            b.task.abort();
        }
    }
}

/// The remote side of one bridged connection: stdin/stdout <-> the socket.
/// Exit 127 with a message when no bridge program exists on the host.
fn bridge_script(socket: &str) -> String {
    let q = shell_quote(socket);
    format!(
        r#"if [ ! -S {q} ]; then echo "no Docker daemon socket at {socket} (is Docker installed and running?)" >&2; exit 3; fi
if command -v docker >/dev/null 2>&1; then exec docker -H unix://{q} system dial-stdio; fi
if command -v socat >/dev/null 2>&1; then exec socat - UNIX-CONNECT:{q}; fi
if command -v python3 >/dev/null 2>&1; then exec python3 -c '{PY}' {q}; fi
echo "no bridge to the Docker socket on the host: install the docker CLI, socat or python3" >&2; exit 127"#,
        PY = PY_BRIDGE
    )
}

/// The relay, as the become user: prints the path of its socket, then serves
/// until its stdin closes. Exit 127 when python3 is missing (then the
/// per-connection bridge is used).
fn relay_script(socket: &str) -> String {
    let q = shell_quote(socket);
    format!(
        r#"if [ ! -S {q} ]; then echo "no Docker daemon socket at {socket} (is Docker installed and running?)" >&2; exit 3; fi
if command -v python3 >/dev/null 2>&1; then exec python3 -c '{PY}' {q}; fi
echo "{NO_PYTHON}" >&2; exit 127"#,
        PY = PY_RELAY,
        NO_PYTHON = NO_PYTHON
    )
}

const NO_PYTHON: &str = "deployer: no python3 for the Docker relay";

/// A directory only the login user (`SUDO_UID`) may enter, a socket in it,
/// one thread pair per connection; the directory goes when stdin closes.
const PY_RELAY: &str = "import os,shutil,socket,sys,tempfile,threading
target=sys.argv[1]
uid=int(os.environ.get(\"SUDO_UID\",os.getuid()))
gid=int(os.environ.get(\"SUDO_GID\",os.getgid()))
d=tempfile.mkdtemp(prefix=\"deployer-docker-\")
os.chown(d,uid,gid)
path=os.path.join(d,\"docker.sock\")
srv=socket.socket(socket.AF_UNIX)
srv.bind(path)
os.chown(path,uid,gid)
os.chmod(path,0o600)
srv.listen(64)
def pump(a,b):
    try:
        while True:
            x=a.recv(65536)
            if not x:
                break
            b.sendall(x)
    except OSError:
        pass
    try:
        b.shutdown(socket.SHUT_WR)
    except OSError:
        pass
def serve(c):
    t=socket.socket(socket.AF_UNIX)
    try:
        t.connect(target)
    except OSError:
        c.close()
        return
    up=threading.Thread(target=pump,args=(c,t),daemon=True)
    up.start()
    pump(t,c)
    up.join(30)
    c.close()
    t.close()
def accept():
    while True:
        c,_=srv.accept()
        threading.Thread(target=serve,args=(c,),daemon=True).start()
threading.Thread(target=accept,daemon=True).start()
sys.stdout.write(path+chr(10))
sys.stdout.flush()
try:
    while os.read(0,4096):
        pass
finally:
    shutil.rmtree(d,ignore_errors=True)";

/// stdin -> socket in a thread, socket -> stdout in the main one; exits when
/// the daemon closes the connection.
const PY_BRIDGE: &str = "import os,socket,sys,threading
s=socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
def up():
    while True:
        d=os.read(0,65536)
        if not d:
            break
        s.sendall(d)
    s.shutdown(socket.SHUT_WR)
threading.Thread(target=up,daemon=True).start()
out=sys.stdout.buffer
while True:
    d=s.recv(65536)
    if not d:
        break
    out.write(d)
    out.flush()";

impl Connection {
    /// A Docker API client for the daemon behind `remote_socket` on this host:
    /// as the become user when `become_` is given (a bridge through `sudo -n`,
    /// or `sudo -S` with the become password), else as the SSH login user,
    /// who must then be able to open the socket (root, or its group).
    pub async fn docker(
        &self,
        remote_socket: &str,
        become_: Option<&Become>,
    ) -> Result<Docker, ConnectionError> {
        let become_ = become_.filter(|_| !self.is_local());
        let become_user = become_.map(|b| b.user.clone());
        let mut tunnels = self.docker.lock().await;
        if let Some(t) = tunnels
            .iter()
            .find(|t| t.remote_socket == remote_socket && t.become_user == become_user)
        {
            return Ok(t.client.clone());
        }
        let err = |reason: String| ConnectionError::Docker {
            host: self.name.clone(),
            reason,
        };
        tracing::debug!(
            host = %self.name,
            user = %become_user.as_deref().unwrap_or("(login user)"),
            "docker: opening the API of {remote_socket}"
        );
        let mut bridge = None;
        let mut relay = None;
        let (local, dir) = match &self.transport {
            Transport::Local => (remote_socket.to_string(), None),
            Transport::Ssh(session) => {
                let dir = tempfile::Builder::new()
                    .prefix("deployer-docker-")
                    .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
                    .tempdir()
                    .map_err(|e| err(format!("cannot make a directory for the socket: {e}")))?;
                let local = dir.path().join("docker.sock");
                match become_ {
                    None => forward(session, &local, remote_socket).await.map_err(err)?,
                    Some(b) => {
                        let per_connection =
                            std::env::var("DEPLOYER_DOCKER_BRIDGE").is_ok_and(|v| v == "stdio");
                        let started = if per_connection {
                            Err(None)
                        } else {
                            // The relay is a remote execution like any script.
                            self.executions
                                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            start_relay(session.clone(), remote_socket, b).await
                        };
                        match started {
                            Ok((r, path)) => {
                                relay = Some(r);
                                forward(session, &local, &path).await.map_err(err)?;
                            }
                            Err(None) => {
                                bridge = Some(
                                    start_bridge(session.clone(), &local, remote_socket, b)
                                        .map_err(err)?,
                                );
                            }
                            Err(Some(why)) => return Err(err(why)),
                        }
                    }
                }
                (local.to_string_lossy().into_owned(), Some(dir))
            }
        };
        let tunnel = |client: Docker| DockerTunnel {
            remote_socket: remote_socket.to_string(),
            become_user: become_user.clone(),
            client,
            _dir: dir,
            bridge,
            relay,
        };
        let host = self.name.clone();
        let client = Docker::connect_with_unix(&local, 120, &API_VERSION)
            .map_err(|e| err(format!("cannot open the Docker API client: {e}")))?
            // `-vv`: each Docker API call, method and path (bodies and
            // headers, where credentials travel, are never logged).
            .with_request_modifier(move |req| {
                tracing::trace!(
                    host = %host,
                    "docker: {} {}",
                    req.method(),
                    crate::ui::script_for_log(
                        req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/")
                    )
                );
                req
            });
        let t = tunnel(client.clone());
        if let Err(e) = client.ping().await {
            drop(t);
            let why = match become_ {
                Some(b) => self.bridge_failure(remote_socket, b).await,
                None => self.socket_failure(remote_socket).await,
            };
            return Err(err(why.unwrap_or_else(|| {
                format!(
                    "the Docker daemon at {remote_socket} does not answer through SSH ({})",
                    error_chain(&e)
                )
            })));
        }
        tunnels.push(t);
        Ok(client)
    }

    /// Why the login user could not reach the daemon: no socket, or no
    /// permission on it (one extra execution, only on failure).
    async fn socket_failure(&self, socket: &str) -> Option<String> {
        let q = shell_quote(socket);
        let out = self
            .run_script(
                &format!(
                    "if [ ! -S {q} ]; then echo missing; elif [ -r {q} ] && [ -w {q} ]; then echo ok; \
                     else echo \"denied $(id -un) $(stat -c '%U:%G %a' {q})\"; fi"
                ),
                None,
            )
            .await
            .ok()?;
        let text = out.stdout_str();
        let text = text.trim();
        if text == "missing" {
            Some(format!(
                "no Docker daemon socket at {socket} on the host: is Docker installed and running?"
            ))
        } else if let Some(rest) = text.strip_prefix("denied ") {
            let mut parts = rest.splitn(2, ' ');
            let user = parts.next().unwrap_or("?");
            let perms = parts.next().unwrap_or("?");
            Some(format!(
                "the SSH login user '{user}' may not open {socket} ({perms}): set `become: true` on the task or play to reach Docker as root, or add '{user}' to the socket's group"
            ))
        } else {
            None
        }
    }

    /// Why a bridge did not answer: its own message (no socket, no bridge
    /// program, sudo refusing), from one run of the same command.
    async fn bridge_failure(&self, socket: &str, b: &Become) -> Option<String> {
        let Transport::Ssh(session) = &self.transport else {
            return None;
        };
        let mut child = session
            .raw_command(bridge_command(socket, b))
            .stdin(openssh::Stdio::piped())
            .stdout(openssh::Stdio::null())
            .stderr(openssh::Stdio::piped())
            .spawn()
            .await
            .ok()?;
        if let Some(mut stdin) = child.stdin().take() {
            if let Some(pw) = &b.password {
                let _ = stdin.write_all(format!("{pw}\n").as_bytes()).await;
            }
            let _ = stdin.shutdown().await;
        }
        let out =
            tokio::time::timeout(std::time::Duration::from_secs(20), child.wait_with_output())
                .await
                .ok()?
                .ok()?;
        let stderr = crate::secrets::mask(String::from_utf8_lossy(&out.stderr).trim());
        let user = &b.user;
        if stderr.contains("a password is required") || stderr.contains("sudo:") {
            Some(format!(
                "cannot reach Docker as '{user}' through sudo: {stderr}"
            ))
        } else if stderr.is_empty() {
            None
        } else {
            Some(format!("reaching Docker as '{user}': {stderr}"))
        }
    }
}

async fn forward(
    session: &openssh::Session,
    local: &Path,
    remote_socket: &str,
) -> Result<(), String> {
    session
        .request_port_forward(
            openssh::ForwardType::Local,
            openssh::Socket::UnixSocket { path: local.into() },
            openssh::Socket::UnixSocket {
                path: Path::new(remote_socket).into(),
            },
        )
        .await
        .map_err(|e| {
            format!(
                "cannot forward the Docker socket {remote_socket} over SSH: {}",
                error_chain(&e)
            )
        })
}

/// Starts the relay and reads the path of its socket. `Err(None)`: no
/// python3 on the host (use the per-connection bridge); `Err(Some(why))`:
/// sudo refused, no daemon socket, or the relay failed, in words.
async fn start_relay(
    session: Arc<openssh::Session>,
    remote_socket: &str,
    b: &Become,
) -> Result<(Relay, String), Option<String>> {
    let user = &b.user;
    let command = sudo_command(&relay_script(remote_socket), b);
    let mut child = session
        .arc_raw_command(command)
        .stdin(openssh::Stdio::piped())
        .stdout(openssh::Stdio::piped())
        .stderr(openssh::Stdio::piped())
        .spawn()
        .await
        .map_err(|e| {
            Some(format!(
                "cannot start the Docker relay: {}",
                error_chain(&e)
            ))
        })?;
    if let (Some(pw), Some(stdin)) = (&b.password, child.stdin().as_mut()) {
        stdin
            .write_all(format!("{pw}\n").as_bytes())
            .await
            .map_err(|e| Some(format!("cannot start the Docker relay: {e}")))?;
    }
    let mut line = String::new();
    if let Some(stdout) = child.stdout().take() {
        let mut reader = tokio::io::BufReader::new(stdout);
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(30),
            reader.read_line(&mut line),
        )
        .await;
    }
    let path = line.trim().to_string();
    if path.starts_with('/') {
        return Ok((Relay { child }, path));
    }
    // No path: the relay said why on stderr and exited.
    drop(child.stdin().take());
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr().take() {
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            e.read_to_string(&mut stderr),
        )
        .await;
    }
    let stderr = crate::secrets::mask(stderr.trim());
    if stderr.contains(NO_PYTHON) {
        return Err(None);
    }
    Err(Some(
        if stderr.starts_with("sudo:") || stderr.contains("\nsudo:") {
            format!("cannot reach Docker as '{user}' through sudo: {stderr}")
        } else if stderr.is_empty() {
            format!("the Docker relay (as '{user}') ended without a word")
        } else {
            format!("reaching Docker as '{user}': {stderr}")
        },
    ))
}

fn sudo_command(script: &str, b: &Become) -> String {
    let user = shell_quote(&b.user);
    let sudo = match &b.password {
        None => format!("sudo -n -H -u {user}"),
        Some(_) => format!("sudo -S -p '' -H -u {user}"),
    };
    format!("{sudo} -- /bin/sh -c {}", shell_quote(script))
}

fn bridge_command(socket: &str, b: &Become) -> String {
    sudo_command(&bridge_script(socket), b)
}

/// Listens on `local`; each connection gets its own remote bridge process
/// over the master, its bytes copied both ways until either side closes.
fn start_bridge(
    session: Arc<openssh::Session>,
    local: &Path,
    remote_socket: &str,
    b: &Become,
) -> Result<Bridge, String> {
    let listener = tokio::net::UnixListener::bind(local)
        .map_err(|e| format!("cannot listen on {}: {e}", local.display()))?;
    let command = bridge_command(remote_socket, b);
    let password = b.password.clone();
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        loop {
            let stream = tokio::select! {
                _ = &mut stopped => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(_) => break,
                },
            };
            let session = session.clone();
            let command = command.clone();
            let password = password.clone();
            conns.spawn(async move {
                let _ = bridge_one(session, &command, password.as_deref(), stream).await;
            });
            // Reap finished bridges so the set does not grow.
            while conns.try_join_next().is_some() {}
        }
        conns.shutdown().await;
    });
    Ok(Bridge { task, stop })
}

async fn bridge_one(
    session: Arc<openssh::Session>,
    command: &str,
    password: Option<&str>,
    stream: tokio::net::UnixStream,
) -> Result<(), std::io::Error> {
    let mut child = session
        .arc_raw_command(command)
        .stdin(openssh::Stdio::piped())
        .stdout(openssh::Stdio::piped())
        .stderr(openssh::Stdio::null())
        .spawn()
        .await
        .map_err(std::io::Error::other)?;
    let (Some(mut stdin), Some(mut stdout)) = (child.stdin().take(), child.stdout().take()) else {
        return Ok(());
    };
    if let Some(pw) = password {
        stdin.write_all(format!("{pw}\n").as_bytes()).await?;
    }
    let (mut rd, mut wr) = stream.into_split();
    let up = async {
        let r = tokio::io::copy(&mut rd, &mut stdin).await;
        let _ = stdin.shutdown().await;
        r
    };
    let down = async {
        let r = tokio::io::copy(&mut stdout, &mut wr).await;
        let _ = wr.shutdown().await;
        r
    };
    // The daemon closing its side (stdout EOF) ends the connection even if
    // the client keeps its side open.
    tokio::select! {
        r = down => { r?; }
        _ = async { let _ = up.await; std::future::pending::<()>().await } => {}
    }
    drop(child);
    Ok(())
}
