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
    /// Who read the cached paths (the become user, `None` for the login user),
    /// and whether reads were made as different users. A re-observation folded
    /// into a command's execution runs as the command's user, so it is only done
    /// when that user is the one who read everything cached.
    read_as: Option<Option<String>>,
    read_as_mixed: bool,
}

fn identity(become_: Option<&Become>) -> Option<String> {
    become_.map(|b| b.user.clone())
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
        let todo = self.to_fetch(requests);
        if todo.is_empty() {
            return Ok(());
        }
        let out = conn.run_script(&observe_script(&todo), become_).await?;
        self.fetched(become_, todo, &out.stdout_str());
        Ok(())
    }

    /// What [`Observations::fetch`] would observe for `requests`: the paths not
    /// cached yet (and, when the cache is stale, everything cached so far). Run
    /// [`observe_script`] of it in any execution as `become_`, then hand its
    /// output to [`Observations::fetched`].
    pub fn to_fetch(&self, requests: &[(String, Want)]) -> Vec<(String, Want)> {
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
        todo
    }

    /// Stores what `observe_script(&todo)` printed, run as `become_`.
    pub fn fetched(&mut self, become_: Option<&Become>, todo: Vec<(String, Want)>, out: &str) {
        let refreshes_all = self.stale;
        self.stale = false;
        self.note_reader(become_, refreshes_all);
        self.store(todo, out);
    }

    fn note_reader(&mut self, become_: Option<&Become>, refreshed_everything: bool) {
        let who = identity(become_);
        if refreshed_everything {
            self.read_as_mixed = false;
        } else if let Some(prev) = &self.read_as {
            self.read_as_mixed |= *prev != who;
        }
        self.read_as = Some(who);
    }

    fn store(&mut self, todo: Vec<(String, Want)>, out: &str) {
        let mut parsed = parse_observations(out, &todo);
        for (i, (p, w)) in todo.into_iter().enumerate() {
            let obs = parsed.remove(&i).unwrap_or_else(ObservedFile::absent);
            self.files.insert(p.clone(), obs);
            self.wants.insert(p, w);
        }
    }

    /// What a command about to run as `become_` should re-observe in its own
    /// execution, right after it ran: every cached path, when all of them were
    /// read as that same user (else `None`: the cache is invalidated and the next
    /// request refetches it as its own user, one execution more).
    pub fn refresh_after_command(&self, become_: Option<&Become>) -> Option<Vec<(String, Want)>> {
        if self.wants.is_empty()
            || self.read_as_mixed
            || self.read_as.as_ref() != Some(&identity(become_))
        {
            return None;
        }
        let mut todo: Vec<(String, Want)> =
            self.wants.iter().map(|(p, w)| (p.clone(), *w)).collect();
        todo.sort_by(|a, b| a.0.cmp(&b.0));
        Some(todo)
    }

    /// Stores the re-observation a command's execution made (the output of
    /// `observe_script(todo)`): the cache is fresh again, nothing is refetched.
    pub fn refreshed_after_command(&mut self, todo: Vec<(String, Want)>, out: &str) {
        self.files.clear();
        self.wants.clear();
        self.stale = false;
        self.read_as_mixed = false;
        self.store(todo, out);
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

/// The slow path, one path at a time (several forks each): only for paths a
/// line-based listing cannot carry (a newline or carriage return in the name).
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

fn odd_name(p: &str) -> bool {
    p.contains(['\n', '\r'])
}

/// One script that observes every path with a fixed number of processes: the
/// existence and type tests are shell builtins, then ONE `stat` over all paths
/// that exist, ONE `sha256sum` over all regular files (and one `sha1sum` where
/// asked); only symlink targets and asked-for contents cost a process each.
/// Output: `E\t<indices>`, `S|<stat fields>|<name>` lines, `#H` then
/// sha256sum's lines, `#1` then sha1sum's, `#X`, then `L`/`C` lines by index.
pub fn observe_script(todo: &[(String, Want)]) -> String {
    let mut s = String::new();
    let q: Vec<String> = todo.iter().map(|(p, _)| shell_quote(p)).collect();
    let fast: Vec<usize> = (0..todo.len()).filter(|&i| !odd_name(&todo[i].0)).collect();
    let each_regular = |s: &mut String, pick: &dyn Fn(usize) -> bool| {
        s.push_str("set --\n");
        for &i in &fast {
            if pick(i) {
                let p = &q[i];
                s.push_str(&format!(
                    "if [ -f {p} ] && [ ! -L {p} ]; then set -- \"$@\" {p}; fi\n"
                ));
            }
        }
    };
    s.push_str("set --\nE=\n");
    for &i in &fast {
        let p = &q[i];
        s.push_str(&format!(
            "if [ -e {p} ] || [ -L {p} ]; then set -- \"$@\" {p}; E=\"$E {i}\"; fi\n"
        ));
    }
    s.push_str("printf 'E\\t%s\\n' \"$E\"\n");
    s.push_str("[ $# -eq 0 ] || stat -c 'S|%F|%a|%U|%G|%u|%g|%s|%Y|%n' -- \"$@\" 2>/dev/null\n");
    each_regular(&mut s, &|_| true);
    s.push_str("printf '#H\\n'\n[ $# -eq 0 ] || sha256sum -- \"$@\" 2>/dev/null\n");
    if fast.iter().any(|&i| todo[i].1.sha1) {
        each_regular(&mut s, &|i| todo[i].1.sha1);
        s.push_str("printf '#1\\n'\n[ $# -eq 0 ] || sha1sum -- \"$@\" 2>/dev/null\n");
    }
    s.push_str("printf '#X\\n'\n");
    for &i in &fast {
        let p = &q[i];
        s.push_str(&format!(
            "if [ -L {p} ]; then printf 'L\\t{i}\\t%s\\n' \"$(readlink -- {p})\"; fi\n"
        ));
        if todo[i].1.content {
            s.push_str(&format!(
                "if [ -f {p} ] && [ ! -L {p} ]; then printf 'C\\t{i}\\t'; base64 -w0 < {p} 2>/dev/null; echo; fi\n"
            ));
        }
    }
    let slow: Vec<usize> = (0..todo.len()).filter(|&i| odd_name(&todo[i].0)).collect();
    if !slow.is_empty() {
        s.push_str(OBSERVE_FN);
        for i in slow {
            let w = todo[i].1;
            let flags = format!(
                "{}{}",
                if w.content { "c" } else { "" },
                if w.sha1 { "1" } else { "" }
            );
            s.push_str(&format!(
                "o {i} {} '{}'\n",
                q[i],
                if flags.is_empty() { "-" } else { &flags }
            ));
        }
    }
    s
}

/// A `sha256sum`/`sha1sum` output line: (hash, file name). coreutils escapes a
/// name holding a backslash or newline and marks the line with a leading `\`.
fn hash_line(line: &str, len: usize) -> Option<(String, String)> {
    let (escaped, rest) = match line.strip_prefix('\\') {
        Some(r) => (true, r),
        None => (false, line),
    };
    let hash = rest.get(..len)?;
    if !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let name = rest.get(len..)?;
    let name = name
        .strip_prefix("  ")
        .or_else(|| name.strip_prefix(" *"))?;
    let name = if escaped {
        let mut out = String::new();
        let mut chars = name.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                match chars.next() {
                    Some('n') => out.push('\n'),
                    Some('r') => out.push('\r'),
                    Some(o) => out.push(o),
                    None => out.push('\\'),
                }
            } else {
                out.push(c);
            }
        }
        out
    } else {
        name.to_string()
    };
    Some((hash.to_string(), name))
}

