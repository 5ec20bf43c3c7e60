//! Observed state of files on a host, fetched in one batch: one remote script
//! stats (and hashes, and where asked reads) every path a play will touch, so an
//! idempotent re-run costs one round trip for all of them, not one per task.

use std::collections::HashMap;

use base64::Engine as _;

use crate::connection::{Become, Connection, ConnectionError, shell_quote};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    File,
    Directory,
    Link,
    Other,
}

#[derive(Debug, Clone)]
pub struct ObservedFile {
    pub exists: bool,
    pub kind: FileKind,
    pub mode: u32,
    pub owner: String,
    pub group: String,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub mtime: i64,
    pub sha256: Option<String>,
    pub sha1: Option<String>,
    pub link_target: Option<String>,
    pub content: Option<Vec<u8>>,
}

impl ObservedFile {
    pub fn absent() -> ObservedFile {
        ObservedFile {
            exists: false,
            kind: FileKind::Other,
            mode: 0,
            owner: String::new(),
            group: String::new(),
            uid: 0,
            gid: 0,
            size: 0,
            mtime: 0,
            sha256: None,
            sha1: None,
            link_target: None,
            content: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Want {
    pub content: bool,
    pub sha1: bool,
}

#[derive(Debug, Default)]
pub struct Observations {
    pub files: HashMap<String, ObservedFile>,
    /// What was asked for each cached path, so a later, wider request refetches.
    wants: HashMap<String, Want>,
    /// Set after something with unknown effects ran (a command, a shell): every
    /// cached path is refetched, in one execution with the next request.
    stale: bool,
}

impl Observations {
    pub fn get(&self, path: &str, want: Want) -> Option<&ObservedFile> {
        if self.stale {
            return None;
        }
        let have = self.wants.get(path)?;
        if (want.content && !have.content) || (want.sha1 && !have.sha1) {
            return None;
        }
        self.files.get(path)
    }

    /// A command or shell ran and may have changed any file: the cache is
    /// refetched as a whole (one execution) when next asked.
    pub fn invalidate_all(&mut self) {
        if !self.files.is_empty() {
            self.stale = true;
        }
    }

    pub fn forget(&mut self, path: &str) {
        self.files.remove(path);
        self.wants.remove(path);
    }

    /// Forgets a path and everything under it (after `rm -rf`, `mkdir`, ...).
    pub fn forget_tree(&mut self, path: &str) {
        let prefix = format!("{}/", path.trim_end_matches('/'));
        self.files
            .retain(|p, _| p != path && !p.starts_with(&prefix));
        self.wants
            .retain(|p, _| p != path && !p.starts_with(&prefix));
    }

    /// Fetches every requested path that is not cached yet, in one execution.
    pub async fn fetch(
        &mut self,
        conn: &Connection,
        become_: Option<&Become>,
        requests: &[(String, Want)],
    ) -> Result<(), ConnectionError> {
        let mut todo: Vec<(String, Want)> = Vec::new();
        for (p, w) in requests {
            if self.get(p, *w).is_none() && !todo.iter().any(|(tp, _)| tp == p) {
                let merged =
                    requests
                        .iter()
                        .filter(|(rp, _)| rp == p)
                        .fold(Want::default(), |a, (_, b)| Want {
                            content: a.content || b.content,
                            sha1: a.sha1 || b.sha1,
                        });
                todo.push((p.clone(), merged));
            }
        }
        if self.stale {
            // Refresh everything cached so far along with this request.
            for (p, w) in &self.wants {
                if !todo.iter().any(|(tp, _)| tp == p) {
                    todo.push((p.clone(), *w));
                }
            }
        }
        if todo.is_empty() {
            return Ok(());
        }
        let out = conn.run_script(&observe_script(&todo), become_).await?;
        self.stale = false;
        let parsed = parse_observations(&out.stdout_str(), todo.len());
        for (i, (p, w)) in todo.into_iter().enumerate() {
            let obs = parsed.get(&i).cloned().unwrap_or_else(ObservedFile::absent);
            self.files.insert(p.clone(), obs);
            self.wants.insert(p, w);
        }
        Ok(())
    }

    pub async fn one(
        &mut self,
        conn: &Connection,
        become_: Option<&Become>,
        path: &str,
        want: Want,
    ) -> Result<ObservedFile, ConnectionError> {
        self.fetch(conn, become_, &[(path.to_string(), want)])
            .await?;
        Ok(self
            .files
            .get(path)
            .cloned()
            .unwrap_or_else(ObservedFile::absent))
    }

    /// Records what a write just made, so later tasks need not ask again.
    pub fn record(&mut self, path: &str, file: ObservedFile) {
        let want = Want {
            content: file.content.is_some(),
            sha1: file.sha1.is_some(),
        };
        self.files.insert(path.to_string(), file);
        self.wants.insert(path.to_string(), want);
    }
}

const OBSERVE_FN: &str = r#"o() {
  if [ -e "$2" ] || [ -L "$2" ]; then
    s=$(stat -c '%F|%a|%U|%G|%u|%g|%s|%Y' -- "$2" 2>/dev/null) || s='?|0|?|?|0|0|0|0'
    h=-; l=-; h1=-
    case "$s" in
      regular*) h=$(sha256sum < "$2" 2>/dev/null | cut -c1-64); [ -n "$h" ] || h=-
        case "$3" in *1*) h1=$(sha1sum < "$2" 2>/dev/null | cut -c1-40); [ -n "$h1" ] || h1=- ;; esac ;;
      symbolic*) l=$(readlink -- "$2") ;;
    esac
    printf 'P\t%s\t1\t%s\t%s\t%s\t%s\n' "$1" "$s" "$h" "$h1" "$l"
    case "$3" in *c*) case "$s" in regular*) printf 'C\t%s\t' "$1"; base64 -w0 < "$2" 2>/dev/null; echo ;; esac ;; esac
  else
    printf 'P\t%s\t0\n' "$1"
  fi
}
"#;

