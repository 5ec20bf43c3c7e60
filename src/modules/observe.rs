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
    /// Device, inode and change time of each path as its observation saw it
    /// (`observe_script`'s stat): after a command, paths whose stamp did not
    /// move keep what was observed (see [`stamp_script`]).
    stamps: HashMap<String, String>,
    /// Set after something with unknown effects ran (a command, a shell): every
    /// cached path is refetched, in one execution with the next request.
    stale: bool,
    /// Set after a command that left the check of what it changed to a later
    /// one ([`Observations::leave_unstamped`]): nothing cached is trusted
    /// until a command's stamps ([`Observations::restamped_after_command`])
    /// or a fetch ([`Observations::fetch`] stamps first) checked it.
    unstamped: bool,
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
        if self.stale || self.unstamped {
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

    /// A command ran as `become_` and the next command's stamps will tell what
    /// it changed: until then nothing cached is trusted. When the cache was
    /// not all read as that user, the next command cannot check it: it is
    /// refetched instead ([`Observations::invalidate_all`]).
    pub fn leave_unstamped(&mut self, become_: Option<&Become>) {
        if self.files.is_empty() {
            return;
        }
        if self.read_as_mixed || self.read_as.as_ref() != Some(&identity(become_)) {
            self.stale = true;
        } else {
            self.unstamped = true;
        }
    }

    pub fn forget(&mut self, path: &str) {
        self.files.remove(path);
        self.wants.remove(path);
        self.stamps.remove(path);
    }

    /// Forgets a path and everything under it (after `rm -rf`, `mkdir`, ...).
    pub fn forget_tree(&mut self, path: &str) {
        let prefix = format!("{}/", path.trim_end_matches('/'));
        self.files
            .retain(|p, _| p != path && !p.starts_with(&prefix));
        self.wants
            .retain(|p, _| p != path && !p.starts_with(&prefix));
        self.stamps
            .retain(|p, _| p != path && !p.starts_with(&prefix));
    }

    /// Fetches every requested path that is not cached yet, in one execution.
    pub async fn fetch(
        &mut self,
        conn: &Connection,
        become_: Option<&Become>,
        requests: &[(String, Want)],
    ) -> Result<(), ConnectionError> {
        if self.unstamped {
            // A command ran and left its check for later: done now (one
            // `stat`), so what it did not touch stays cached.
            match self.refresh_after_command(become_) {
                Some(todo) => {
                    let out = conn.run_script(&stamp_script(&todo), become_).await?;
                    self.restamped_after_command(todo, &out.stdout_str());
                }
                None => {
                    self.unstamped = false;
                    self.stale = true;
                }
            }
        }
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
        if self.stale || self.unstamped {
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
        let refreshes_all = self.stale || self.unstamped;
        self.stale = false;
        self.unstamped = false;
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
        let mut stamps = parse_stamps(out, &todo, "S|", 8);
        for (i, (p, w)) in todo.into_iter().enumerate() {
            let obs = parsed.remove(&i).unwrap_or_else(ObservedFile::absent);
            match stamps.remove(&i) {
                Some(st) if obs.exists => self.stamps.insert(p.clone(), st),
                _ => self.stamps.remove(&p),
            };
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

    /// Stores what `stamp_script(todo)` printed right after a command ran
    /// (`todo` from [`Observations::refresh_after_command`]): a path keeps what
    /// was observed when it is still absent, or still there with the same
    /// device, inode, size and change time (any write, chmod, chown, rename or
    /// replacement moves one of them); every other path is forgotten and
    /// observed again when a task asks for it.
    pub fn restamped_after_command(&mut self, todo: Vec<(String, Want)>, out: &str) {
        let exists = parse_exists(out, todo.len());
        let mut now = parse_stamps(out, &todo, "T|", 0);
        for (i, (p, _)) in todo.into_iter().enumerate() {
            let was_absent = self.files.get(&p).is_some_and(|f| !f.exists);
            let same = match (exists.contains(&i), now.remove(&i)) {
                (false, _) => was_absent,
                (true, Some(st)) => !was_absent && self.stamps.get(&p) == Some(&st),
                (true, None) => false,
            };
            if !same {
                self.forget(&p);
            }
        }
        self.stale = false;
        self.unstamped = false;
        self.read_as_mixed = false;
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
        // What a write made has no stamp: a command after it re-observes it.
        self.stamps.remove(path);
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
      symbolic*) l=$(readlink -- "$2")
        case "$l" in *'
'*) l='\n' ;; esac ;;
    esac
    printf 'P\t%s\t1\t%s\t%s\t%s\t%s\n' "$1" "$s" "$h" "$h1" "$l"
    case "$3" in *c*) case "$s" in regular*) printf 'C\t%s\t' "$1"; base64 -w0 < "$2" 2>/dev/null; echo ;; esac ;; esac
  else
    printf 'P\t%s\t0\n' "$1"
  fi
}
"#;

/// The target of a link whose target has a newline in it (not carried by
/// the line-based listing of the slow path): a newline alone, which no
/// wanted target is, so such a link is replaced when a task wants another.
pub const UNSHOWN_TARGET: &str = "\n";

fn odd_name(p: &str) -> bool {
    p.contains(['\n', '\r'])
}

/// A name `stat`'s `escape` quoting prints as it is (printable ASCII, no
/// backslash): its symlink target can be read from the `%N` of the one
/// `stat`, with no `readlink` process.
fn plain_name(p: &str) -> bool {
    p.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'\\')
}

