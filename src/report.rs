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

pub struct Reporter {
    pub format: Format,
    pub show_diff: bool,
    out: Mutex<Box<dyn Write + Send>>,
    pub plan: Mutex<Vec<PlannedTask>>,
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
        }
    }

    pub fn to_writer(format: Format, show_diff: bool, w: Box<dyn Write + Send>) -> Reporter {
        Reporter {
            format,
            show_diff,
            out: Mutex::new(w),
            plan: Mutex::new(Vec::new()),
        }
    }

    fn line(&self, text: &str) {
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
                let mut line = format!("{}: [{host}] {task}{item}", status.word());
                if let Some(m) = msg
                    && (matches!(status, Status::Failed | Status::Unreachable) || !m.is_empty() && status != Status::Skipped) {
                        line.push_str(&format!(" => {m}"));
                    }
                self.line(&line);
                if show_diff {
                    for d in diffs {
                        self.line(unified_diff(d).trim_end());
                    }
                }
            }
            Format::Json => self.event(json!({
                "event": "task_result", "host": host, "task": task, "location": location,
                "status": status, "item": item, "msg": msg,
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
