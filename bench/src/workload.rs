//! Workload files (`bench/workloads/*.conf`): `key = value` lines, `#` comments; keys prefixed
//! `smoke.` replace their plain key in smoke mode.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{LoadError, Result};

#[derive(Debug, Clone)]
pub struct Workload {
    pub name: String,
    pub path: PathBuf,
    values: BTreeMap<String, String>,
    /// The first lines of `#` comments: what the workload is.
    pub description: String,
}

impl Workload {
    pub fn parse(name: &str, path: &Path, text: &str, smoke: bool) -> Result<Self> {
        let mut plain = BTreeMap::new();
        let mut smoke_over = BTreeMap::new();
        let mut description = String::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if let Some(c) = line.strip_prefix('#') {
                if plain.is_empty() {
                    description.push_str(c.trim());
                    description.push(' ');
                }
                continue;
            }
            if line.is_empty() {
                continue;
            }
            let (k, v) = line.split_once('=').ok_or_else(|| {
                LoadError::Config(format!(
                    "{}:{}: expected key = value",
                    path.display(),
                    n + 1
                ))
            })?;
            let (k, v) = (k.trim().to_owned(), v.trim().to_owned());
            match k.strip_prefix("smoke.") {
                Some(sk) => smoke_over.insert(sk.to_owned(), v),
                None => plain.insert(k, v),
            };
        }
        if smoke {
            plain.extend(smoke_over);
        }
        Ok(Self {
            name: name.to_owned(),
            path: path.to_owned(),
            values: plain,
            description: description.trim().to_owned(),
        })
    }

    pub fn load(spec: &str, dir: &Path, smoke: bool) -> Result<Self> {
        let path = if spec.ends_with(".conf") || spec.contains('/') {
            PathBuf::from(spec)
        } else {
            dir.join(format!("{spec}.conf"))
        };
        let text = std::fs::read_to_string(&path)
            .map_err(LoadError::io(format!("read {}", path.display())))?;
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or(spec)
            .to_owned();
        Self::parse(&name, &path, &text, smoke)
    }

    /// Every workload in `dir`, sorted by name.
    pub fn all(dir: &Path, smoke: bool) -> Result<Vec<Self>> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(LoadError::io(format!("read {}", dir.display())))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "conf"))
            .collect();
        names.sort();
        names
            .iter()
            .map(|p| Self::load(&p.to_string_lossy(), dir, smoke))
            .collect()
    }

    /// Sets (or replaces) a key, e.g. a rate the harness measured.
    pub fn set(&mut self, key: &str, value: impl Into<String>) {
        self.values.insert(key.to_owned(), value.into());
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    pub fn str_or(&self, key: &str, default: &str) -> String {
        self.get(key).unwrap_or(default).to_owned()
    }

    pub fn num<T: std::str::FromStr>(&self, key: &str, default: T) -> Result<T> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| {
                LoadError::Config(format!(
                    "{}: {key} = {v:?} is not a number",
                    self.path.display()
                ))
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smoke_keys_override_in_smoke_mode_only() {
        let text = "# What it is\n# more\nsystem = kafka\nduration_s = 20\nsmoke.duration_s = 2\n";
        let w = Workload::parse("w", Path::new("w.conf"), text, false).unwrap();
        assert_eq!(w.num("duration_s", 0.0).unwrap(), 20.0);
        assert_eq!(w.description, "What it is more");
        let s = Workload::parse("w", Path::new("w.conf"), text, true).unwrap();
        assert_eq!(s.num("duration_s", 0.0).unwrap(), 2.0);
        assert_eq!(s.get("system"), Some("kafka"));
        assert!(Workload::parse("w", Path::new("w.conf"), "nonsense\n", false).is_err());
    }

    #[test]
    fn the_shipped_workloads_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("workloads");
        let all = Workload::all(&dir, true).unwrap();
        assert!(all.len() >= 8, "{}", all.len());
        for w in all {
            assert!(
                matches!(w.get("system"), Some("kafka" | "zk")),
                "{}",
                w.name
            );
        }
    }
}
