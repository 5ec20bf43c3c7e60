//! A session on a running `ssh` master, opened by speaking the master's
//! control-socket protocol (OpenSSH's `PROTOCOL.mux`, `mux.c`) directly
//! instead of starting an `ssh -S` client process for it. On a warm master
//! the process was most of a session's cost: `ssh -S ctl -O check` alone
//! took ~4.5 ms here (loading `ssh` and reading its configuration), against
//! well under a millisecond for the messages below.
//!
//! The exchange, every message a `uint32` length and a body in SSH wire
//! format:
//!
//! - both sides send `MUX_MSG_HELLO` with protocol version 4;
//! - the client sends `MUX_C_NEW_SESSION` (request id, reserved string, no
//!   terminal, no X11 or agent forwarding, no subsystem, no escape
//!   character, empty terminal type, the command, then this process's
//!   environment as `NAME=value` strings: the master passes on only what its
//!   `SendEnv` names, and adds its `SetEnv`, as for an `ssh -S` client, whose
//!   sessions thus get the same `LANG`), then
//!   passes three descriptors, one per message of one zero byte: the
//!   session's stdin, stdout and stderr (here: pipes whose other ends
//!   deployer keeps);
//! - once the server has confirmed the channel, the master answers
//!   `MUX_S_SESSION_OPENED` (or `MUX_S_FAILURE`/`MUX_S_PERMISSION_DENIED`
//!   with a reason), and when the command ends `MUX_S_EXIT_MESSAGE` with its
//!   exit status, then closes the control connection.
//!
//! The control connection must stay open while the session runs: the master
//! ends the session when its client goes. [`MuxChild`] holds it in a task of
//! its own; dropping the child ends the session (as killing `ssh -S` would).

use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::path::Path;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;

const MUX_MSG_HELLO: u32 = 0x0000_0001;
const MUX_C_NEW_SESSION: u32 = 0x1000_0002;
const MUX_S_PERMISSION_DENIED: u32 = 0x8000_0002;
const MUX_S_FAILURE: u32 = 0x8000_0003;
const MUX_S_EXIT_MESSAGE: u32 = 0x8000_0004;
const MUX_S_SESSION_OPENED: u32 = 0x8000_0006;
const MUX_S_TTY_ALLOC_FAIL: u32 = 0x8000_0008;
const MUX_VERSION: u32 = 4;
/// No escape character (`EscapeChar none`).
const NO_ESCAPE: u32 = 0xffff_ffff;
/// A master's messages here are a few dozen bytes: anything near this is
/// not a master speaking the protocol.
const MAX_MESSAGE: usize = 256 * 1024;

/// A session's local ends: what deployer writes to the command's stdin and
/// reads from its stdout and stderr.
pub(crate) struct MuxSession {
    pub(crate) stdin: pipe::Sender,
    pub(crate) stdout: pipe::Receiver,
    pub(crate) stderr: pipe::Receiver,
    pub(crate) child: MuxChild,
}

/// The session's control connection, held by a task that reads the
/// master's answers up to the exit status.
pub(crate) struct MuxChild {
    task: Option<tokio::task::JoinHandle<Result<Option<i32>, String>>>,
}

impl MuxChild {
    /// Waits for the command to end: its exit status, `None` when the
    /// session ended without one (the connection was lost), or why the
    /// master did not open the session.
    pub(crate) async fn wait(mut self) -> Result<Option<i32>, String> {
        match self.task.take() {
            Some(t) => t
                .await
                .map_err(|e| format!("the ssh control connection failed: {e}"))?,
            None => Ok(None),
        }
    }
}