fn from_stat(stat: &[&str]) -> ObservedFile {
    let kind = match stat.first().copied().unwrap_or("") {
        k if k.starts_with("regular") => FileKind::File,
        "directory" => FileKind::Directory,
        "symbolic link" => FileKind::Link,
        _ => FileKind::Other,
    };
    let num = |i: usize| stat.get(i).and_then(|v| v.parse::<i64>().ok()).unwrap_or(0);
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
        sha256: None,
        sha1: None,
        link_target: None,
        content: None,
    }
}

/// Parses what `observe_script(todo)` printed: index in `todo` -> what was seen.
/// A path that is not in the output does not exist.
pub fn parse_observations(out: &str, todo: &[(String, Want)]) -> HashMap<usize, ObservedFile> {
    let n = todo.len();
    let index: HashMap<&str, usize> = todo
        .iter()
        .enumerate()
        .map(|(i, (p, _))| (p.as_str(), i))
        .collect();
    let mut map: HashMap<usize, ObservedFile> = HashMap::new();
    // Which section the lines belong to: stat lines are marked, hash lines are not.
    let mut section = ' ';
    for line in out.lines() {
        match line {
            "#H" | "#1" | "#X" => {
                section = line.chars().nth(1).unwrap_or(' ');
                continue;
            }
            _ => {}
        }
        if let Some(e) = line.strip_prefix("E\t") {
            for i in e.split_whitespace().filter_map(|i| i.parse::<usize>().ok()) {
                if i < n {
                    // Exists; the stat line fills it in (a failed stat leaves '?').
                    map.insert(i, from_stat(&["?", "0", "?", "?", "0", "0", "0", "0"]));
                }
            }
            continue;
        }
        if let Some(st) = line.strip_prefix("S|") {
            let fields: Vec<&str> = st.splitn(9, '|').collect();
            if let Some(i) = fields.get(8).and_then(|name| index.get(name)) {
                map.insert(*i, from_stat(&fields[..8]));
            }
            continue;
        }
        if section == 'H' || section == '1' {
            let len = if section == 'H' { 64 } else { 40 };
            if let Some((hash, name)) = hash_line(line, len)
                && let Some(f) = index.get(name.as_str()).and_then(|i| map.get_mut(i))
            {
                if section == 'H' {
                    f.sha256 = Some(hash);
                } else {
                    f.sha1 = Some(hash);
                }
            }
            continue;
        }
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
                let mut f = from_stat(&stat);
                f.sha256 = sha256;
                f.sha1 = sha1;
                f.link_target = link;
                map.insert(idx, f);
            }
            Some("L") => {
                if let Some(f) = map.get_mut(&idx) {
                    f.link_target = Some(parts.collect::<Vec<_>>().join("\t"));
                }
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

    fn todo(paths: &[&str]) -> Vec<(String, Want)> {
        paths
            .iter()
            .map(|p| (p.to_string(), Want::default()))
            .collect()
    }

    #[test]
    fn parses_the_batch_output() {
        let t = todo(&["/a", "/gone", "/l", "/odd\\name", "/odd\nline"]);
        let out = "E\t 0 2 3\n\
                   S|regular file|644|root|root|0|0|3|17|/a\n\
                   S|symbolic link|777|root|root|0|0|4|1|/l\n\
                   S|regular empty file|600|app|app|7|8|0|5|/odd\\name\n\
                   #H\nabcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789  /a\n\
                   \\e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855  /odd\\\\name\n\
                   #X\nL\t2\t/etc\nC\t0\taGkK\n\
                   P\t4\t1\tregular file|640|root|root|0|0|1|9\t00ff\t-\t-\n";
        let m = parse_observations(out, &t);
        assert_eq!(m[&0].mode, 0o644);
        assert_eq!(m[&0].kind, FileKind::File);
        assert_eq!(m[&0].size, 3);
        assert_eq!(m[&0].mtime, 17);
        assert_eq!(
            m[&0].sha256.as_deref(),
            Some("abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789")
        );
        assert_eq!(m[&0].content.as_deref(), Some(&b"hi\n"[..]));
        assert!(!m.contains_key(&1), "absent: not in the output");
        assert_eq!(m[&2].kind, FileKind::Link);
        assert_eq!(m[&2].link_target.as_deref(), Some("/etc"));
        assert_eq!(m[&2].sha256, None);
        assert_eq!((m[&3].owner.as_str(), m[&3].uid, m[&3].gid), ("app", 7, 8));
        assert_eq!(
            m[&3].sha256.as_deref(),
            Some("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
            "sha256sum's escaped name is matched"
        );
        assert_eq!(m[&4].mode, 0o640);
        assert_eq!(m[&4].sha256.as_deref(), Some("00ff"));
    }

    #[test]
    fn the_script_forks_per_batch_not_per_path() {
        let paths: Vec<String> = (0..50).map(|i| format!("/srv/x/f{i}.conf")).collect();
        let t: Vec<(String, Want)> = paths.iter().map(|p| (p.clone(), Want::default())).collect();
        let s = observe_script(&t);
        assert_eq!(s.matches("stat -c").count(), 1, "{s}");
        assert_eq!(s.matches("sha256sum").count(), 1, "{s}");
        assert!(!s.contains("sha1sum") && !s.contains("base64"), "{s}");
    }

    /// Every kind of path, observed for real by the batch script and by the
    /// per-path function it replaced: the same answers.
    #[tokio::test]
    async fn the_batch_script_agrees_with_the_per_path_function() {
        let dir = tempfile::tempdir().expect("tmp");
        let d = dir.path();
        std::fs::write(d.join("file"), "hello\n").expect("write");
        std::fs::write(d.join("empty"), "").expect("write");
        std::fs::write(d.join("back\\slash |pipe"), "x").expect("write");
        std::fs::write(d.join("new\nline"), "y").expect("write");
        std::fs::create_dir(d.join("dir")).expect("mkdir");
        std::os::unix::fs::symlink(d.join("file"), d.join("link")).expect("link");
        std::os::unix::fs::symlink(d.join("nowhere"), d.join("dangling")).expect("link");
        let names = [
            "file",
            "empty",
            "back\\slash |pipe",
            "new\nline",
            "dir",
            "link",
            "dangling",
            "missing",
            "-dash",
        ];
        let t: Vec<(String, Want)> = names
            .iter()
            .map(|n| {
                (
                    d.join(n).display().to_string(),
                    Want {
                        content: true,
                        sha1: true,
                    },
                )
            })
            .collect();
        let conn = Connection::local("localhost");
        let batch = conn
            .run_script(&observe_script(&t), None)
            .await
            .expect("batch");
        let batch = parse_observations(&batch.stdout_str(), &t);
        let mut slow = String::from(OBSERVE_FN);
        for (i, (p, _)) in t.iter().enumerate() {
            slow.push_str(&format!("o {i} {} c1\n", shell_quote(p)));
        }
        let slow = conn.run_script(&slow, None).await.expect("slow");
        let slow = parse_observations(&slow.stdout_str(), &t);
        for (i, n) in names.iter().enumerate() {
            let show = |m: &HashMap<usize, ObservedFile>| {
                m.get(&i).map(|f| {
                    (
                        f.exists,
                        f.kind,
                        f.mode,
                        f.owner.clone(),
                        f.uid,
                        f.size,
                        f.mtime,
                        f.sha256.clone(),
                        f.sha1.clone(),
                        f.link_target.clone(),
                        f.content.clone(),
                    )
                })
            };
            let absent_as_none =
                |o: Option<_>| o.filter(|f: &(bool, _, _, _, _, _, _, _, _, _, _)| f.0);
            assert_eq!(
                absent_as_none(show(&batch)),
                absent_as_none(show(&slow)),
                "{n}"
            );
        }
        assert!(batch[&0].sha256.is_some() && batch[&2].sha1.is_some());
        assert_eq!(batch[&3].content.as_deref(), Some(&b"y"[..]));
        assert_eq!(batch[&5].kind, FileKind::Link);
        assert!(!batch.contains_key(&7));
    }

    #[tokio::test]
    async fn a_command_re_observes_only_as_the_user_who_read_the_cache() {
        let dir = tempfile::tempdir().expect("tmp");
        let a = dir.path().join("a").display().to_string();
        let conn = Connection::local("localhost");
        let mut obs = Observations::default();
        assert!(obs.refresh_after_command(None).is_none(), "empty cache");
        obs.fetch(&conn, None, &[(a.clone(), Want::default())])
            .await
            .expect("fetch");
        let root = Become {
            user: "root".into(),
            password: None,
        };
        assert!(obs.refresh_after_command(Some(&root)).is_none());
        let todo = obs.refresh_after_command(None).expect("same user");
        assert_eq!(todo, vec![(a.clone(), Want::default())]);
        std::fs::write(&a, "x").expect("write");
        let out = conn
            .run_script(&observe_script(&todo), None)
            .await
            .expect("observe");
        obs.refreshed_after_command(todo, &out.stdout_str());
        assert!(obs.get(&a, Want::default()).expect("cached").exists);
        assert_eq!(conn.executions(), 2);
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