pub fn observe_script(todo: &[(String, Want)]) -> String {
    let mut s = String::from(OBSERVE_FN);
    for (i, (p, w)) in todo.iter().enumerate() {
        let flags = format!(
            "{}{}",
            if w.content { "c" } else { "" },
            if w.sha1 { "1" } else { "" }
        );
        s.push_str(&format!(
            "o {i} {} '{}'\n",
            shell_quote(p),
            if flags.is_empty() { "-" } else { &flags }
        ));
    }
    s
}

pub fn parse_observations(out: &str, n: usize) -> HashMap<usize, ObservedFile> {
    let mut map: HashMap<usize, ObservedFile> = HashMap::new();
    for line in out.lines() {
        let mut parts = line.split('\t');
        let tag = parts.next();
        let Some(idx) = parts.next().and_then(|i| i.parse::<usize>().ok()) else {
            continue;
        };
        if idx >= n {
            continue;
        }
        match tag {
            Some("P") => {
                if parts.next() != Some("1") {
                    map.insert(idx, ObservedFile::absent());
                    continue;
                }
                let stat: Vec<&str> = parts.next().unwrap_or("").split('|').collect();
                let sha256 = parts.next().filter(|h| *h != "-").map(str::to_string);
                let sha1 = parts.next().filter(|h| *h != "-").map(str::to_string);
                let link = parts.next().filter(|h| *h != "-").map(str::to_string);
                let kind = match stat.first().copied().unwrap_or("") {
                    k if k.starts_with("regular") => FileKind::File,
                    "directory" => FileKind::Directory,
                    "symbolic link" => FileKind::Link,
                    _ => FileKind::Other,
                };
                let num = |i: usize| stat.get(i).and_then(|v| v.parse::<i64>().ok()).unwrap_or(0);
                map.insert(
                    idx,
                    ObservedFile {
                        exists: true,
                        kind,
                        mode: stat
                            .get(1)
                            .and_then(|m| u32::from_str_radix(m, 8).ok())
                            .unwrap_or(0),
                        owner: stat.get(2).unwrap_or(&"").to_string(),
                        group: stat.get(3).unwrap_or(&"").to_string(),
                        uid: num(4) as u32,
                        gid: num(5) as u32,
                        size: num(6) as u64,
                        mtime: num(7),
                        sha256,
                        sha1,
                        link_target: link,
                        content: None,
                    },
                );
            }
            Some("C") => {
                let b64 = parts.next().unwrap_or("");
                if let (Some(f), Ok(bytes)) = (
                    map.get_mut(&idx),
                    base64::engine::general_purpose::STANDARD.decode(b64),
                ) {
                    f.content = Some(bytes);
                }
            }
            _ => {}
        }
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_batch_output() {
        let out = "P\t0\t1\tregular file|644|root|root|0|0|3|17\tabc\t-\t-\nC\t0\taGkK\nP\t1\t0\nP\t2\t1\tsymbolic link|777|root|root|0|0|4|1\t-\t-\t/etc\n";
        let m = parse_observations(out, 3);
        assert_eq!(m[&0].mode, 0o644);
        assert_eq!(m[&0].content.as_deref(), Some(&b"hi\n"[..]));
        assert!(!m[&1].exists);
        assert_eq!(m[&2].kind, FileKind::Link);
        assert_eq!(m[&2].link_target.as_deref(), Some("/etc"));
    }

    #[tokio::test]
    async fn observes_local_files_in_one_execution() {
        let dir = tempfile::tempdir().expect("tmp");
        let f = dir.path().join("a.txt");
        std::fs::write(&f, "hello\n").expect("write");
        let conn = Connection::local("localhost");
        let mut obs = Observations::default();
        let p = f.display().to_string();
        let missing = dir.path().join("nope").display().to_string();
        obs.fetch(
            &conn,
            None,
            &[
                (
                    p.clone(),
                    Want {
                        content: true,
                        sha1: true,
                    },
                ),
                (missing.clone(), Want::default()),
            ],
        )
        .await
        .expect("fetch");
        assert_eq!(conn.executions(), 1);
        let a = &obs.files[&p];
        assert_eq!(a.content.as_deref(), Some(&b"hello\n"[..]));
        assert_eq!(
            a.sha256.as_deref(),
            Some("5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03")
        );
        assert_eq!(
            a.sha1.as_deref(),
            Some("f572d396fae9206628714fb2ce00f72e94f2258f")
        );
        assert!(!obs.files[&missing].exists);
    }

    #[tokio::test]
    async fn invalidate_all_refetches_every_cached_path_in_one_execution() {
        let dir = tempfile::tempdir().expect("tmp");
        let a = dir.path().join("a").display().to_string();
        let b = dir.path().join("b").display().to_string();
        let conn = Connection::local("localhost");
        let mut obs = Observations::default();
        obs.fetch(
            &conn,
            None,
            &[(a.clone(), Want::default()), (b.clone(), Want::default())],
        )
        .await
        .expect("fetch");
        assert!(!obs.files[&a].exists);
        // A command creates both files behind the cache's back.
        std::fs::write(&a, "x").expect("write");
        std::fs::write(&b, "y").expect("write");
        obs.invalidate_all();
        assert!(
            obs.one(&conn, None, &a, Want::default())
                .await
                .expect("one")
                .exists
        );
        assert!(
            obs.one(&conn, None, &b, Want::default())
                .await
                .expect("one")
                .exists
        );
        assert_eq!(conn.executions(), 2);
    }
}
