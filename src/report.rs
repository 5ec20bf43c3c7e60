//! All output goes through here, masked: human lines with unified diffs, or
//! one JSON event per line. The plan (check mode's results) is also kept, to
//! be printed as JSON or markdown by `deployer plan`.

use std::io::Write;
use std::sync::Mutex;

use serde_json::{Value as Json, json};

use crate::modules::FileDiff;
use crate::secrets::mask;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Human,
    Json,
    /// Collect only; the caller prints the plan at the end.
    Quiet,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Changed,
    Skipped,
    Failed,
    Unreachable,
}

impl Status {
    fn word(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Changed => "changed",
            Status::Skipped => "skipping",
            Status::Failed => "failed",
            Status::Unreachable => "unreachable",
        }
    }

    /// The word in Ansible's colours when colour is on (see [`crate::ui`]).
    fn painted(self) -> String {
        let code = match self {
            Status::Ok => "32",
            Status::Changed => "33",
            Status::Skipped => "36",
            Status::Failed | Status::Unreachable => "31",
        };
        crate::ui::paint(self.word(), code)
    }
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct HostStats {
    pub ok: usize,
    pub changed: usize,
    pub unreachable: usize,
    pub failed: usize,
    pub skipped: usize,
    pub rescued: usize,
    pub ignored: usize,
    pub remote_executions: usize,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct PlannedTask {
    pub host: String,
    pub task: String,
    pub location: String,
    pub status: Status,
    pub msg: Option<String>,
    pub diffs: Vec<FileDiff>,
}

/// Detail lines shown under a result without `-v`.
const DETAIL_LINES: usize = 12;

pub struct Reporter {
    pub format: Format,
    pub show_diff: bool,
    out: Mutex<Box<dyn Write + Send>>,
    pub plan: Mutex<Vec<PlannedTask>>,
    /// The status line on a terminal (human format, stderr a TTY only).
    progress: Option<std::sync::Arc<Progress>>,
}

/// What each host is running, redrawn once a second on stderr as one status
/// line (`running: [tb1] Install packages 12s, [tb2] ...`), erased before
/// any result line is printed so the two never mix. Only on a terminal: in a
/// pipe, a file or CI nothing of it is written (no control characters).
pub struct Progress {
    /// Per host: the task, when it started, and the step the module said it
    /// is at (an image pull's bytes, a health wait's status, ...; empty when
    /// none).
    running: Mutex<Vec<(String, String, std::time::Instant, String)>>,
    /// Whether the status line is currently drawn.
    drawn: std::sync::atomic::AtomicBool,
    /// Held while the terminal is written (status line or a result line), so
    /// a redraw never lands between erasing the line and printing a result.
    screen: Mutex<()>,
}

impl Progress {
    fn start() -> Option<std::sync::Arc<Progress>> {
        use std::io::IsTerminal;
        if !std::io::stderr().is_terminal() || std::env::var_os("DEPLOYER_NO_PROGRESS").is_some() {
            return None;
        }
        let p = std::sync::Arc::new(Progress {
            running: Mutex::new(Vec::new()),
            drawn: std::sync::atomic::AtomicBool::new(false),
            screen: Mutex::new(()),
        });
        let weak = std::sync::Arc::downgrade(&p);
        std::thread::spawn(move || {
            while let Some(p) = weak.upgrade() {
                p.draw();
                drop(p);
                std::thread::sleep(std::time::Duration::from_millis(1000));
            }
        });
        Some(p)
    }

    fn set(&self, host: &str, task: &str) {
        if let Ok(mut r) = self.running.lock() {
            r.retain(|(h, _, _, _)| h != host);
            r.push((
                host.to_string(),
                mask(task),
                std::time::Instant::now(),
                String::new(),
            ));
        }
    }

    /// The step `host`'s running task is at (shown after its elapsed time).
    fn set_detail(&self, host: &str, detail: &str) {
        if let Ok(mut r) = self.running.lock()
            && let Some(e) = r.iter_mut().find(|(h, _, _, _)| h == host)
        {
            e.3 = mask(detail);
        }
    }

    fn clear_host(&self, host: &str) {
        if let Ok(mut r) = self.running.lock() {
            r.retain(|(h, _, _, _)| h != host);
        }
    }

    /// The status line's text, cut to `width` characters.
    fn text(&self, width: usize) -> Option<String> {
        let r = self.running.lock().ok()?;
        if r.is_empty() {
            return None;
        }
        let parts: Vec<String> = r
            .iter()
            .map(|(h, t, at, d)| {
                let d = if d.is_empty() {
                    String::new()
                } else {
                    format!(": {d}")
                };
                format!("[{h}] {t} {}s{d}", at.elapsed().as_secs())
            })
            .collect();
        let line = format!("running: {}", parts.join(", "));
        Some(line.chars().take(width.saturating_sub(1)).collect())
    }

    fn draw(&self) {
        let _screen = self.screen.lock();
        let width = terminal_width().unwrap_or(100);
        let mut err = std::io::stderr().lock();
        match self.text(width) {
            Some(line) => {
                let _ = write!(err, "\r\x1b[K{line}");
                self.drawn.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            None => {
                if self.drawn.swap(false, std::sync::atomic::Ordering::Relaxed) {
                    let _ = write!(err, "\r\x1b[K");
                }
            }
        }
        let _ = err.flush();
    }

    /// Erases the status line (before a result line is printed).
    fn erase(&self) {
        if self.drawn.swap(false, std::sync::atomic::Ordering::Relaxed) {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[K");
            let _ = err.flush();
        }
    }
}

/// Where a running task is, as its module reports it: long steps (an image
/// pull with its bytes, a health wait with the container's health status and
/// its last check's output, the Plane hook's admin, workspace and user n of
/// m) appear on the terminal's status line after the task's elapsed time, and
/// as `task_progress` JSON events (`phase` start, progress or end) for CI. In
/// human output that is not a terminal nothing is printed (the result line
/// says what happened). Cheap to clone; [`TaskProgress::none`] reports nothing.
#[derive(Clone, Default)]
pub struct TaskProgress {
    inner: Option<std::sync::Arc<TaskProgressInner>>,
}

struct TaskProgressInner {
    reporter: std::sync::Arc<Reporter>,
    host: String,
    task: String,
    /// When each step last sent a `progress` JSON event (one a second at most).
    sent: Mutex<Vec<(String, std::time::Instant)>>,
}

/// Phases of a `task_progress` event.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Start,
    Progress,
    Milestone,
    End,
}

impl TaskProgress {
    /// Reports nothing (for work outside a task, and unit tests).
    pub fn none() -> TaskProgress {
        TaskProgress::default()
    }

    pub fn new(reporter: &std::sync::Arc<Reporter>, host: &str, task: &str) -> TaskProgress {
        if reporter.format == Format::Quiet {
            return TaskProgress::none();
        }
        TaskProgress {
            inner: Some(std::sync::Arc::new(TaskProgressInner {
                reporter: reporter.clone(),
                host: host.to_string(),
                task: task.to_string(),
                sent: Mutex::new(Vec::new()),
            })),
        }
    }

    /// A step begins: `step` names its kind (`image_pull`, `health_wait`,
    /// `plane_users`), `text` is what a person reads, `detail` the same as
    /// JSON fields.
    pub fn start(&self, step: &str, text: &str, detail: Json) {
        self.report(Phase::Start, step, text, detail);
    }

    /// The step advanced: the status line always shows the newest text, JSON
    /// gets at most one `progress` event a second per step.
    pub fn update(&self, step: &str, text: &str, detail: Json) {
        self.report(Phase::Progress, step, text, detail);
    }

    /// The step reached a milestone (the Plane hook's next user): always an
    /// event, never throttled.
    pub fn milestone(&self, step: &str, text: &str, detail: Json) {
        self.report(Phase::Milestone, step, text, detail);
    }

    /// The step ended (`text` says how).
    pub fn end(&self, step: &str, text: &str, detail: Json) {
        self.report(Phase::End, step, text, detail);
    }

    fn report(&self, phase: Phase, step: &str, text: &str, detail: Json) {
        let Some(i) = &self.inner else {
            return;
        };
        let r = &i.reporter;
        if let Some(p) = &r.progress {
            p.set_detail(&i.host, if phase == Phase::End { "" } else { text });
        }
        if r.format != Format::Json {
            return;
        }
        if phase == Phase::Progress {
            let Ok(mut sent) = i.sent.lock() else {
                return;
            };
            let now = std::time::Instant::now();
            match sent.iter_mut().find(|(s, _)| s == step) {
                Some((_, at)) if now.duration_since(*at) < std::time::Duration::from_secs(1) => {
                    return;
                }
                Some((_, at)) => *at = now,
                None => sent.push((step.to_string(), now)),
            }
        }
        let mut ev = json!({
            "event": "task_progress", "host": i.host, "task": i.task, "step": step,
            "phase": match phase {
                Phase::Start => "start",
                Phase::Progress | Phase::Milestone => "progress",
                Phase::End => "end",
            },
            "msg": text,
        });
        if let (Some(m), Json::Object(d)) = (ev.as_object_mut(), detail) {
            for (k, v) in d {
                m.entry(k).or_insert(v);
            }
        }
        r.event(ev);
    }
}

/// `n` bytes for a person: "812 B", "3.4 MB", "1.2 GB" (decimal units, as
/// Docker prints sizes).
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["kB", "MB", "GB", "TB"];
    if n < 1000 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1000.0;
    let mut unit = 0;
    while v >= 1000.0 && unit + 1 < UNITS.len() {
        v /= 1000.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// The terminal's width in columns: `COLUMNS` when set, else what the
/// terminal on stderr says (TIOCGWINSZ).
fn terminal_width() -> Option<usize> {
    if let Some(c) = std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok()) {
        return Some(c);
    }
    // SAFETY: TIOCGWINSZ fills a winsize struct we own; fd 2 is only read.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::ioctl(2, libc::TIOCGWINSZ, &mut ws) };
    (rc == 0 && ws.ws_col > 0).then_some(usize::from(ws.ws_col))
}

pub fn mask_json(v: &Json) -> Json {
    match v {
        Json::String(s) => Json::String(mask(s)),
        Json::Array(a) => Json::Array(a.iter().map(mask_json).collect()),
        Json::Object(m) => Json::Object(m.iter().map(|(k, v)| (mask(k), mask_json(v))).collect()),
        other => other.clone(),
    }
}

pub fn unified_diff(d: &FileDiff) -> String {
    let mut s = String::new();
    for a in &d.attributes {
        s.push_str(&format!("  {}: {a}\n", d.path));
    }
    if let Some(n) = &d.note {
        s.push_str(&format!("  {}: {n}\n", d.path));
    }
    if let (Some(b), Some(a)) = (&d.before, &d.after) {
        let diff = similar::TextDiff::from_lines(b.as_str(), a.as_str());
        s.push_str(
            &diff
                .unified_diff()
                .context_radius(3)
                .header(
                    &format!("before: {}", d.path),
                    &format!("after: {}", d.path),
                )
                .to_string(),
        );
    }
    s
}

impl Reporter {
    pub fn new(format: Format, show_diff: bool) -> Reporter {
        Reporter {
            format,
            show_diff,
            out: Mutex::new(Box::new(std::io::stdout())),
            plan: Mutex::new(Vec::new()),
            progress: if format == Format::Human {
                Progress::start()
            } else {
                None
            },
        }
    }

    pub fn to_writer(format: Format, show_diff: bool, w: Box<dyn Write + Send>) -> Reporter {
        Reporter {
            format,
            show_diff,
            out: Mutex::new(w),
            plan: Mutex::new(Vec::new()),
            progress: None,
        }
    }

    /// A task starts on a host: the terminal's status line shows it with its
    /// elapsed time; JSON gets a `task_start` event (for CI dashboards).
    pub fn task_start(&self, host: &str, task: &str, location: &str) {
        if let Some(p) = &self.progress {
            p.set(host, task);
        }
        if self.format == Format::Json {
            self.event(
                json!({"event": "task_start", "host": host, "task": task, "location": location}),
            );
        }
    }

    /// A host has no more tasks running (its status-line entry goes).
    pub fn host_idle(&self, host: &str) {
        if let Some(p) = &self.progress {
            p.clear_host(host);
        }
    }

    fn line(&self, text: &str) {
        let _screen = self.progress.as_ref().map(|p| {
            let guard = p.screen.lock();
            p.erase();
            guard
        });
        if let Ok(mut o) = self.out.lock() {
            let _ = writeln!(o, "{}", mask(text));
            let _ = o.flush();
        }
    }

    fn event(&self, v: Json) {
        if let Ok(mut o) = self.out.lock() {
            let _ = writeln!(o, "{}", mask_json(&v));
            let _ = o.flush();
        }
    }

    pub fn play_start(&self, name: &str, hosts: &[String]) {
        match self.format {
            Format::Human => self.line(&format!(
                "\nPLAY [{name}] ({} host{})",
                hosts.len(),
                if hosts.len() == 1 { "" } else { "s" }
            )),
            Format::Json => {
                self.event(json!({"event": "play_start", "play": name, "hosts": hosts}))
            }
            Format::Quiet => {}
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub fn task_result(
        &self,
        host: &str,
        task: &str,
        location: &str,
        status: Status,
        msg: Option<&str>,
        diffs: &[FileDiff],
        item: Option<&str>,
    ) {
        self.task_result_diff(
            host,
            task,
            location,
            status,
            msg,
            diffs,
            item,
            self.show_diff,
        );
    }

    /// [`Reporter::task_result`] for a task whose own `diff` keyword decides
    /// whether its diffs are shown (instead of `--diff`).
    #[allow(clippy::too_many_arguments)]
    pub fn task_result_diff(
        &self,
        host: &str,
        task: &str,
        location: &str,
        status: Status,
        msg: Option<&str>,
        diffs: &[FileDiff],
        item: Option<&str>,
        show_diff: bool,
    ) {
        if item.is_none() {
            self.host_idle(host);
        }
        if let Ok(mut p) = self.plan.lock() {
            p.push(PlannedTask {
                host: host.to_string(),
                task: mask(task),
                location: location.to_string(),
                status,
                msg: msg.map(mask),
                diffs: diffs
                    .iter()
                    .map(|d| FileDiff {
                        path: d.path.clone(),
                        before: d.before.as_deref().map(mask),
                        after: d.after.as_deref().map(mask),
                        attributes: d.attributes.clone(),
                        note: d.note.clone(),
                    })
                    .collect(),
            });
        }
        match self.format {
            Format::Human => {
                let item = item.map(|i| format!(" => (item={i})")).unwrap_or_default();
                let mut line = format!("{}: [{host}] {task}{item}", status.painted());
                let mut details: Vec<&str> = Vec::new();
                if let Some(m) = msg
                    && (matches!(status, Status::Failed | Status::Unreachable) || !m.is_empty() && status != Status::Skipped) {
                        // A result of several lines: the first on the result
                        // line, the others indented under it.
                        let mut lines = m.lines();
                        line.push_str(&format!(" => {}", lines.next().unwrap_or("")));
                        details = lines.filter(|l| !l.trim().is_empty()).collect();
                    }
                self.line(&line);
                let shown = if crate::ui::verbosity() > 0 { details.len() } else { DETAIL_LINES };
                for d in details.iter().take(shown) {
                    self.line(&format!("    {d}"));
                }
                if details.len() > shown {
                    self.line(&format!("    ... {} more (-v shows all)", details.len() - shown));
                }
                if show_diff {
                    for d in diffs {
                        self.line(unified_diff(d).trim_end());
                    }
                }
            }
            Format::Json => self.event(json!({
                "event": "task_result", "host": host, "task": task, "location": location,
                "status": status, "item": item, "msg": msg,
                // The result's first line, and its other lines as a list.
                "summary": msg.map(|m| m.lines().next().unwrap_or("")),
                "details": msg.map(|m| m.lines().skip(1).filter(|l| !l.trim().is_empty()).collect::<Vec<_>>()).unwrap_or_default(),
                "diff": if show_diff { serde_json::to_value(diffs).unwrap_or(Json::Null) } else { Json::Null },
            })),
            Format::Quiet => {}
        }
    }

    /// What a Docker module left running (JSON only): per service or
    /// container its `container` id, `image` (the reference), `image_id` and
    /// `digest` (the repo digest, or the image id of an image never pushed).
    /// Emitted right after the task's `task_result`; the rollback work pins these.
    pub fn images(&self, host: &str, task: &str, location: &str, images: &Json) {
        if self.format == Format::Json {
            self.event(json!({
                "event": "images", "host": host, "task": task, "location": location,
                "images": images,
            }));
        }
    }

    pub fn warning(&self, text: &str) {
        match self.format {
            Format::Human => self.line(&format!("[WARNING]: {text}")),
            Format::Json => self.event(json!({"event": "warning", "msg": text})),
            Format::Quiet => {}
        }
    }

    /// Something about a host worth saying that is not a task result (such as
    /// pending handlers): `note: [host] text`, or a `note` event.
    pub fn note(&self, host: &str, text: &str) {
        match self.format {
            Format::Human => self.line(&format!("note: [{host}] {text}")),
            Format::Json => self.event(json!({"event": "note", "host": host, "msg": text})),
            Format::Quiet => {}
        }
    }

    pub fn recap(&self, stats: &[(String, HostStats)], check: bool) {
        for (host, _) in stats {
            self.host_idle(host);
        }
        match self.format {
            Format::Human => {
                self.line(&format!(
                    "\nPLAY RECAP{}",
                    if check {
                        " (check mode: nothing was changed)"
                    } else {
                        ""
                    }
                ));
                let unreachable: Vec<&str> = stats
                    .iter()
                    .filter(|(_, s)| s.unreachable > 0)
                    .map(|(h, _)| h.as_str())
                    .collect();
                if !unreachable.is_empty() {
                    self.line(&format!(
                        "UNREACHABLE: {} (nothing is known about {})",
                        unreachable.join(", "),
                        if unreachable.len() == 1 {
                            "this host"
                        } else {
                            "these hosts"
                        }
                    ));
                }
                for (h, s) in stats {
                    self.line(&format!(
                        "{h:<20} : ok={} changed={} unreachable={} failed={} skipped={} rescued={} ignored={} remote_executions={}",
                        s.ok, s.changed, s.unreachable, s.failed, s.skipped, s.rescued, s.ignored, s.remote_executions
                    ));
                }
            }
            Format::Json => {
                let hosts: serde_json::Map<String, Json> = stats
                    .iter()
                    .map(|(h, s)| (h.clone(), serde_json::to_value(s).unwrap_or(Json::Null)))
                    .collect();
                let unreachable: Vec<&String> = stats
                    .iter()
                    .filter(|(_, s)| s.unreachable > 0)
                    .map(|(h, _)| h)
                    .collect();
                self.event(json!({"event": "recap", "check_mode": check, "hosts": hosts, "unreachable": unreachable}));
            }
            Format::Quiet => {}
        }
    }

    /// The plan as one JSON document (masked).
    pub fn plan_json(&self, stats: &[(String, HostStats)]) -> Json {
        let tasks = self.plan.lock().map(|p| p.clone()).unwrap_or_default();
        let hosts: serde_json::Map<String, Json> = stats
            .iter()
            .map(|(h, s)| (h.clone(), serde_json::to_value(s).unwrap_or(Json::Null)))
            .collect();
        let changes: Vec<&PlannedTask> = tasks
            .iter()
            .filter(|t| t.status == Status::Changed)
            .collect();
        let names = |f: fn(&HostStats) -> bool| -> Vec<&String> {
            stats.iter().filter(|(_, s)| f(s)).map(|(h, _)| h).collect()
        };
        mask_json(&json!({
            "would_change": !changes.is_empty(),
            "complete": stats.iter().all(|(_, s)| s.unreachable == 0 && s.failed == 0),
            "unreachable": names(|s| s.unreachable > 0),
            "failed": names(|s| s.failed > 0),
            "hosts": hosts,
            "tasks": tasks,
        }))
    }

    pub fn plan_markdown(&self, stats: &[(String, HostStats)]) -> String {
        let tasks = self.plan.lock().map(|p| p.clone()).unwrap_or_default();
        let mut s = String::from(
            "## deployer plan\n\n| host | ok | would change | failed | unreachable | skipped |\n|---|---|---|---|---|---|\n",
        );
        for (h, st) in stats {
            s.push_str(&format!(
                "| {h} | {} | {} | {} | {} | {} |\n",
                st.ok, st.changed, st.failed, st.unreachable, st.skipped
            ));
        }
        let unreachable: Vec<&String> = stats
            .iter()
            .filter(|(_, st)| st.unreachable > 0)
            .map(|(h, _)| h)
            .collect();
        let failed_hosts = stats.iter().any(|(_, st)| st.failed > 0);
        if !unreachable.is_empty() {
            s.push_str(&format!(
                "\n### UNREACHABLE: {}\n\nThe plan is incomplete: nothing is known about what would change on {}.\n",
                unreachable
                    .iter()
                    .map(|h| h.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                if unreachable.len() == 1 {
                    "this host"
                } else {
                    "these hosts"
                }
            ));
        }
        let changed: Vec<&PlannedTask> = tasks
            .iter()
            .filter(|t| {
                matches!(
                    t.status,
                    Status::Changed | Status::Failed | Status::Unreachable
                )
            })
            .collect();
        if changed.is_empty() && unreachable.is_empty() && !failed_hosts {
            s.push_str("\nNo changes.\n");
        }
        for t in changed {
            s.push_str(&format!(
                "\n### {} `{}` on {}\n",
                match t.status {
                    Status::Failed => "FAILED",
                    Status::Unreachable => "UNREACHABLE",
                    _ => "change",
                },
                t.task,
                t.host
            ));
            if let Some(m) = &t.msg {
                s.push_str(&format!("\n{m}\n"));
            }
            for d in &t.diffs {
                s.push_str(&format!("\n```diff\n{}```\n", unified_diff(d)));
            }
        }
        mask(&s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex as StdMutex};

    #[derive(Clone, Default)]
    struct Buf(Arc<StdMutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("buf").extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn events(buf: &Buf) -> Vec<Json> {
        String::from_utf8(buf.0.lock().expect("buf").clone())
            .expect("utf-8")
            .lines()
            .map(|l| serde_json::from_str(l).expect("one JSON event a line"))
            .collect()
    }

    #[test]
    fn task_progress_events_carry_start_progress_end_and_are_throttled() {
        let buf = Buf::default();
        let r = Arc::new(Reporter::to_writer(
            Format::Json,
            false,
            Box::new(buf.clone()),
        ));
        let p = TaskProgress::new(&r, "tb1", "Pull images");
        p.start("image_pull", "pulling img:1", json!({"image": "img:1"}));
        p.update(
            "image_pull",
            "img:1: 1.0 MB of 4.0 MB",
            json!({"bytes_done": 1_000_000u64}),
        );
        // Within a second of the last progress event: not sent.
        p.update(
            "image_pull",
            "img:1: 2.0 MB of 4.0 MB",
            json!({"bytes_done": 2_000_000u64}),
        );
        // Another step has its own clock.
        p.update(
            "health_wait",
            "api: starting",
            json!({"health": "starting"}),
        );
        p.end(
            "image_pull",
            "pulled img:1",
            json!({"bytes_done": 4_000_000u64}),
        );
        let ev = events(&buf);
        let phases: Vec<(String, String)> = ev
            .iter()
            .map(|e| {
                (
                    e["step"].as_str().unwrap_or("").to_string(),
                    e["phase"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        assert_eq!(
            phases,
            [
                ("image_pull", "start"),
                ("image_pull", "progress"),
                ("health_wait", "progress"),
                ("image_pull", "end"),
            ]
            .map(|(a, b)| (a.to_string(), b.to_string()))
        );
        assert!(ev.iter().all(|e| e["event"] == "task_progress"
            && e["host"] == "tb1"
            && e["task"] == "Pull images"));
        assert_eq!(ev[1]["bytes_done"], 1_000_000);
        assert_eq!(ev[1]["msg"], "img:1: 1.0 MB of 4.0 MB");
        assert_eq!(ev[3]["bytes_done"], 4_000_000);
        // Quiet output (plans) reports nothing.
        let quiet = Arc::new(Reporter::to_writer(
            Format::Quiet,
            false,
            Box::new(buf.clone()),
        ));
        TaskProgress::new(&quiet, "tb1", "t").start("x", "y", json!({}));
        assert_eq!(events(&buf).len(), 4);
    }

    #[test]
    fn status_line_shows_the_step_after_the_elapsed_time() {
        let p = Progress {
            running: Mutex::new(Vec::new()),
            drawn: std::sync::atomic::AtomicBool::new(false),
            screen: Mutex::new(()),
        };
        p.set("tb1", "Plane users");
        p.set("tb2", "Stack up");
        p.set_detail("tb1", "user 3 of 11: writer@agents.test");
        assert_eq!(
            p.text(200).as_deref(),
            Some(
                "running: [tb1] Plane users 0s: user 3 of 11: writer@agents.test, [tb2] Stack up 0s"
            )
        );
        // Cut to the terminal's width.
        assert_eq!(p.text(20).map(|t| t.chars().count()), Some(19));
        p.clear_host("tb1");
        assert_eq!(p.text(200).as_deref(), Some("running: [tb2] Stack up 0s"));
    }

    #[test]
    fn bytes_for_a_person() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(1_500), "1.5 kB");
        assert_eq!(human_bytes(40_123_456), "40.1 MB");
        assert_eq!(human_bytes(2_000_000_000), "2.0 GB");
    }
}