/// A target as `stat`'s `escape` quoting prints it: C escapes (`\\`, `\n`,
/// `\t`, ..., `\ooo` for bytes the locale does not print); `None` for an
/// escape it does not make (the output is not what was expected).
fn unescape_target(s: &str) -> Option<String> {
    let mut out: Vec<u8> = Vec::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            out.push(b[i]);
            i += 1;
            continue;
        }
        let c = *b.get(i + 1)?;
        let byte = match c {
            b'\\' => b'\\',
            b'n' => b'\n',
            b't' => b'\t',
            b'r' => b'\r',
            b'a' => 0x07,
            b'b' => 0x08,
            b'f' => 0x0c,
            b'v' => 0x0b,
            b'0'..=b'7' => {
                let oct = b.get(i + 1..i + 4)?;
                if !oct.iter().all(|d| (b'0'..=b'7').contains(d)) {
                    return None;
                }
                let v = oct.iter().fold(0u32, |v, d| v * 8 + u32::from(d - b'0'));
                out.push(u8::try_from(v).ok()?);
                i += 4;
                continue;
            }
            _ => return None,
        };
        out.push(byte);
        i += 2;
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// One script that observes every path with a fixed number of processes: the
/// existence and type tests are shell builtins, then ONE `stat` over all paths
/// that exist, ONE `sha256sum` over all regular files (and one `sha1sum` where
/// asked), ONE `od` for asked-for contents. Symlink targets come from the
/// `stat` too (`%N`, escaped), except for names `stat` would escape
/// ([`plain_name`]), which cost a `readlink` each.
/// Output: `E\t<indices>`, `S|<stat fields>|<name>` lines each followed by
/// an `N|<name> -> <target>` line, `#H` then sha256sum's lines, `#1` then
/// sha1sum's, `#X`, then `L` lines by index, then `#C` and the contents.
pub fn observe_script(todo: &[(String, Want)]) -> String {
    let mut s = String::new();
    let q: Vec<String> = todo.iter().map(|(p, _)| shell_quote(p)).collect();
    let fast: Vec<usize> = (0..todo.len()).filter(|&i| !odd_name(&todo[i].0)).collect();
    // Each path is written once per list it is in; the lists are filtered
    // by shell loops (builtins), so the script stays small however many
    // paths there are (a large script costs the shell time to read, and a
    // here-document over a pipe's size a process to write it).
    s.push_str(&keep_existing(&fast, &q));
    s.push_str(
        "[ $# -eq 0 ] || QUOTING_STYLE=escape stat --printf 'S|%F|%a|%U|%G|%u|%g|%s|%Y|%d:%i:%s:%z|%n\\nN|%N\\n' -- \"$@\" 2>/dev/null\n",
    );
    // The regular files among those that exist.
    s.push_str(KEEP_REGULAR);
    s.push_str("printf '#H\\n'\n[ $# -eq 0 ] || sha256sum -- \"$@\" 2>/dev/null\n");
    let sha1: Vec<usize> = fast.iter().copied().filter(|&i| todo[i].1.sha1).collect();
    if !sha1.is_empty() {
        s.push_str(&set_list(&sha1, &q));
        s.push_str(KEEP_REGULAR);
        s.push_str("printf '#1\\n'\n[ $# -eq 0 ] || sha1sum -- \"$@\" 2>/dev/null\n");
    }
    s.push_str("printf '#X\\n'\n");
    // A target with a newline would end its line early and could pass the
    // rest off as another path's observation: it is sent as `l` instead (a
    // link whose target deployer cannot show, and matches no wanted one).
    for &i in fast.iter().filter(|&&i| !plain_name(&todo[i].0)) {
        let p = &q[i];
        s.push_str(&format!(
            "if [ -L {p} ]; then t=$(readlink -- {p}); case \"$t\" in *'\n'*) printf 'l\\t{i}\\n' ;; *) printf 'L\\t{i}\\t%s\\n' \"$t\" ;; esac; fi\n"
        ));
    }
    // Contents, of every regular file that wants them, in one `od` (one
    // process however many files): its hex is cut into files by the sizes
    // `stat` printed, and a piece is kept only when its SHA-256 is the one
    // `sha256sum` printed (a file that changed in between is not kept).
    let content: Vec<usize> = fast
        .iter()
        .copied()
        .filter(|&i| todo[i].1.content)
        .collect();
    if !content.is_empty() {
        s.push_str(&set_list(&content, &q));
        s.push_str(&index_list(&content));
        s.push_str(
            "K=\nfor _p do _i=${_x%% *}; _x=${_x#* }; shift; if [ -f \"$_p\" ] && [ ! -L \"$_p\" ]; then set -- \"$@\" \"$_p\"; K=\"$K $_i\"; fi; done\n",
        );
        s.push_str(
            "printf '#C\\t%s\\n' \"$K\"\n[ $# -eq 0 ] || od -An -v -tx1 -- \"$@\" 2>/dev/null\nprintf '#Z\\n'\n",
        );
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

/// The cheap re-observation after a command: which paths exist (shell
/// builtins) and ONE `stat` of their device, inode, size and change time. Output:
/// `E\t<indices>`, then `T|<dev>:<inode>:<size>:<ctime>|<name>` lines. Paths with a
/// newline in their name get no stamp (they are observed again).
pub fn stamp_script(todo: &[(String, Want)]) -> String {
    let q: Vec<String> = todo.iter().map(|(p, _)| shell_quote(p)).collect();
    let fast: Vec<usize> = (0..todo.len()).filter(|&i| !odd_name(&todo[i].0)).collect();
    let mut s = keep_existing(&fast, &q);
    s.push_str("[ $# -eq 0 ] || stat -c 'T|%d:%i:%s:%z|%n' -- \"$@\" 2>/dev/null\n");
    s
}

/// `set --` with the quoted paths `q[i]` of `pick`, in order.
fn set_list(pick: &[usize], q: &[String]) -> String {
    let mut s = String::from("set --");
    for &i in pick {
        s.push(' ');
        s.push_str(&q[i]);
    }
    s.push('\n');
    s
}

/// `_x`: the indices of `pick`, walked beside the paths by the loops.
fn index_list(pick: &[usize]) -> String {
    let ix: Vec<String> = pick.iter().map(|i| i.to_string()).collect();
    format!("_x='{}'\n", ix.join(" "))
}

/// The paths of `pick` that exist (a dangling link too) left as "$@", and
/// their indices printed as the `E` line.
fn keep_existing(pick: &[usize], q: &[String]) -> String {
    let mut s = set_list(pick, q);
    s.push_str(&index_list(pick));
    s.push_str(
        "E=\nfor _p do _i=${_x%% *}; _x=${_x#* }; shift; if [ -e \"$_p\" ] || [ -L \"$_p\" ]; then set -- \"$@\" \"$_p\"; E=\"$E $_i\"; fi; done\nprintf 'E\\t%s\\n' \"$E\"\n",
    );
    s
}

/// Keeps the regular files (not links to them) of "$@".
const KEEP_REGULAR: &str = "for _p do shift; if [ -f \"$_p\" ] && [ ! -L \"$_p\" ]; then set -- \"$@\" \"$_p\"; fi; done\n";

/// The indices an `E` line of the output lists (paths that exist).
fn parse_exists(out: &str, n: usize) -> std::collections::HashSet<usize> {
    out.lines()
        .filter_map(|l| l.strip_prefix("E\t"))
        .flat_map(|e| e.split_whitespace().filter_map(|i| i.parse::<usize>().ok()))
        .filter(|&i| i < n)
        .collect()
}

/// The stamps (`dev:inode:ctime`) of the `prefix` stat lines whose field `at`
/// (after the prefix, `|`-separated) is the stamp and the rest the name.
fn parse_stamps(
    out: &str,
    todo: &[(String, Want)],
    prefix: &str,
    at: usize,
) -> HashMap<usize, String> {
    let index: HashMap<&str, usize> = todo
        .iter()
        .enumerate()
        .map(|(i, (p, _))| (p.as_str(), i))
        .collect();
    let mut map = HashMap::new();
    for line in out.lines() {
        let Some(st) = line.strip_prefix(prefix) else {
            continue;
        };
        let fields: Vec<&str> = st.splitn(at + 2, '|').collect();
        if let (Some(stamp), Some(i)) = (
            fields.get(at),
            fields.get(at + 1).and_then(|name| index.get(name)),
        ) && !stamp.is_empty()
        {
            map.insert(*i, stamp.to_string());
        }
    }
    map
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
    // The `#C` section: which files, in order, and their bytes in hex.
    let mut contents: Vec<usize> = Vec::new();
    let mut hex = String::new();
    // The path of the last `S` line (its `N` line comes next).
    let mut last_stat: Option<usize> = None;
    for line in out.lines() {
        if let Some(list) = line.strip_prefix("#C\t") {
            section = 'C';
            contents = list
                .split_whitespace()
                .filter_map(|i| i.parse::<usize>().ok())
                .collect();
            continue;
        }
        if section == 'C' {
            if line == "#Z" {
                section = ' ';
                cut_contents(&mut map, &contents, &hex);
            } else {
                hex.extend(line.chars().filter(|c| !c.is_whitespace()));
            }
            continue;
        }
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
            let fields: Vec<&str> = st.splitn(10, '|').collect();
            last_stat = fields.get(9).and_then(|name| index.get(name)).copied();
            if let Some(i) = last_stat {
                map.insert(i, from_stat(&fields[..8]));
            }
            continue;
        }
        // The target of the link the `S` line before named (only a plain
        // name's: others come by `L` lines).
        if let Some(n) = line.strip_prefix("N|") {
            if let Some(i) = last_stat.take()
                && plain_name(&todo[i].0)
                && let Some(f) = map.get_mut(&i)
                && f.kind == FileKind::Link
            {
                f.link_target = n
                    .strip_prefix(todo[i].0.as_str())
                    .and_then(|r| r.strip_prefix(" -> "))
                    .and_then(unescape_target)
                    .or(Some(UNSHOWN_TARGET.to_string()));
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
                let link = parts.next().filter(|h| *h != "-").map(|l| match l {
                    "\\n" => UNSHOWN_TARGET.to_string(),
                    l => l.to_string(),
                });
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
            Some("l") => {
                if let Some(f) = map.get_mut(&idx) {
                    f.link_target = Some(UNSHOWN_TARGET.to_string());
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

/// Cuts the bytes of the `#C` section (`hex`: every file of `order`, one
/// after the other) into the files, by the sizes their stat lines gave; a
/// piece whose SHA-256 is not the one `sha256sum` printed (the file changed
/// between the two, or could not be read) ends the cutting: it and the files
/// after it get no content, and are read again when a module wants them.
fn cut_contents(map: &mut HashMap<usize, ObservedFile>, order: &[usize], hex: &str) {
    use sha2::Digest;
    let Ok(bytes) = decode_hex(hex) else {
        return;
    };
    let mut at = 0usize;
    for i in order {
        let Some(f) = map.get_mut(i) else {
            return;
        };
        let Some(end) = usize::try_from(f.size)
            .ok()
            .and_then(|n| at.checked_add(n))
            .filter(|&e| e <= bytes.len())
        else {
            return;
        };
        let piece = &bytes[at..end];
        let sum: String = sha2::Sha256::digest(piece)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        if f.sha256.as_deref() != Some(sum.as_str()) {
            return;
        }
        f.content = Some(piece.to_vec());
        at = end;
    }
}

fn decode_hex(hex: &str) -> Result<Vec<u8>, ()> {
    let h = hex.as_bytes();
    if !h.len().is_multiple_of(2) {
        return Err(());
    }
    let digit = |c: u8| (c as char).to_digit(16).ok_or(());
    h.chunks(2)
        .map(|p| Ok((digit(p[0])? * 16 + digit(p[1])?) as u8))
        .collect()
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
                   S|regular file|644|root|root|0|0|3|17|2049:12:2026-12-02 10:00:00.5 +0000|/a\n\
                   S|symbolic link|777|root|root|0|0|4|1|2049:13:2026-12-02 10:00:00.5 +0000|/l\n\
                   S|regular empty file|600|app|app|7|8|0|5|2049:14:2026-12-02 10:00:00.5 +0000|/odd\\name\n\
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

    /// The `#C` section: `od`'s hex cut by the stat sizes, each piece kept
    /// only with the hash `sha256sum` printed; a file that changed between
    /// the two (or output cut before `#Z`) leaves no content.
    #[test]
    fn contents_are_cut_by_size_and_kept_only_with_their_hash() {
        use sha2::Digest;
        let sha = |b: &[u8]| -> String {
            sha2::Sha256::digest(b)
                .iter()
                .map(|x| format!("{x:02x}"))
                .collect()
        };
        let t = todo(&["/a", "/b", "/c"]);
        let out = format!(
            "E\t 0 1 2\n\
             S|regular file|644|root|root|0|0|3|17|1:2:t|/a\n\
             S|regular empty file|644|root|root|0|0|0|17|1:3:t|/b\n\
             S|regular file|644|root|root|0|0|2|17|1:4:t|/c\n\
             #H\n{}  /a\n{}  /b\n{}  /c\n#X\n#C\t 0 1 2\n 68 69 0a 61\n 62\n#Z\n",
            sha(b"hi\n"),
            sha(b""),
            sha(b"ab")
        );
        let m = parse_observations(&out, &t);
        assert_eq!(m[&0].content.as_deref(), Some(&b"hi\n"[..]));
        assert_eq!(m[&1].content.as_deref(), Some(&b""[..]));
        assert_eq!(m[&2].content.as_deref(), Some(&b"ab"[..]));
        // /a grew between sha256sum and od: no piece is trusted from there on.
        let grown = out.replace(" 68 69 0a 61", " 68 69 69 0a 61");
        let m = parse_observations(&grown, &t);
        assert!((0..3).all(|i| m[&i].content.is_none()));
        // The same size, other bytes: that piece is refused.
        let other = out.replace(" 68 69 0a 61", " 68 6a 0a 61");
        let m = parse_observations(&other, &t);
        assert!(m[&0].content.is_none());
        // Output cut before the end of the section: nothing kept.
        let cut = out.replace("#Z\n", "");
        let m = parse_observations(&cut, &t);
        assert!((0..3).all(|i| m[&i].content.is_none()));
    }

    #[test]
    fn the_script_forks_per_batch_not_per_path() {
        let paths: Vec<String> = (0..50).map(|i| format!("/srv/x/f{i}.conf")).collect();
        let t: Vec<(String, Want)> = paths.iter().map(|p| (p.clone(), Want::default())).collect();
        let s = observe_script(&t);
        assert_eq!(s.matches("stat --printf").count(), 1, "{s}");
        assert_eq!(s.matches("sha256sum").count(), 1, "{s}");
        assert!(!s.contains("sha1sum") && !s.contains("base64"), "{s}");
        // Link targets come from that `stat`: no `readlink` for plain names.
        assert!(!s.contains("readlink"), "{s}");
        // Contents too: one `od` for all of them.
        let t: Vec<(String, Want)> = paths
            .iter()
            .map(|p| {
                (
                    p.clone(),
                    Want {
                        content: true,
                        sha1: false,
                    },
                )
            })
            .collect();
        let s = observe_script(&t);
        assert_eq!(s.matches("od -An").count(), 1, "{s}");
        assert!(!s.contains("base64"), "{s}");
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
        // Targets `stat` escapes, behind plain names and behind names it
        // escapes too (those are read with `readlink`).
        for (name, target) in [
            ("odd target", "a -> b\\c d \u{e9}'\""),
            ("rel", "../x y"),
            ("caf\u{e9} link", "a -> b\\c"),
            ("back\\link", "t"),
        ] {
            std::os::unix::fs::symlink(target, d.join(name)).expect("link");
        }
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
            "odd target",
            "rel",
            "caf\u{e9} link",
            "back\\link",
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
        assert_eq!(
            batch[&9].link_target.as_deref(),
            Some("a -> b\\c d \u{e9}'\"")
        );
        assert_eq!(batch[&11].link_target.as_deref(), Some("a -> b\\c"));
    }

    /// A symlink whose target holds a newline and a line that looks like
    /// another path's observation (a local user can plant one where a task
    /// will look): the other path keeps what was really observed, and the
    /// link's target is one no task wants.
    #[tokio::test]
    async fn a_link_target_cannot_pass_for_another_observation() {
        let dir = tempfile::tempdir().expect("tmp");
        let d = dir.path();
        std::fs::write(d.join("real"), "real\n").expect("write");
        let real = d.join("real").display().to_string();
        let fake = format!(
            "x\nP\t0\t1\tregular file|644|root|root|0|0|4|0\t{}\t-\t-\nL\t0\tevil\nl\t0",
            "0".repeat(64)
        );
        std::os::unix::fs::symlink(&fake, d.join("plain")).expect("link");
        std::os::unix::fs::symlink(&fake, d.join("caf\u{e9}")).expect("link");
        let t: Vec<(String, Want)> = [
            real.clone(),
            d.join("plain").display().to_string(),
            d.join("caf\u{e9}").display().to_string(),
        ]
        .into_iter()
        .map(|p| (p, Want::default()))
        .collect();
        let conn = Connection::local("localhost");
        let out = conn
            .run_script(&observe_script(&t), None)
            .await
            .expect("batch");
        let m = parse_observations(&out.stdout_str(), &t);
        assert_eq!(m[&0].kind, FileKind::File);
        assert_eq!(m[&0].size, 5);
        assert_eq!(m[&0].link_target, None);
        assert_eq!(m[&1].link_target.as_deref(), Some(fake.as_str()));
        assert_eq!(m[&2].link_target.as_deref(), Some(UNSHOWN_TARGET));
        // The per-path function, for names with a newline, likewise.
        let mut slow = String::from(OBSERVE_FN);
        for (i, (p, _)) in t.iter().enumerate() {
            slow.push_str(&format!("o {i} {} -\n", shell_quote(p)));
        }
        let out = conn.run_script(&slow, None).await.expect("slow");
        let m = parse_observations(&out.stdout_str(), &t);
        assert_eq!(m[&0].size, 5);
        assert_eq!(m[&0].link_target, None);
        assert_eq!(m[&1].link_target.as_deref(), Some(UNSHOWN_TARGET));
    }

    #[test]
    fn escaped_targets_decode() {
        assert_eq!(
            unescape_target("a\\\\b\\n\\t\\303\\251").as_deref(),
            Some("a\\b\n\t\u{e9}")
        );
        assert_eq!(unescape_target("plain -> x").as_deref(), Some("plain -> x"));
        assert_eq!(unescape_target("bad\\q"), None);
        assert_eq!(unescape_target("cut\\"), None);
        assert_eq!(unescape_target("\\9"), None);
        assert!(
            plain_name("/srv/a b/c|d -> e") && !plain_name("/a\\b") && !plain_name("/caf\u{e9}")
        );
    }

    /// After a command that left its check for later, nothing cached is
    /// trusted; the next fetch checks first (one `stat`) and keeps what the
    /// command did not touch; a command as another user makes it a refetch.
    #[tokio::test]
    async fn an_unstamped_cache_is_checked_before_it_is_used() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = |n: &str| dir.path().join(n).display().to_string();
        std::fs::write(path("same"), "v1").expect("write");
        std::fs::write(path("changed"), "v1").expect("write");
        let conn = Connection::local("localhost");
        let mut obs = Observations::default();
        let reqs: Vec<(String, Want)> = ["same", "changed"]
            .iter()
            .map(|n| (path(n), Want::default()))
            .collect();
        obs.fetch(&conn, None, &reqs).await.expect("fetch");
        obs.leave_unstamped(None);
        assert!(obs.get(&path("same"), Want::default()).is_none());
        // What the command did.
        std::fs::write(path("changed"), "v2, longer").expect("write");
        // A request for one path: the check runs first and keeps the other.
        obs.fetch(&conn, None, &reqs[..1]).await.expect("fetch");
        assert!(obs.get(&path("same"), Want::default()).is_some());
        assert!(obs.get(&path("changed"), Want::default()).is_none());
        obs.fetch(&conn, None, &reqs).await.expect("fetch");
        assert_eq!(
            obs.get(&path("changed"), Want::default()).map(|f| f.size),
            Some(10)
        );
        // Read as root, left by a command as another user: refetched whole.
        let other = Become {
            user: "nobody".into(),
            password: None,
        };
        obs.leave_unstamped(Some(&other));
        assert!(obs.stale && !obs.unstamped);
        assert_eq!(obs.to_fetch(&reqs[..1]).len(), 2);
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
            .run_script(&stamp_script(&todo), None)
            .await
            .expect("stamp");
        obs.restamped_after_command(todo, &out.stdout_str());
        // Created by the "command": forgotten, observed again when asked.
        assert!(obs.get(&a, Want::default()).is_none());
        assert_eq!(conn.executions(), 2);
    }

    /// After a command, the stamps (device, inode, change time) decide what
    /// keeps its observation: untouched and still-absent paths keep it;
    /// rewritten, chmod-ed, replaced, removed and created paths are forgotten.
    #[tokio::test]
    async fn stamps_keep_only_what_a_command_did_not_touch() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = |n: &str| dir.path().join(n).display().to_string();
        let names = [
            "same", "written", "chmod", "replaced", "removed", "created", "absent",
        ];
        for n in &names[..5] {
            std::fs::write(path(n), "v1").expect("write");
        }
        let conn = Connection::local("localhost");
        let mut obs = Observations::default();
        let reqs: Vec<(String, Want)> = names
            .iter()
            .map(|n| {
                (
                    path(n),
                    Want {
                        content: true,
                        sha1: false,
                    },
                )
            })
            .collect();
        obs.fetch(&conn, None, &reqs).await.expect("fetch");
        let todo = obs.refresh_after_command(None).expect("same user");
        // The "command".
        std::fs::write(path("written"), "v2").expect("write");
        let mut perm = std::fs::metadata(path("chmod"))
            .expect("meta")
            .permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o600);
        std::fs::set_permissions(path("chmod"), perm).expect("chmod");
        std::fs::write(path("new"), "v1").expect("write");
        std::fs::rename(path("new"), path("replaced")).expect("rename");
        std::fs::remove_file(path("removed")).expect("rm");
        std::fs::write(path("created"), "v1").expect("write");
        let out = conn
            .run_script(&stamp_script(&todo), None)
            .await
            .expect("stamp");
        obs.restamped_after_command(todo, &out.stdout_str());
        let kept: Vec<&str> = names
            .iter()
            .copied()
            .filter(|n| {
                obs.get(
                    &path(n),
                    Want {
                        content: true,
                        sha1: false,
                    },
                )
                .is_some()
            })
            .collect();
        assert_eq!(kept, ["same", "absent"]);
        let same = obs.get(&path("same"), Want::default()).expect("kept");
        assert_eq!(same.content.as_deref(), Some(&b"v1"[..]));
        // The forgotten ones are observed again, as they are now, in one execution.
        obs.fetch(&conn, None, &reqs).await.expect("refetch");
        let now = |n: &str| obs.get(&path(n), Want::default()).cloned().expect("cached");
        assert_eq!(now("written").content.as_deref(), Some(&b"v2"[..]));
        assert_eq!(now("chmod").mode, 0o600);
        assert!(!now("removed").exists && now("created").exists);
        assert_eq!(conn.executions(), 3);
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