impl Drop for MuxChild {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// Opens a session running `command` on the master listening on `ctl`.
pub(crate) async fn open(ctl: &Path, command: &str) -> std::io::Result<MuxSession> {
    let sock = tokio::net::UnixStream::connect(ctl).await?;
    open_on(sock, command).await
}

async fn open_on(mut sock: tokio::net::UnixStream, command: &str) -> std::io::Result<MuxSession> {
    let mut out = Vec::with_capacity(64 + command.len());
    put_message(&mut out, &hello());
    put_message(&mut out, &new_session(command, &environment()));
    sock.write_all(&out).await?;
    let (stdin_r, stdin_w) = pipe_pair()?;
    let (stdout_r, stdout_w) = pipe_pair()?;
    let (stderr_r, stderr_w) = pipe_pair()?;
    for fd in [&stdin_r, &stdout_w, &stderr_w] {
        // One byte each on an empty socket buffer: sent at once, or an error.
        loop {
            sock.writable().await?;
            match sock.try_io(tokio::io::Interest::WRITABLE, || {
                super::dial::send_fd(fd.as_fd(), sock.as_fd())
            }) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                r => break r?,
            }
        }
    }
    // The master holds its own copies now.
    drop((stdin_r, stdout_w, stderr_w));
    let task = tokio::spawn(async move { answers(&mut sock).await });
    Ok(MuxSession {
        stdin: pipe::Sender::from_owned_fd(stdin_w)?,
        stdout: pipe::Receiver::from_owned_fd(stdout_r)?,
        stderr: pipe::Receiver::from_owned_fd(stderr_r)?,
        child: MuxChild { task: Some(task) },
    })
}

/// The master's answers: its hello, the session's opening, its exit status,
/// the end of the connection.
async fn answers(sock: &mut tokio::net::UnixStream) -> Result<Option<i32>, String> {
    let lost = |e: std::io::Error| format!("the ssh control connection failed: {e}");
    let Some(m) = read_message(sock).await.map_err(lost)? else {
        return Err("the ssh master closed its control connection".into());
    };
    let mut r = Reader(&m);
    if r.u32() != Some(MUX_MSG_HELLO) {
        return Err("the ssh master did not answer as a master".into());
    }
    match r.u32() {
        Some(MUX_VERSION) => {}
        v => {
            return Err(format!(
                "the ssh master speaks control protocol {v:?}, not {MUX_VERSION}"
            ));
        }
    }
    let Some(m) = read_message(sock).await.map_err(lost)? else {
        return Err("the ssh master closed its control connection".into());
    };
    let mut r = Reader(&m);
    let (kind, _request) = (r.u32(), r.u32());
    let session = match kind {
        Some(MUX_S_SESSION_OPENED) => r.u32(),
        Some(MUX_S_FAILURE | MUX_S_PERMISSION_DENIED) => {
            let why = r.string().unwrap_or_default();
            return Err(format!(
                "the ssh master did not open a session: {}",
                String::from_utf8_lossy(why)
            ));
        }
        other => return Err(format!("unexpected answer from the ssh master: {other:?}")),
    };
    let mut status = None;
    while let Some(m) = read_message(sock).await.map_err(lost)? {
        let mut r = Reader(&m);
        match r.u32() {
            Some(MUX_S_EXIT_MESSAGE) if r.u32() == session => {
                status = r.u32().map(|s| s as i32);
            }
            Some(MUX_S_TTY_ALLOC_FAIL) => {}
            other => return Err(format!("unexpected answer from the ssh master: {other:?}")),
        }
    }
    Ok(status)
}

fn hello() -> Vec<u8> {
    let mut b = Vec::new();
    put_u32(&mut b, MUX_MSG_HELLO);
    put_u32(&mut b, MUX_VERSION);
    b
}

/// This process's environment as `NAME=value` (the master keeps what its
/// `SendEnv` patterns name, as `ssh -S` and the master both do).
fn environment() -> Vec<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    std::env::vars_os()
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| [k.as_bytes(), b"=", v.as_bytes()].concat())
        .collect()
}

fn new_session(command: &str, env: &[Vec<u8>]) -> Vec<u8> {
    let mut b = Vec::new();
    put_u32(&mut b, MUX_C_NEW_SESSION);
    put_u32(&mut b, 1); // request id
    put_string(&mut b, b""); // reserved
    put_u32(&mut b, 0); // terminal
    put_u32(&mut b, 0); // X11 forwarding
    put_u32(&mut b, 0); // agent forwarding
    put_u32(&mut b, 0); // subsystem
    put_u32(&mut b, NO_ESCAPE);
    put_string(&mut b, b""); // terminal type
    put_string(&mut b, command.as_bytes());
    for e in env {
        put_string(&mut b, e);
    }
    b
}

fn put_u32(b: &mut Vec<u8>, v: u32) {
    b.extend_from_slice(&v.to_be_bytes());
}

fn put_string(b: &mut Vec<u8>, s: &[u8]) {
    // A command line is far below 4 GiB (the shell's loop is a few KiB).
    put_u32(b, u32::try_from(s.len()).unwrap_or(u32::MAX));
    b.extend_from_slice(s);
}

