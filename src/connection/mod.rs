//! Running shell scripts on a target: over one multiplexed OpenSSH master per
//! host (the system `ssh`, so `~/.ssh/config`, agents and ProxyJump work), or
//! locally for `delegate_to: localhost`. Every remote execution is counted:
//! the count is how we hold ourselves to "a few round trips per host".

pub mod docker;
pub mod forward;
pub mod host_keys;
pub mod write;

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};

use openssh::{KnownHosts, Session, SessionBuilder};

pub use crate::shell::quote as shell_quote;
use tokio::io::AsyncWriteExt;

#[derive(Debug, Clone)]
pub struct SshTarget {
    pub host: String,
    pub port: Option<u16>,
    pub user: Option<String>,
    pub key_file: Option<PathBuf>,
    pub known_hosts_file: Option<PathBuf>,
    pub config_file: Option<PathBuf>,
    pub strict_host_key_checking: KnownHosts,
}

#[derive(Debug, Clone)]
pub struct Become {
    pub user: String,
    pub password: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Output {
    pub rc: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Output {
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error("host {host} is unreachable: {reason}")]
    Unreachable { host: String, reason: String },
    #[error("host {host}: running a command failed: {reason}")]
    Exec { host: String, reason: String },
    #[error("host {host}: {reason}")]
    Config { host: String, reason: String },
    #[error("host {host}: Docker: {reason}")]
    Docker { host: String, reason: String },
}

pub enum Transport {
    /// Shared with the Docker bridges (`docker.rs`), which open sessions of their own.
    Ssh(std::sync::Arc<Session>),
    Local,
}

pub struct Connection {
    pub name: String,
    transport: Transport,
    executions: AtomicUsize,
    docker: tokio::sync::Mutex<Vec<docker::DockerTunnel>>,
    /// Kept to open a fresh connection (`confirm_fresh`).
    target: Option<SshTarget>,
    /// deployer's ssh config file (see `host_keys`), removed when the connection goes.
    _ssh_config: Option<tempfile::TempDir>,
}

impl Connection {
    pub async fn connect(name: &str, target: &SshTarget) -> Result<Connection, ConnectionError> {
        let mut b = SessionBuilder::default();
        b.known_hosts_check(target.strict_host_key_checking.clone());
        b.connect_timeout(std::time::Duration::from_secs(15));
        b.server_alive_interval(std::time::Duration::from_secs(30));
        if let Some(u) = &target.user {
            b.user(u.clone());
        }
        if let Some(p) = target.port {
            b.port(p);
        }
        if let Some(k) = &target.key_file {
            b.keyfile(k);
        }
        if let Some(k) = &target.known_hosts_file {
            b.user_known_hosts_file(k);
        }
        // deployer's own config (KnownHostsCommand none, then the user's):
        // see `host_keys`. Kept in a private directory for the session's life
        // (a fresh connection reads it again).
        let config_dir = tempfile::Builder::new()
            .prefix("deployer-ssh-")
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .tempdir()
            .map_err(|e| ConnectionError::Config {
                host: name.to_string(),
                reason: format!("cannot make a private directory for the ssh config: {e}"),
            })?;
        let config = config_dir.path().join("config");
        std::fs::write(
            &config,
            host_keys::wrapper_config(target.config_file.as_deref()),
        )
        .map_err(|e| ConnectionError::Config {
            host: name.to_string(),
            reason: format!("cannot write {}: {e}", config.display()),
        })?;
        b.config_file(&config);
        let session = b
            .connect(&target.host)
            .await
            .map_err(|e| ConnectionError::Unreachable {
                host: name.to_string(),
                reason: error_chain(&e),
            })?;
        Ok(Connection {
            name: name.to_string(),
            transport: Transport::Ssh(std::sync::Arc::new(session)),
            executions: AtomicUsize::new(0),
            docker: Default::default(),
            target: Some(target.clone()),
            _ssh_config: Some(config_dir),
        })
    }

    pub fn local(name: &str) -> Connection {
        Connection {
            name: name.to_string(),
            transport: Transport::Local,
            executions: AtomicUsize::new(0),
            docker: Default::default(),
            target: None,
            _ssh_config: None,
        }
    }

    /// Proves the host still accepts a NEW SSH connection: a separate master
    /// (its own TCP connection and authentication), not this multiplexed one,
    /// which can outlive a broken sshd or firewall (deploy-rs issue #106).
    /// Used after an automatic rollback.
    pub async fn confirm_fresh(&self) -> Result<(), ConnectionError> {
        let Some(target) = &self.target else {
            return Ok(());
        };
        let fresh = Connection::connect(&self.name, target).await?;
        let out = fresh.run_script("exit 0", None).await;
        fresh.close().await;
        match out {
            Ok(o) if o.rc == 0 => Ok(()),
            Ok(o) => Err(ConnectionError::Exec {
                host: self.name.clone(),
                reason: format!("a fresh connection ran `exit 0` with rc={}", o.rc),
            }),
            Err(e) => Err(e),
        }
    }

    pub fn executions(&self) -> usize {
        self.executions.load(Ordering::Relaxed)
    }

