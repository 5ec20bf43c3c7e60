//! Inventories (YAML and INI), `group_vars/` and `host_vars/`, and host patterns.

use std::path::{Path, PathBuf};

use indexmap::{IndexMap, IndexSet};

use crate::yaml::{self, Loc, LocatedError, Node, Yaml};

pub type Vars = IndexMap<String, Node>;

#[derive(Debug, Default, Clone)]
pub struct Group {
    pub name: String,
    pub vars: Vars,
    pub children: IndexSet<String>,
    pub hosts: IndexSet<String>,
}

#[derive(Debug, Clone)]
pub struct Host {
    pub name: String,
    pub vars: Vars,
}

#[derive(Debug, Default, Clone)]
pub struct Inventory {
    pub hosts: IndexMap<String, Host>,
    pub groups: IndexMap<String, Group>,
    /// Directories whose `group_vars/` and `host_vars/` belong to this inventory.
    pub dirs: Vec<PathBuf>,
}

impl Inventory {
    pub fn load(paths: &[PathBuf]) -> Result<Inventory, LocatedError> {
        let mut inv = Inventory::default();
        inv.group_mut("all");
        inv.group_mut("ungrouped");
        for path in paths {
            if path.is_dir() {
                let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
                    .map_err(|e| {
                        LocatedError::new(
                            &Loc::file_only(path),
                            format!("cannot read inventory directory: {e}"),
                        )
                    })?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.is_file() && !is_ignored_inventory_file(p))
                    .collect();
                entries.sort();
                for e in entries {
                    inv.load_file(&e)?;
                }
                inv.dirs.push(path.clone());
            } else {
                inv.load_file(path)?;
                inv.dirs
                    .push(path.parent().map(Path::to_path_buf).unwrap_or_default());
            }
        }
        // Every host is in `all`; hosts in no other group are in `ungrouped`.
        let in_group: IndexSet<String> = inv
            .groups
            .values()
            .filter(|g| g.name != "all" && g.name != "ungrouped")
            .flat_map(|g| g.hosts.iter().cloned())
            .collect();
        let names: Vec<String> = inv.hosts.keys().cloned().collect();
        for h in names {
            if !in_group.contains(&h) {
                inv.group_mut("ungrouped").hosts.insert(h.clone());
            }
        }
        let tops: Vec<String> = inv.groups.keys().filter(|g| *g != "all").cloned().collect();
        for g in tops {
            inv.group_mut("all").children.insert(g);
        }
        for dir in inv.dirs.clone() {
            inv.load_vars_dirs(&dir)?;
        }
        Ok(inv)
    }

    /// `group_vars/` and `host_vars/` next to a playbook are also read (Ansible does too).
    pub fn load_vars_dirs(&mut self, dir: &Path) -> Result<(), LocatedError> {
        let groups: Vec<String> = self.groups.keys().cloned().collect();
        for g in groups {
            let vars = load_vars_entry(&dir.join("group_vars"), &g)?;
            let group = self.group_mut(&g);
            for (k, v) in vars {
                group.vars.insert(k, v);
            }
        }
        let hosts: Vec<String> = self.hosts.keys().cloned().collect();
        for h in hosts {
            let vars = load_vars_entry(&dir.join("host_vars"), &h)?;
            if let Some(host) = self.hosts.get_mut(&h) {
                for (k, v) in vars {
                    host.vars.insert(k, v);
                }
            }
        }
        Ok(())
    }

    fn group_mut(&mut self, name: &str) -> &mut Group {
        self.groups
            .entry(name.to_string())
            .or_insert_with(|| Group {
                name: name.to_string(),
                ..Default::default()
            })
    }

    fn add_host(&mut self, name: &str, vars: Vars) {
        let host = self.hosts.entry(name.to_string()).or_insert_with(|| Host {
            name: name.to_string(),
            vars: Vars::new(),
        });
        for (k, v) in vars {
            host.vars.insert(k, v);
        }
    }

    fn load_file(&mut self, path: &Path) -> Result<(), LocatedError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            LocatedError::new(&Loc::file_only(path), format!("cannot read inventory: {e}"))
        })?;
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        if ext == "yml" || ext == "yaml" || ext == "json" {
            let root = yaml::parse_str(&text, path)?;
            if root.is_null() {
                return Ok(());
            }
            for (group, body) in root.expect_map("an inventory (groups at the top level)")? {
                self.load_yaml_group(group, body)?;
            }
            Ok(())
        } else {
            self.load_ini(&text, path)
        }
    }

    fn load_yaml_group(&mut self, name: &str, node: &Node) -> Result<(), LocatedError> {
        self.group_mut(name);
        if node.is_null() {
            return Ok(());
        }
        for (key, value) in node.expect_map(&format!("group '{name}'"))? {
            match key {
                "hosts" => {
                    if value.is_null() {
                        continue;
                    }
                    for (host, hvars) in
                        value.expect_map(&format!("the hosts of group '{name}'"))?
                    {
                        let vars = if hvars.is_null() {
                            Vars::new()
                        } else {
                            vars_from_map(hvars, &format!("host '{host}'"))?
                        };
                        self.add_host(host, vars);
                        self.group_mut(name).hosts.insert(host.to_string());
                    }
                }
                "vars" => {
                    if value.is_null() {
                        continue;
                    }
                    let vars = vars_from_map(value, &format!("the vars of group '{name}'"))?;
                    let g = self.group_mut(name);
                    for (k, v) in vars {
                        g.vars.insert(k, v);
                    }
                }
                "children" => {
                    if value.is_null() {
                        continue;
                    }
                    for (child, cnode) in
                        value.expect_map(&format!("the children of group '{name}'"))?
                    {
                        self.group_mut(name).children.insert(child.to_string());
                        self.load_yaml_group(child, cnode)?;
                    }
                }
                other => {
                    let loc = node
                        .as_map()
                        .and_then(|m| {
                            m.iter()
                                .find(|(k, _)| k.as_str() == Some(other))
                                .map(|(k, _)| k.loc.clone())
                        })
                        .unwrap_or_else(|| node.loc.clone());
                    return Err(LocatedError::new(
                        &loc,
                        format!(
                            "unknown key '{other}' in group '{name}': expected hosts, vars or children"
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// An inventory from the text of an INI inventory file named `path`
    /// (the fuzz targets' entry point; `load` reads files).
    pub fn from_ini_str(text: &str, path: &Path) -> Result<Inventory, LocatedError> {
        let mut inv = Inventory::default();
        inv.load_ini(text, path)?;
        Ok(inv)
    }

    fn load_ini(&mut self, text: &str, path: &Path) -> Result<(), LocatedError> {
        enum Section {
            Hosts(String),
            Vars(String),
            Children(String),
        }
        let mut section = Section::Hosts("ungrouped".into());
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            let loc = Loc::new(path, i + 1, 0);
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if let Some(header) = line.strip_prefix('[') {
                let header = header.strip_suffix(']').ok_or_else(|| {
                    LocatedError::new(
                        &loc,
                        "expected a section header like [group] or [group:vars]",
                    )
                })?;
                section = match header.split_once(':') {
                    None => Section::Hosts(header.to_string()),
                    Some((g, "vars")) => Section::Vars(g.to_string()),
                    Some((g, "children")) => Section::Children(g.to_string()),
                    Some((_, other)) => {
                        return Err(LocatedError::new(
                            &loc,
                            format!(
                                "unknown section suffix ':{other}': expected :vars or :children"
                            ),
                        ));
                    }
                };
                let name = match &section {
                    Section::Hosts(g) | Section::Vars(g) | Section::Children(g) => g.clone(),
                };
                self.group_mut(&name);
                continue;
            }
            match &section {
                Section::Hosts(group) => {
                    let mut parts = split_ini_words(line, &loc)?.into_iter();
                    let host = parts.next().unwrap_or_default();
                    let mut vars = Vars::new();
                    for p in parts {
                        let (k, v) = p.split_once('=').ok_or_else(|| {
                            LocatedError::new(
                                &loc,
                                format!("expected key=value after the host name, got '{p}'"),
                            )
                        })?;
                        vars.insert(k.to_string(), ini_value(v, &loc));
                    }
                    self.add_host(&host, vars);
                    let group = group.clone();
                    self.group_mut(&group).hosts.insert(host);
                }
                Section::Vars(group) => {
                    let (k, v) = line.split_once('=').ok_or_else(|| {
                        LocatedError::new(&loc, "expected key=value in a :vars section")
                    })?;
                    let group = group.clone();
                    self.group_mut(&group)
                        .vars
                        .insert(k.trim().to_string(), ini_value(v.trim(), &loc));
                }
                Section::Children(group) => {
                    let group = group.clone();
                    self.group_mut(line);
                    self.group_mut(&group).children.insert(line.to_string());
                }
            }
        }
        Ok(())
    }

    /// Groups of a host, from `all` down, parents before children, so later
    /// groups' vars override earlier ones (Ansible's depth order, then by name).
    pub fn host_groups(&self, host: &str) -> Vec<String> {
        let mut depth: IndexMap<String, usize> = IndexMap::new();
        self.walk_depth("all", 0, &mut depth, &mut Vec::new());
        let mut out: Vec<(usize, String)> = self
            .groups
            .values()
            .filter(|g| self.group_contains(&g.name, host, &mut Vec::new()))
            .map(|g| (depth.get(&g.name).copied().unwrap_or(1), g.name.clone()))
            .collect();
        out.sort();
        out.into_iter().map(|(_, n)| n).collect()
    }

    fn walk_depth(
        &self,
        g: &str,
        d: usize,
        depth: &mut IndexMap<String, usize>,
        seen: &mut Vec<String>,
    ) {
        if seen.iter().any(|s| s == g) {
            return;
        }
        let e = depth.entry(g.to_string()).or_insert(d);
        *e = (*e).max(d);
        if let Some(group) = self.groups.get(g) {
            seen.push(g.to_string());
            for c in &group.children {
                self.walk_depth(c, d + 1, depth, seen);
            }
            seen.pop();
        }
    }

    fn group_contains(&self, g: &str, host: &str, seen: &mut Vec<String>) -> bool {
        if g == "all" {
            return self.hosts.contains_key(host);
        }
        if seen.iter().any(|s| s == g) {
            return false;
        }
        let Some(group) = self.groups.get(g) else {
            return false;
        };
        if group.hosts.contains(host) {
            return true;
        }
        seen.push(g.to_string());
        let found = group
            .children
            .iter()
            .any(|c| self.group_contains(c, host, seen));
        seen.pop();
        found
    }

    pub fn group_hosts(&self, g: &str) -> Vec<String> {
        self.hosts
            .keys()
            .filter(|h| self.group_contains(g, h, &mut Vec::new()))
            .cloned()
            .collect()
    }

    /// Ansible host patterns: `all`, `*`, names, globs, `a:b` (union), `a:&b`
    /// (intersection), `a:!b` (exclusion), commas as `:`.
    pub fn select(&self, pattern: &str) -> Result<Vec<String>, String> {
        let mut result: IndexSet<String> = IndexSet::new();
        let terms: Vec<&str> = pattern
            .split([':', ','])
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .collect();
        let mut intersections = Vec::new();
        let mut exclusions = Vec::new();
        for t in terms {
            if let Some(x) = t.strip_prefix('&') {
                intersections.push(self.match_term(x)?);
            } else if let Some(x) = t.strip_prefix('!') {
                exclusions.push(self.match_term(x)?);
            } else {
                result.extend(self.match_term(t)?);
            }
        }
        for i in intersections {
            result.retain(|h| i.contains(h));
        }
        for e in exclusions {
            result.retain(|h| !e.contains(h));
        }
        Ok(result.into_iter().collect())
    }

    fn match_term(&self, t: &str) -> Result<Vec<String>, String> {
        if t == "all" || t == "*" {
            return Ok(self.hosts.keys().cloned().collect());
        }
        if self.groups.contains_key(t) {
            return Ok(self.group_hosts(t));
        }
        if self.hosts.contains_key(t) {
            return Ok(vec![t.to_string()]);
        }
        if t.contains('*') || t.contains('?') {
            let pat = glob::Pattern::new(t).map_err(|e| format!("bad host pattern '{t}': {e}"))?;
            let mut out: Vec<String> = self
                .hosts
                .keys()
                .filter(|h| pat.matches(h))
                .cloned()
                .collect();
            for g in self.groups.keys().filter(|g| pat.matches(g)) {
                out.extend(self.group_hosts(g));
            }
            return Ok(out);
        }
        Ok(Vec::new())
    }
}

fn is_ignored_inventory_file(p: &Path) -> bool {
    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name.starts_with('.')
        || name.ends_with('~')
        || name.ends_with(".retry")
        || name.ends_with(".md")
}

fn split_ini_words(line: &str, loc: &Loc) -> Result<Vec<String>, LocatedError> {
    let line = match line.find(" #") {
        Some(i) => &line[..i],
        None => line,
    };
    crate::shell::split(line).ok_or_else(|| LocatedError::new(loc, "unbalanced quotes"))
}

/// INI values: Ansible evaluates them as Python literals where they parse.
fn ini_value(v: &str, loc: &Loc) -> Node {
    let value = match v {
        "True" | "true" => Yaml::Bool(true),
        "False" | "false" => Yaml::Bool(false),
        _ => match v.parse::<i64>() {
            Ok(i) => Yaml::Int(i),
            Err(_) => {
                let unq = v
                    .strip_prefix('"')
                    .and_then(|x| x.strip_suffix('"'))
                    .or_else(|| v.strip_prefix('\'').and_then(|x| x.strip_suffix('\'')))
                    .unwrap_or(v);
                Yaml::Str(unq.to_string())
            }
        },
    };
    Node {
        value,
        loc: loc.clone(),
    }
}

pub fn vars_from_map(node: &Node, what: &str) -> Result<Vars, LocatedError> {
    let mut vars = Vars::new();
    if node.is_null() {
        return Ok(vars);
    }
    for (k, v) in node.expect_map(what)? {
        vars.insert(k.to_string(), v.clone());
    }
    Ok(vars)
}

/// `group_vars/NAME`, `NAME.yml`, `NAME.yaml`, `NAME.json`, or a directory `NAME/` of
/// such files read in sorted order (later files override earlier ones).
pub fn load_vars_entry(base: &Path, name: &str) -> Result<Vars, LocatedError> {
    let mut files = Vec::new();
    for cand in [
        name.to_string(),
        format!("{name}.yml"),
        format!("{name}.yaml"),
        format!("{name}.json"),
    ] {
        let p = base.join(&cand);
        if p.is_file() {
            files.push(p);
        }
    }
    let dir = base.join(name);
    if dir.is_dir() {
        let mut inner = Vec::new();
        collect_var_files(&dir, &mut inner)?;
        inner.sort();
        files.extend(inner);
    }
    let mut vars = Vars::new();
    for f in files {
        for (k, v) in load_vars_file(&f)? {
            vars.insert(k, v);
        }
    }
    Ok(vars)
}

fn collect_var_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), LocatedError> {
    let rd = std::fs::read_dir(dir).map_err(|e| {
        LocatedError::new(&Loc::file_only(dir), format!("cannot read directory: {e}"))
    })?;
    for e in rd.flatten() {
        let p = e.path();
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with('.') || name.ends_with('~') {
            continue;
        }
        if p.is_dir() {
            collect_var_files(&p, out)?;
        } else if matches!(
            p.extension().and_then(|e| e.to_str()),
            Some("yml" | "yaml" | "json") | None
        ) {
            out.push(p);
        }
    }
    Ok(())
}

/// A vars file; a whole-file vault is decrypted later, when a value is used
/// (see `vars::VaultFile`), so here it becomes one marker node per file.
pub fn load_vars_file(path: &Path) -> Result<Vars, LocatedError> {
    let bytes = std::fs::read(path).map_err(|e| {
        LocatedError::new(&Loc::file_only(path), format!("cannot read vars file: {e}"))
    })?;
    if crate::vault::is_encrypted(&bytes) {
        let mut vars = Vars::new();
        vars.insert(
            crate::vars::VAULT_FILE_MARKER.to_string(),
            Node {
                value: Yaml::Vault(String::from_utf8_lossy(&bytes).into_owned()),
                loc: Loc::file_only(path),
            },
        );
        return Ok(vars);
    }
    let text = String::from_utf8(bytes).map_err(|e| {
        LocatedError::new(
            &Loc::file_only(path),
            format!("vars file is not valid UTF-8: {e}"),
        )
    })?;
    let node = yaml::parse_str(&text, path)?;
    vars_from_map(&node, "a vars file")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inv_from(text: &str, name: &str) -> Inventory {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join(name);
        std::fs::write(&p, text).expect("write");
        Inventory::load(&[p]).expect("load")
    }

    #[test]
    fn yaml_inventory_with_children_and_patterns() {
        let inv = inv_from(
            "all:\n  children:\n    web:\n      hosts:\n        w1: {ansible_port: 22}\n        w2:\n    db:\n      hosts:\n        d1:\n        w2:\n",
            "hosts.yml",
        );
        assert_eq!(inv.select("all").expect("sel"), vec!["w1", "w2", "d1"]);
        assert_eq!(inv.select("web:&db").expect("sel"), vec!["w2"]);
        assert_eq!(inv.select("web:!db").expect("sel"), vec!["w1"]);
        let mut u = inv.select("db:w1").expect("sel");
        u.sort();
        assert_eq!(u, vec!["d1", "w1", "w2"]);
        assert_eq!(inv.select("w*").expect("sel"), vec!["w1", "w2"]);
        assert_eq!(inv.host_groups("w2"), vec!["all", "db", "web"]);
    }

    #[test]
    fn ini_inventory_with_vars_and_children() {
        let inv = inv_from(
            "alone ansible_host=10.0.0.9\n[web]\nw1 ansible_port=2222 x='a b'\n[web:vars]\nhttp=80\n[prod:children]\nweb\n",
            "hosts",
        );
        assert_eq!(inv.select("prod").expect("sel"), vec!["w1"]);
        assert_eq!(inv.select("ungrouped").expect("sel"), vec!["alone"]);
        assert_eq!(inv.hosts["w1"].vars["x"].as_str(), Some("a b"));
        assert_eq!(inv.hosts["w1"].vars["ansible_port"].value, Yaml::Int(2222));
        assert_eq!(inv.groups["web"].vars["http"].value, Yaml::Int(80));
    }

    #[test]
    fn unknown_group_key_is_an_error_with_location() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("bad.yml");
        std::fs::write(&p, "all:\n  host:\n    a:\n").expect("write");
        let e = Inventory::load(&[p]).expect_err("bad");
        assert!(
            e.to_string().contains("bad.yml:2:3: unknown key 'host'"),
            "{e}"
        );
    }
}
