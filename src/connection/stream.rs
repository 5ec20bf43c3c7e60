//! Scripts whose stdin or stdout is a stream of data (a database dump on its
//! way to a file on the host, a backup file on its way into a container),
//! never held whole in memory.
//!
//! The script is passed as the argument of `sh -c` (its stdin is the data),
//! so it must hold no secret: paths and fixed text only, every word quoted
//! with [`super::shell_quote`]. With a become password, the password is the
//! first line of stdin (read by `sudo -S`), then the data follows.

use futures::{Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{Become, Connection, ConnectionError, Output, Transport, error_chain, shell_quote};

/// A spawned script: its pipes, and how to wait for it.
struct Spawned {
    stdin: Option<Box<dyn AsyncWrite + Send + Unpin>>,
    stdout: Box<dyn AsyncRead + Send + Unpin>,
    stderr: Box<dyn AsyncRead + Send + Unpin>,
    child: Child,
}

enum Child {
    Ssh(openssh::Child<std::sync::Arc<openssh::Session>>),
    Local(tokio::process::Child),
}

impl Child {
    async fn wait(self) -> Result<i32, String> {
        match self {
            Child::Ssh(c) => c
                .wait()
                .await
                .map(|s| s.code().unwrap_or(-1))
                .map_err(|e| error_chain(&e)),
            Child::Local(mut c) => c
                .wait()
                .await
                .map(|s| s.code().unwrap_or(-1))
                .map_err(|e| e.to_string()),
        }
    }
}

impl Connection {
    fn command_line(script: &str, become_: Option<&Become>) -> String {
        let sh = format!("/bin/sh -c {}", shell_quote(script));
        match become_ {
            None => sh,
            Some(b) => {
                let user = shell_quote(&b.user);
                match &b.password {
                    None => format!("sudo -n -H -u {user} -- {sh}"),
                    Some(_) => format!("sudo -S -p '' -H -u {user} -- {sh}"),
                }
            }
        }
    }

    async fn spawn_piped(
        &self,
        script: &str,
        become_: Option<&Become>,
    ) -> Result<Spawned, ConnectionError> {
        self.executions
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let exec_err = |e: String| ConnectionError::Exec {
            host: self.name.clone(),
            reason: e,
        };
        let become_ = become_.filter(|_| !self.is_local());
        let line = Self::command_line(script, become_);
        let mut spawned = match &self.transport {
            Transport::Ssh(session) => {
                let mut child = session
                    .clone()
                    .arc_raw_command(&line)
                    .stdin(openssh::Stdio::piped())
                    .stdout(openssh::Stdio::piped())
                    .stderr(openssh::Stdio::piped())
                    .spawn()
                    .await
                    .map_err(|e| exec_err(error_chain(&e)))?;
                let stdin = child.stdin().take().map(|s| Box::new(s) as _);
                let stdout = child
                    .stdout()
                    .take()
                    .ok_or_else(|| exec_err("no stdout".into()))?;
                let stderr = child
                    .stderr()
                    .take()
                    .ok_or_else(|| exec_err("no stderr".into()))?;
                Spawned {
                    stdin,
                    stdout: Box::new(stdout),
                    stderr: Box::new(stderr),
                    child: Child::Ssh(child),
                }
            }
            Transport::Local => {
                let mut child = tokio::process::Command::new("/bin/sh")
                    .arg("-c")
                    .arg(script)
                    .stdin(std::process::Stdio::piped())
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .map_err(|e| exec_err(e.to_string()))?;
                let stdin = child.stdin.take().map(|s| Box::new(s) as _);
                let stdout = child
                    .stdout
                    .take()
                    .ok_or_else(|| exec_err("no stdout".into()))?;
                let stderr = child
                    .stderr
                    .take()
                    .ok_or_else(|| exec_err("no stderr".into()))?;
                Spawned {
                    stdin,
                    stdout: Box::new(stdout),
                    stderr: Box::new(stderr),
                    child: Child::Local(child),
                }
            }
        };
        if let (Some(b), Some(stdin)) = (become_, spawned.stdin.as_mut())
            && let Some(pw) = &b.password
        {
            stdin
                .write_all(format!("{pw}\n").as_bytes())
                .await
                .map_err(|e| exec_err(format!("writing to sudo: {e}")))?;
        }
        Ok(spawned)
    }

    /// Runs `script` with the chunks of `input` as its stdin (then EOF); its
    /// stdout and stderr are collected. An error of the input stream closes
    /// stdin early and is returned after the script ended (the script must
    /// not take a short input for a whole one: callers check a checksum).
    pub async fn run_piped_in<S>(
        &self,
        script: &str,
        become_: Option<&Become>,
        input: S,
    ) -> Result<(Output, Result<(), String>), ConnectionError>
    where
        S: Stream<Item = Result<Vec<u8>, String>> + Send + Unpin,
    {
        let Spawned {
            stdin,
            mut stdout,
            mut stderr,
            child,
        } = self.spawn_piped(script, become_).await?;
        let mut input = input;
        let feed = async move {
            let Some(mut stdin) = stdin else {
                return Err("the script's stdin is closed".to_string());
            };
            let mut result = Ok(());
            while let Some(chunk) = input.next().await {
                match chunk {
                    Ok(bytes) => {
                        if let Err(e) = stdin.write_all(&bytes).await {
                            // The script stopped reading (it failed): its
                            // stderr says why.
                            result = Err(format!("the host stopped reading: {e}"));
                            break;
                        }
                    }
                    Err(e) => {
                        result = Err(e);
                        break;
                    }
                }
            }
            let _ = stdin.shutdown().await;
            drop(stdin);
            result
        };
        let mut out = Vec::new();
        let mut err = Vec::new();
        let (fed, o, e) = tokio::join!(
            feed,
            stdout.read_to_end(&mut out),
            stderr.read_to_end(&mut err)
        );
        let exec_err = |e: String| ConnectionError::Exec {
            host: self.name.clone(),
            reason: e,
        };
        o.map_err(|e| exec_err(e.to_string()))?;
        e.map_err(|e| exec_err(e.to_string()))?;
        let rc = child.wait().await.map_err(exec_err)?;
        Ok((
            Output {
                rc,
                stdout: out,
                stderr: err,
            },
            fed,
        ))
    }

    /// Runs `script` (stdin closed) and copies its stdout into `sink` as it
    /// comes, handing each chunk to `seen` first (a checksum, say); stderr is
    /// collected. Returns the script's rc and stderr, and how writing to the
    /// sink went.
    pub async fn run_piped_out<W>(
        &self,
        script: &str,
        become_: Option<&Become>,
        sink: &mut W,
        seen: &mut (dyn FnMut(&[u8]) + Send),
    ) -> Result<(Output, Result<(), String>), ConnectionError>
    where
        W: AsyncWrite + Unpin + Send + ?Sized,
    {
        let Spawned {
            stdin,
            mut stdout,
            mut stderr,
            child,
        } = self.spawn_piped(script, become_).await?;
        if let Some(mut s) = stdin {
            let _ = s.shutdown().await;
        }
        let pump = async {
            let mut buf = vec![0u8; 64 * 1024];
            let mut result = Ok(());
            loop {
                let n = match stdout.read(&mut buf).await {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) => {
                        result = Err(format!("reading from the host: {e}"));
                        break;
                    }
                };
                seen(&buf[..n]);
                if result.is_ok()
                    && let Err(e) = sink.write_all(&buf[..n]).await
                {
                    // Keep draining the host's stdout so the script ends.
                    result = Err(e.to_string());
                }
            }
            if result.is_ok()
                && let Err(e) = sink.shutdown().await
            {
                result = Err(e.to_string());
            }
            result
        };
        let mut err = Vec::new();
        let (pumped, e) = tokio::join!(pump, stderr.read_to_end(&mut err));
        e.map_err(|e| ConnectionError::Exec {
            host: self.name.clone(),
            reason: e.to_string(),
        })?;
        let rc = child.wait().await.map_err(|e| ConnectionError::Exec {
            host: self.name.clone(),
            reason: e,
        })?;
        Ok((
            Output {
                rc,
                stdout: Vec::new(),
                stderr: err,
            },
            pumped,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_streams_go_in_and_out_whole() {
        let c = Connection::local("localhost");
        let chunks: Vec<Result<Vec<u8>, String>> =
            (0..100u8).map(|i| Ok(vec![i; 10_000])).collect();
        let (o, fed) = c
            .run_piped_in("wc -c; echo done >&2", None, futures::stream::iter(chunks))
            .await
            .expect("run");
        assert_eq!(fed, Ok(()));
        assert_eq!(
            (o.rc, o.stdout_str().trim(), o.stderr_str().trim()),
            (0, "1000000", "done")
        );
        let mut sink: Vec<u8> = Vec::new();
        let mut n = 0usize;
        let (o, pumped) = c
            .run_piped_out(
                "head -c 300000 /dev/zero; exit 4",
                None,
                &mut sink,
                &mut |b: &[u8]| n += b.len(),
            )
            .await
            .expect("run");
        assert_eq!((o.rc, pumped, sink.len(), n), (4, Ok(()), 300_000, 300_000));
    }
}