    pub fn is_local(&self) -> bool {
        matches!(self.transport, Transport::Local)
    }

    /// Runs a POSIX shell script (read by `sh -s` from stdin), as the become
    /// user when given. One call is one remote execution. Under `-v` each
    /// execution is logged (host, user, exit status, duration, first line),
    /// under `-vv` with the script's text (see [`crate::ui`]).
    pub async fn run_script(
        &self,
        script: &str,
        become_: Option<&Become>,
    ) -> Result<Output, ConnectionError> {
        let started = std::time::Instant::now();
        let user = become_.map(|b| b.user.as_str()).unwrap_or("(login user)");
        tracing::trace!(host = %self.name, user = %user, "script:\n{}", crate::ui::script_for_log(script));
        let result = self.run_script_once(script, become_).await;
        let ms = started.elapsed().as_millis();
        match &result {
            Ok(out) => tracing::debug!(
                host = %self.name, user = %user, rc = out.rc, ms,
                "remote execution: {}", crate::ui::script_summary(script)
            ),
            Err(e) => tracing::debug!(
                host = %self.name, user = %user, ms,
                "remote execution failed: {}: {}", crate::ui::script_summary(script),
                crate::secrets::mask(&e.to_string())
            ),
        }
        result
    }

    async fn run_script_once(
        &self,
        script: &str,
        become_: Option<&Become>,
    ) -> Result<Output, ConnectionError> {
        self.executions.fetch_add(1, Ordering::Relaxed);
        let mut input = Vec::new();
        let program = match become_ {
            None => "/bin/sh -s".to_string(),
            Some(b) => {
                let user = shell_quote(&b.user);
                match &b.password {
                    None => format!("sudo -n -H -u {user} -- /bin/sh -s"),
                    Some(pw) => {
                        input.extend_from_slice(pw.as_bytes());
                        input.push(b'\n');
                        format!("sudo -S -p '' -H -u {user} -- /bin/sh -s")
                    }
                }
            }
        };
        input.extend_from_slice(script.as_bytes());
        let exec_err = |e: String| ConnectionError::Exec {
            host: self.name.clone(),
            reason: e,
        };
        let out = match &self.transport {
            Transport::Ssh(session) => {
                let mut child = session
                    .raw_command(&program)
                    .stdin(openssh::Stdio::piped())
                    .stdout(openssh::Stdio::piped())
                    .stderr(openssh::Stdio::piped())
                    .spawn()
                    .await
                    .map_err(|e| exec_err(error_chain(&e)))?;
                if let Some(mut stdin) = child.stdin().take() {
                    stdin
                        .write_all(&input)
                        .await
                        .map_err(|e| exec_err(e.to_string()))?;
                    stdin.shutdown().await.ok();
                }
                let o = child
                    .wait_with_output()
                    .await
                    .map_err(|e| exec_err(error_chain(&e)))?;
                // ssh exits 255 when the connection itself failed.
                if o.status.code() == Some(255) && o.stdout.is_empty() {
                    return Err(ConnectionError::Unreachable {
                        host: self.name.clone(),
                        reason: crate::secrets::mask(&String::from_utf8_lossy(&o.stderr)),
                    });
                }
                Output {
                    rc: o.status.code().unwrap_or(-1),
                    stdout: o.stdout,
                    stderr: o.stderr,
                }
            }
            Transport::Local => {
                let mut parts = program.split(' ');
                let cmd = parts.next().unwrap_or("/bin/sh");
                let mut child = tokio::process::Command::new(cmd)
                    .args(parts)
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .map_err(|e| exec_err(e.to_string()))?;
                if let Some(mut stdin) = child.stdin.take() {
                    stdin
                        .write_all(&input)
                        .await
                        .map_err(|e| exec_err(e.to_string()))?;
                    drop(stdin);
                }
                let o = child
                    .wait_with_output()
                    .await
                    .map_err(|e| exec_err(e.to_string()))?;
                Output {
                    rc: o.status.code().unwrap_or(-1),
                    stdout: o.stdout,
                    stderr: o.stderr,
                }
            }
        };
        Ok(out)
    }

    pub async fn close(self) {
        // The Docker bridges hold the session too: stop them first.
        for t in self.docker.into_inner() {
            t.shutdown().await;
        }
        if let Transport::Ssh(s) = self.transport
            && let Ok(s) = std::sync::Arc::try_unwrap(s)
        {
            let _ = s.close().await;
        }
    }

    /// Closes every master at once: one after the other, 20 hosts took ~1 s
    /// (each `ssh -O exit` waits for its master to go).
    pub async fn close_all(conns: Vec<Connection>) {
        futures::future::join_all(conns.into_iter().map(Connection::close)).await;
    }
}

pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_scripts_run_and_are_counted() {
        let c = Connection::local("localhost");
        let o = c
            .run_script("echo hi; echo err >&2; exit 3", None)
            .await
            .expect("run");
        assert_eq!(
            (o.rc, o.stdout_str().as_str(), o.stderr_str().as_str()),
            (3, "hi\n", "err\n")
        );
        assert_eq!(c.executions(), 1);
    }
}