fn put_message(out: &mut Vec<u8>, body: &[u8]) {
    put_string(out, body);
}

/// One message's body, or `None` at the end of the connection.
async fn read_message(sock: &mut tokio::net::UnixStream) -> std::io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match sock.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_MESSAGE {
        return Err(std::io::Error::other(format!(
            "a message of {len} bytes from the ssh master"
        )));
    }
    let mut body = vec![0u8; len];
    sock.read_exact(&mut body).await?;
    Ok(Some(body))
}

/// Reads SSH wire-format fields off a message.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn u32(&mut self) -> Option<u32> {
        let (head, rest) = self.0.split_first_chunk::<4>()?;
        self.0 = rest;
        Some(u32::from_be_bytes(*head))
    }

    fn string(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        if n > self.0.len() {
            return None;
        }
        let (s, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(s)
    }
}

/// A pipe, both ends close-on-exec: (read end, write end).
fn pipe_pair() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2 writes two descriptors into an array of two.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both descriptors are new and owned by nothing else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_request_is_laid_out_as_the_master_reads_it() {
        let m = new_session("true", &[b"LANG=C.UTF-8".to_vec()]);
        let mut r = Reader(&m);
        assert_eq!(r.u32(), Some(MUX_C_NEW_SESSION));
        assert_eq!(r.u32(), Some(1));
        assert_eq!(r.string(), Some(&b""[..]));
        for _ in 0..4 {
            assert_eq!(r.u32(), Some(0));
        }
        assert_eq!(r.u32(), Some(NO_ESCAPE));
        assert_eq!(r.string(), Some(&b""[..]));
        assert_eq!(r.string(), Some(&b"true"[..]));
        assert_eq!(r.string(), Some(&b"LANG=C.UTF-8"[..]));
        assert!(r.0.is_empty());
        let mut framed = Vec::new();
        put_message(&mut framed, &hello());
        assert_eq!(framed, [0, 0, 0, 8, 0, 0, 0, 1, 0, 0, 0, 4]);
    }

    fn message(fields: &[&[u8]]) -> Vec<u8> {
        let body: Vec<u8> = fields.concat();
        let mut m = Vec::new();
        put_message(&mut m, &body);
        m
    }

    /// The master's answers as OpenSSH's mux.c writes them (byte layouts from
    /// PROTOCOL.mux): an opened session then its exit status; a refused one
    /// with the master's reason; a connection closed with no exit status.
    #[tokio::test]
    async fn answers_give_the_exit_status_or_the_masters_reason() {
        let be = |v: u32| v.to_be_bytes().to_vec();
        let hello = message(&[&be(MUX_MSG_HELLO), &be(MUX_VERSION)]);
        type Want = Result<Option<i32>, &'static str>;
        let cases: Vec<(Vec<u8>, Want)> = vec![
            (
                [
                    hello.clone(),
                    message(&[&be(MUX_S_SESSION_OPENED), &be(1), &be(7)]),
                    message(&[&be(MUX_S_EXIT_MESSAGE), &be(7), &be(3)]),
                ]
                .concat(),
                Ok(Some(3)),
            ),
            (
                [
                    hello.clone(),
                    message(&[
                        &be(MUX_S_FAILURE),
                        &be(1),
                        &be(b"Session open refused by peer".len() as u32),
                        b"Session open refused by peer",
                    ]),
                ]
                .concat(),
                Err("refused"),
            ),
            (
                [
                    hello.clone(),
                    message(&[&be(MUX_S_SESSION_OPENED), &be(1), &be(7)]),
                ]
                .concat(),
                Ok(None),
            ),
            (message(&[&be(MUX_MSG_HELLO), &be(3)]), Err("protocol")),
        ];
        for (bytes, want) in cases {
            let (mut ours, mut theirs) = tokio::net::UnixStream::pair().expect("pair");
            theirs.write_all(&bytes).await.expect("write");
            drop(theirs);
            let got = answers(&mut ours).await;
            match (&got, &want) {
                (Ok(g), Ok(w)) => assert_eq!(g, w),
                (Err(g), Err(w)) => assert!(g.contains(w), "{g}"),
                _ => panic!("got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn a_short_or_oversized_field_is_not_read() {
        assert_eq!(Reader(&[0, 0, 1]).u32(), None);
        assert_eq!(Reader(&[0, 0, 0, 9, b'a']).string(), None);
    }
}
