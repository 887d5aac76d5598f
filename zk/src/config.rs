//! `zoo.cfg`: the keys Kiln reads, their ZooKeeper defaults, and validation.
//!
//! The file is a Java properties file (`key=value`, `#` and `!` comments). A bad value is refused
//! naming the key, the value and why; an unknown key is returned as a warning and otherwise
//! ignored; more than one `server.N` line is refused because Kiln does not run ensembles yet.
//! `dataDir/myid`, when present, gives the server id. No network I/O; reads two small files.

use std::collections::BTreeSet;
use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("{key}={value}: {reason}")]
    BadValue {
        key: String,
        value: String,
        reason: String,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{count} server.N lines ({ids}): Kiln runs ZooKeeper standalone only for now; ensembles are not \
         available yet, so configure at most one server.N line"
    )]
    Ensemble { count: usize, ids: String },
    #[error("{0}")]
    Invalid(String),
}

fn bad(key: &str, value: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::BadValue {
        key: key.to_string(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// Default `jute.maxbuffer` (0xfffff bytes).
pub const JUTE_MAXBUFFER_DEFAULT: usize = 0xfffff;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZkConfig {
    pub tick_time_ms: u32,
    pub init_limit: u32,
    pub sync_limit: u32,
    pub data_dir: PathBuf,
    pub data_log_dir: PathBuf,
    pub client_port: u16,
    pub client_port_address: Option<IpAddr>,
    /// Concurrent connections per client IP; 0 = unlimited.
    pub max_client_cnxns: u32,
    pub min_session_timeout_ms: u32,
    pub max_session_timeout_ms: u32,
    pub snap_retain_count: u32,
    /// Hours between purges; 0 disables autopurge.
    pub purge_interval_hours: u32,
    pub snap_count: u64,
    /// Four-letter words allowed; contains "*" for all.
    pub four_letter_whitelist: BTreeSet<String>,
    /// `jute.maxbuffer`: largest request packet and znode data, in bytes.
    pub jute_maxbuffer: usize,
    pub extended_types: bool,
    pub admin_enable: bool,
    pub admin_server_port: u16,
    pub admin_server_address: Option<IpAddr>,
    /// `DigestAuthenticationProvider.superDigest` (`super:<base64 sha1>`).
    pub super_digest: Option<String>,
    /// `znode.container.checkIntervalMs`.
    pub container_check_interval_ms: u64,
    /// `forceSync`: replies wait for fdatasync (yes) or only for the page cache (no).
    pub force_sync: bool,
    /// `preAllocSize` (kilobytes, default 65536): how far ahead of its writes the transaction
    /// log is filled with zeros, so an fdatasync overwrites blocks already written instead of
    /// allocating them; 0 disables the padding (as in ZooKeeper). Capped by the log's 64 MiB
    /// segments.
    pub pre_alloc_kb: u64,
    /// `globalOutstandingLimit`: requests in flight per connection before reading pauses.
    pub outstanding_per_connection_max: usize,
    /// `myid` (0 when absent).
    pub server_id: i64,
}

impl ZkConfig {
    /// Standalone defaults with data under `data_dir` (`kiln up` passes `./kiln-data/zk`).
    pub fn default_embedded(data_dir: impl Into<PathBuf>) -> Self {
        let data_dir = data_dir.into();
        let tick = 2000;
        Self {
            tick_time_ms: tick,
            init_limit: 10,
            sync_limit: 5,
            data_log_dir: data_dir.clone(),
            data_dir,
            client_port: 2181,
            client_port_address: None,
            max_client_cnxns: 60,
            min_session_timeout_ms: 2 * tick,
            max_session_timeout_ms: 20 * tick,
            snap_retain_count: 3,
            purge_interval_hours: 0,
            snap_count: 100_000,
            four_letter_whitelist: ["srvr".to_string()].into_iter().collect(),
            jute_maxbuffer: JUTE_MAXBUFFER_DEFAULT,
            extended_types: false,
            admin_enable: false,
            admin_server_port: 8080,
            admin_server_address: None,
            super_digest: None,
            container_check_interval_ms: 60_000,
            force_sync: true,
            pre_alloc_kb: 64 << 10,
            outstanding_per_connection_max: 1000,
            server_id: 0,
        }
    }

    /// Whether a four-letter word may run.
    pub fn four_letter_allowed(&self, cmd: &str) -> bool {
        self.four_letter_whitelist.contains("*") || self.four_letter_whitelist.contains(cmd)
    }

    /// Reads and validates a `zoo.cfg`; returns the config and the warnings for ignored keys.
    pub fn load(path: &Path) -> Result<(Self, Vec<String>), ConfigError> {
        let text = fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let (mut cfg, warnings) = Self::parse(&text)?;
        let myid = cfg.data_dir.join("myid");
        if myid.exists() {
            let raw = fs::read_to_string(&myid).map_err(|source| ConfigError::Read {
                path: myid.clone(),
                source,
            })?;
            let id = raw.trim();
            cfg.server_id = id
                .parse::<i64>()
                .ok()
                .filter(|v| (0..=254).contains(v))
                .ok_or_else(|| {
                    bad(
                        "myid",
                        id,
                        format!(
                            "{} must hold an integer server id in 0..=254",
                            myid.display()
                        ),
                    )
                })?;
        }
        Ok((cfg, warnings))
    }

    /// Parses `zoo.cfg` text (relative directories are kept as given).
    pub fn parse(text: &str) -> Result<(Self, Vec<String>), ConfigError> {
        let mut cfg = Self::default_embedded("");
        // ZooKeeper starts its AdminServer unless told otherwise; `kiln up` does not.
        cfg.admin_enable = true;
        let mut warnings = Vec::new();
        let mut data_dir: Option<PathBuf> = None;
        let mut data_log_dir: Option<PathBuf> = None;
        let mut min_to: Option<u32> = None;
        let mut max_to: Option<u32> = None;
        let mut servers: Vec<String> = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
                continue;
            }
            let Some((key, value)) = line
                .split_once(['=', ':'])
                .map(|(k, v)| (k.trim(), v.trim()))
            else {
                warnings.push(format!("ignoring line without '=': {line}"));
                continue;
            };
            match key {
                "tickTime" => cfg.tick_time_ms = parse_num(key, value, 1, u32::MAX)?,
                "initLimit" => cfg.init_limit = parse_num(key, value, 1, u32::MAX)?,
                "syncLimit" => cfg.sync_limit = parse_num(key, value, 1, u32::MAX)?,
                "dataDir" => data_dir = Some(parse_dir(key, value)?),
                "dataLogDir" => data_log_dir = Some(parse_dir(key, value)?),
                "clientPort" => cfg.client_port = parse_num(key, value, 1, 65535)?,
                "clientPortAddress" => cfg.client_port_address = Some(parse_ip(key, value)?),
                "maxClientCnxns" => cfg.max_client_cnxns = parse_num(key, value, 0, u32::MAX)?,
                "minSessionTimeout" => min_to = Some(parse_num(key, value, 1, u32::MAX)?),
                "maxSessionTimeout" => max_to = Some(parse_num(key, value, 1, u32::MAX)?),
                "autopurge.snapRetainCount" => {
                    cfg.snap_retain_count = parse_num(key, value, 3, u32::MAX)?
                }
                "autopurge.purgeInterval" => {
                    cfg.purge_interval_hours = parse_num(key, value, 0, u32::MAX)?
                }
                "snapCount" => cfg.snap_count = parse_num(key, value, 2, u64::MAX)?,
                "4lw.commands.whitelist" => {
                    cfg.four_letter_whitelist = value
                        .split(',')
                        .map(|s| s.trim().to_string())
                        .filter(|s| !s.is_empty())
                        .collect();
                    for c in &cfg.four_letter_whitelist {
                        if c != "*" && !crate::fourlw::COMMANDS.contains(&c.as_str()) {
                            warnings.push(format!(
                                "4lw.commands.whitelist: unknown command {c} ignored"
                            ));
                        }
                    }
                }
                "jute.maxbuffer" | "zookeeper.jute.maxbuffer" => {
                    cfg.jute_maxbuffer = parse_num(key, value, 1024, i32::MAX as usize)?;
                }
                "extendedTypesEnabled" | "zookeeper.extendedTypesEnabled" => {
                    cfg.extended_types = parse_bool(key, value)?;
                }
                "admin.enableServer" => cfg.admin_enable = parse_bool(key, value)?,
                "admin.serverPort" => cfg.admin_server_port = parse_num(key, value, 1, 65535)?,
                "admin.serverAddress" => cfg.admin_server_address = Some(parse_ip(key, value)?),
                "DigestAuthenticationProvider.superDigest"
                | "zookeeper.DigestAuthenticationProvider.superDigest" => {
                    if !value.contains(':') {
                        return Err(bad(key, value, "expected user:base64(sha1(user:password))"));
                    }
                    cfg.super_digest = Some(value.to_string());
                }
                "znode.container.checkIntervalMs" => {
                    cfg.container_check_interval_ms = parse_num(key, value, 1, u64::MAX)?;
                }
                "forceSync" => cfg.force_sync = parse_bool(key, value)?,
                "preAllocSize" | "zookeeper.preAllocSize" => {
                    cfg.pre_alloc_kb = parse_num(key, value, 0, 1 << 21)?;
                }
                "globalOutstandingLimit" => {
                    cfg.outstanding_per_connection_max = parse_num(key, value, 1, 1 << 20)?
                }
                "standaloneEnabled"
                | "reconfigEnabled"
                | "skipACL"
                | "electionAlg"
                | "leaderServes"
                | "cnxTimeout"
                | "quorumListenOnAllIPs"
                | "localSessionsEnabled"
                | "localSessionsUpgradingEnabled"
                | "metricsProvider.className"
                | "admin.commandURL"
                | "admin.idleTimeout"
                | "fsync.warningthresholdms"
                | "syncEnabled"
                | "peerType"
                | "clientPortListenBacklog"
                | "secureClientPort"
                | "serverCnxnFactory" => {
                    warnings.push(format!("{key}: accepted but has no effect in Kiln"));
                }
                k if k.starts_with("server.") => {
                    let id = &k["server.".len()..];
                    if id.parse::<u8>().is_err() {
                        return Err(bad(key, value, "server id must be an integer in 0..=254"));
                    }
                    servers.push(id.to_string());
                }
                _ => warnings.push(format!("unknown key {key} ignored")),
            }
        }
        if servers.len() > 1 {
            return Err(ConfigError::Ensemble {
                count: servers.len(),
                ids: servers.join(", "),
            });
        }
        let data_dir =
            data_dir.ok_or_else(|| ConfigError::Invalid("dataDir is not set".to_string()))?;
        cfg.data_log_dir = data_log_dir.unwrap_or_else(|| data_dir.clone());
        cfg.data_dir = data_dir;
        cfg.min_session_timeout_ms = min_to.unwrap_or(cfg.tick_time_ms.saturating_mul(2));
        cfg.max_session_timeout_ms = max_to.unwrap_or(cfg.tick_time_ms.saturating_mul(20));
        if cfg.min_session_timeout_ms > cfg.max_session_timeout_ms {
            return Err(bad(
                "minSessionTimeout",
                &cfg.min_session_timeout_ms.to_string(),
                format!(
                    "must not exceed maxSessionTimeout ({})",
                    cfg.max_session_timeout_ms
                ),
            ));
        }
        Ok((cfg, warnings))
    }

    /// `clamp(requested, minSessionTimeout, maxSessionTimeout)`.
    pub fn negotiate_timeout(&self, requested_ms: i32) -> i32 {
        let lo = i64::from(self.min_session_timeout_ms);
        let hi = i64::from(self.max_session_timeout_ms);
        i32::try_from(i64::from(requested_ms).clamp(lo, hi)).unwrap_or(i32::MAX)
    }
}

fn parse_num<T>(key: &str, value: &str, min: T, max: T) -> Result<T, ConfigError>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
{
    let v: T = value
        .parse()
        .map_err(|_| bad(key, value, "not a non-negative integer"))?;
    if v < min || v > max {
        return Err(bad(key, value, format!("must be between {min} and {max}")));
    }
    Ok(v)
}

fn parse_bool(key: &str, value: &str) -> Result<bool, ConfigError> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "yes" => Ok(true),
        "false" | "no" => Ok(false),
        _ => Err(bad(key, value, "expected true/false (or yes/no)")),
    }
}

fn parse_ip(key: &str, value: &str) -> Result<IpAddr, ConfigError> {
    value
        .parse()
        .map_err(|_| bad(key, value, "not an IP address"))
}

fn parse_dir(key: &str, value: &str) -> Result<PathBuf, ConfigError> {
    if value.is_empty() {
        return Err(bad(key, value, "empty directory"));
    }
    Ok(PathBuf::from(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sample_config_with_defaults() {
        let (c, w) = ZkConfig::parse(
            "# sample\ntickTime=2000\ninitLimit=10\nsyncLimit=5\ndataDir=/tmp/zk\nclientPort=2182\n\
             4lw.commands.whitelist=ruok, srvr,mntr\nfoo.bar=1\nserver.1=localhost:2888:3888\n",
        )
        .unwrap();
        assert_eq!(c.client_port, 2182);
        assert_eq!(c.data_log_dir, PathBuf::from("/tmp/zk"));
        assert_eq!(
            (c.min_session_timeout_ms, c.max_session_timeout_ms),
            (4000, 40000)
        );
        assert!(c.four_letter_allowed("mntr") && !c.four_letter_allowed("dump"));
        assert_eq!(w, vec!["unknown key foo.bar ignored".to_string()]);
        assert_eq!(c.negotiate_timeout(100), 4000);
        assert_eq!(c.negotiate_timeout(1_000_000), 40000);
    }

    #[test]
    fn bad_value_names_key_value_and_reason() {
        let e = ZkConfig::parse("dataDir=/x\nclientPort=abc\n")
            .unwrap_err()
            .to_string();
        assert_eq!(e, "clientPort=abc: not a non-negative integer");
        let e = ZkConfig::parse("dataDir=/x\nautopurge.snapRetainCount=1\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("must be between 3"), "{e}");
    }

    #[test]
    fn pre_alloc_size_is_read_in_kilobytes_and_zero_disables_it() {
        let (c, _) = ZkConfig::parse("dataDir=/x\n").unwrap();
        assert_eq!(c.pre_alloc_kb, 65536);
        let (c, w) = ZkConfig::parse("dataDir=/x\npreAllocSize=1024\n").unwrap();
        assert_eq!((c.pre_alloc_kb, w.len()), (1024, 0));
        let (c, _) = ZkConfig::parse("dataDir=/x\npreAllocSize=0\n").unwrap();
        assert_eq!(c.pre_alloc_kb, 0);
        let e = ZkConfig::parse("dataDir=/x\npreAllocSize=-1\n").unwrap_err();
        assert!(e.to_string().starts_with("preAllocSize=-1"), "{e}");
    }

    #[test]
    fn ensembles_are_refused() {
        let e = ZkConfig::parse("dataDir=/x\nserver.1=a:1:2\nserver.2=b:1:2\n").unwrap_err();
        assert!(matches!(e, ConfigError::Ensemble { count: 2, .. }));
        assert!(e.to_string().contains("ensembles are not available yet"));
    }
}
