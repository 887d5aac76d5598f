//! `zoo.cfg`: the keys Kiln reads, their ZooKeeper defaults, and validation.
//!
//! The file is a Java properties file (`key=value`, `#` and `!` comments). A bad value is refused
//! naming the key, the value and why; an unknown key is returned as a warning and otherwise
//! ignored. `server.N` lines describe the ensemble ([`Quorum`]): one line (with
//! `standaloneEnabled`, the default) runs standalone; more make this server an ensemble member,
//! which needs `dataDir/myid` naming one of the lines. No network I/O; reads two small files.

use std::collections::BTreeSet;
use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use thiserror::Error;

/// The `metricsProvider.className` whose endpoint Kiln serves.
pub const PROMETHEUS_PROVIDER_CLASS: &str =
    "org.apache.zookeeper.metrics.prometheus.PrometheusMetricsProvider";

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
        "{path} is missing: an ensemble member ({count} server.N lines) needs a myid file in dataDir \
         holding one of the server ids ({ids})"
    )]
    MyidMissing {
        path: PathBuf,
        count: usize,
        ids: String,
    },
    #[error(
        "myid {myid} is not in the server list ({ids}): add a server.{myid} line or fix {path}"
    )]
    MyidNotListed {
        myid: i64,
        ids: String,
        path: PathBuf,
    },
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
    /// `metricsProvider.httpPort`: where the Prometheus endpoint listens; `None` = no endpoint.
    pub metrics_http_port: Option<u16>,
    /// `metricsProvider.httpHost` (default 0.0.0.0).
    pub metrics_http_host: Option<IpAddr>,
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
    /// The `server.N` lines and the quorum keys; `None` when the file has no `server.N` line.
    pub quorum: Option<Quorum>,
}

/// Whether a server votes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LearnerType {
    Participant,
    Observer,
}

/// One `server.N=host:quorumPort:electionPort[:participant|:observer][;[clientHost:]clientPort]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumServer {
    pub id: i64,
    pub host: String,
    pub quorum_port: u16,
    pub election_port: u16,
    pub role: LearnerType,
    /// The optional client address after `;` (host defaults to `0.0.0.0`, as ZooKeeper's).
    pub client: Option<(String, u16)>,
}

impl QuorumServer {
    /// The line as ZooKeeper writes it into `/zookeeper/config` and election notifications.
    pub fn config_line(&self) -> String {
        let role = match self.role {
            LearnerType::Participant => "participant",
            LearnerType::Observer => "observer",
        };
        let mut s = format!(
            "server.{}={}:{}:{}:{role}",
            self.id,
            bracket_host(&self.host),
            self.quorum_port,
            self.election_port
        );
        if let Some((h, p)) = &self.client {
            s.push_str(&format!(";{}:{p}", bracket_host(h)));
        }
        s
    }
}

fn bracket_host(h: &str) -> String {
    if h.contains(':') {
        format!("[{h}]")
    } else {
        h.to_string()
    }
}

/// Most `server.N` lines a configuration may hold (session ids carry the server id in one byte).
pub const QUORUM_SERVERS_MAX: usize = 255;

/// The ensemble: every `server.N` line and the keys that shape the quorum protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quorum {
    /// By id, ascending.
    pub servers: Vec<QuorumServer>,
    /// `peerType` as written (the server's own line decides when they disagree, as in ZooKeeper).
    pub peer_type: Option<LearnerType>,
    /// `electionPortBindRetry` (3): attempts to bind the election port; 0 retries forever.
    pub election_port_bind_retry: u32,
    /// `quorumListenOnAllIPs` (false): bind the quorum and election ports on every address.
    pub quorum_listen_on_all_ips: bool,
    /// `syncEnabled` (true): observers log and fsync what they learn, as followers do.
    pub sync_enabled: bool,
    /// `standaloneEnabled` (true): one `server.N` line runs standalone, not as a quorum of one.
    pub standalone_enabled: bool,
}

impl Quorum {
    pub fn server(&self, id: i64) -> Option<&QuorumServer> {
        self.servers.iter().find(|s| s.id == id)
    }

    pub fn voters(&self) -> impl Iterator<Item = &QuorumServer> {
        self.servers
            .iter()
            .filter(|s| s.role == LearnerType::Participant)
    }

    /// Whether the process runs as an ensemble member (otherwise standalone).
    pub fn is_ensemble(&self) -> bool {
        self.servers.len() > 1 || !self.standalone_enabled
    }

    /// The ids, comma separated, for messages.
    pub fn ids(&self) -> String {
        self.servers
            .iter()
            .map(|s| s.id.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The configuration string members exchange (`server.N=...` lines, then `version=0`: a
    /// static ensemble never advertises a newer version than its peers).
    pub fn config_string(&self) -> String {
        let mut s = String::new();
        for srv in &self.servers {
            s.push_str(&srv.config_line());
            s.push('\n');
        }
        s.push_str("version=0");
        s
    }
}

/// Parses the value of one `server.N` line.
pub fn parse_server_line(key: &str, id: i64, value: &str) -> Result<QuorumServer, ConfigError> {
    if value.contains('|') {
        return Err(bad(
            key,
            value,
            "several addresses per server (multiAddress) are not supported; give one host",
        ));
    }
    let (addr, client) = match value.split_once(';') {
        Some((a, c)) => (a.trim(), Some(c.trim())),
        None => (value.trim(), None),
    };
    let (host, rest) = split_host(key, value, addr)?;
    let parts: Vec<&str> = rest.split(':').collect();
    let (qp, ep, role) = match parts.as_slice() {
        [q, e] => (*q, *e, LearnerType::Participant),
        [q, e, r] => {
            let role = match r.to_ascii_lowercase().as_str() {
                "participant" => LearnerType::Participant,
                "observer" => LearnerType::Observer,
                _ => {
                    return Err(bad(
                        key,
                        value,
                        format!("unknown server type {r}: expected participant or observer"),
                    ));
                }
            };
            (*q, *e, role)
        }
        _ => {
            return Err(bad(
                key,
                value,
                "expected host:quorumPort:electionPort[:participant|:observer][;[clientHost:]clientPort]",
            ));
        }
    };
    let port = |p: &str, what: &str| -> Result<u16, ConfigError> {
        p.trim()
            .parse::<u16>()
            .ok()
            .filter(|v| *v > 0)
            .ok_or_else(|| bad(key, value, format!("{what} {p} is not a port in 1..=65535")))
    };
    let quorum_port = port(qp, "quorum port")?;
    let election_port = port(ep, "election port")?;
    if quorum_port == election_port {
        return Err(bad(key, value, "the quorum and election ports must differ"));
    }
    let client = match client {
        None | Some("") => None,
        Some(c) => {
            let (h, p) = match c.rsplit_once(':') {
                Some((h, p)) if !h.is_empty() => (h.trim_matches(['[', ']']).to_string(), p),
                _ => ("0.0.0.0".to_string(), c),
            };
            Some((h, port(p, "client port")?))
        }
    };
    Ok(QuorumServer {
        id,
        host,
        quorum_port,
        election_port,
        role,
        client,
    })
}

/// `host:rest` or `[v6]:rest`.
fn split_host<'a>(key: &str, value: &str, addr: &'a str) -> Result<(String, &'a str), ConfigError> {
    if let Some(after) = addr.strip_prefix('[') {
        let (h, rest) = after
            .split_once(']')
            .ok_or_else(|| bad(key, value, "unterminated [ in an IPv6 address"))?;
        let rest = rest
            .strip_prefix(':')
            .ok_or_else(|| bad(key, value, "expected :quorumPort after the address"))?;
        return Ok((h.to_string(), rest));
    }
    let (h, rest) = addr
        .split_once(':')
        .ok_or_else(|| bad(key, value, "expected host:quorumPort:electionPort"))?;
    if h.is_empty() {
        return Err(bad(key, value, "empty host"));
    }
    Ok((h.to_string(), rest))
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
            metrics_http_port: None,
            metrics_http_host: None,
            super_digest: None,
            container_check_interval_ms: 60_000,
            force_sync: true,
            pre_alloc_kb: 64 << 10,
            outstanding_per_connection_max: 1000,
            server_id: 0,
            quorum: None,
        }
    }

    /// Whether a four-letter word may run.
    pub fn four_letter_allowed(&self, cmd: &str) -> bool {
        self.four_letter_whitelist.contains("*") || self.four_letter_whitelist.contains(cmd)
    }

    /// Reads a `zoo.cfg` without `myid` (for tools that only need its ports and addresses).
    pub fn parse_file(path: &Path) -> Result<(Self, Vec<String>), ConfigError> {
        let text = fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text)
    }

    /// Reads and validates a `zoo.cfg`; returns the config and the warnings for ignored keys.
    pub fn load(path: &Path) -> Result<(Self, Vec<String>), ConfigError> {
        let text = fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let (mut cfg, warnings) = Self::parse(&text)?;
        let myid = cfg.data_dir.join("myid");
        let ensemble = cfg.quorum.as_ref().is_some_and(Quorum::is_ensemble);
        if ensemble && !myid.exists() {
            let (count, ids) = cfg
                .quorum
                .as_ref()
                .map(|q| (q.servers.len(), q.ids()))
                .unwrap_or_default();
            return Err(ConfigError::MyidMissing {
                path: myid,
                count,
                ids,
            });
        }
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
        if ensemble {
            cfg.check_member(&myid)?;
        }
        Ok((cfg, warnings))
    }

    /// An ensemble member's own id must be one of the `server.N` lines.
    pub fn check_member(&self, myid_path: &Path) -> Result<(), ConfigError> {
        let Some(q) = &self.quorum else {
            return Ok(());
        };
        if q.server(self.server_id).is_none() {
            return Err(ConfigError::MyidNotListed {
                myid: self.server_id,
                ids: q.ids(),
                path: myid_path.to_path_buf(),
            });
        }
        Ok(())
    }

    /// This server's own line, when it is an ensemble member.
    pub fn me(&self) -> Option<&QuorumServer> {
        self.quorum
            .as_ref()
            .filter(|q| q.is_ensemble())
            .and_then(|q| q.server(self.server_id))
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
        let mut servers: Vec<QuorumServer> = Vec::new();
        let mut peer_type: Option<LearnerType> = None;
        let mut election_port_bind_retry = 3;
        let mut quorum_listen_on_all_ips = false;
        let mut sync_enabled = true;
        let mut standalone_enabled = true;
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
                "metricsProvider.className" => {
                    // Kiln has one metrics provider, the Prometheus endpoint; another class name
                    // names a provider Kiln cannot load, so only the port decides what runs.
                    if value != PROMETHEUS_PROVIDER_CLASS {
                        warnings.push(format!(
                            "{key}={value}: Kiln provides only {PROMETHEUS_PROVIDER_CLASS}; \
                             the Prometheus endpoint runs when metricsProvider.httpPort is set"
                        ));
                    }
                }
                "metricsProvider.httpPort" => {
                    cfg.metrics_http_port = Some(parse_num(key, value, 1, 65535)?);
                }
                "metricsProvider.httpHost" => cfg.metrics_http_host = Some(parse_ip(key, value)?),
                "metricsProvider.exportJvmInfo" => {
                    parse_bool(key, value)?;
                    warnings.push(format!(
                        "{key}: accepted but has no effect in Kiln (no JVM)"
                    ));
                }
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
                "standaloneEnabled" => standalone_enabled = parse_bool(key, value)?,
                "quorumListenOnAllIPs" => quorum_listen_on_all_ips = parse_bool(key, value)?,
                "syncEnabled" => sync_enabled = parse_bool(key, value)?,
                "electionPortBindRetry" => {
                    election_port_bind_retry = parse_num(key, value, 0, u32::MAX)?;
                }
                "peerType" => {
                    peer_type = Some(match value.to_ascii_lowercase().as_str() {
                        "participant" => LearnerType::Participant,
                        "observer" => LearnerType::Observer,
                        _ => return Err(bad(key, value, "expected participant or observer")),
                    });
                }
                "electionAlg" => {
                    if value != "3" {
                        return Err(bad(
                            key,
                            value,
                            "only electionAlg=3 (fast leader election) exists",
                        ));
                    }
                }
                "reconfigEnabled"
                | "skipACL"
                | "leaderServes"
                | "cnxTimeout"
                | "localSessionsEnabled"
                | "localSessionsUpgradingEnabled"
                | "admin.commandURL"
                | "admin.idleTimeout"
                | "fsync.warningthresholdms"
                | "clientPortListenBacklog"
                | "secureClientPort"
                | "serverCnxnFactory" => {
                    warnings.push(format!("{key}: accepted but has no effect in Kiln"));
                }
                k if k.starts_with("server.") => {
                    let id = k["server.".len()..]
                        .parse::<i64>()
                        .ok()
                        .filter(|v| (0..=254).contains(v))
                        .ok_or_else(|| {
                            bad(key, value, "server id must be an integer in 0..=254")
                        })?;
                    if servers.iter().any(|s| s.id == id) {
                        return Err(bad(key, value, format!("server.{id} is listed twice")));
                    }
                    if servers.len() >= QUORUM_SERVERS_MAX {
                        return Err(bad(key, value, "too many server.N lines"));
                    }
                    servers.push(parse_server_line(key, id, value)?);
                }
                _ => warnings.push(format!("unknown key {key} ignored")),
            }
        }
        if !servers.is_empty() {
            servers.sort_by_key(|s| s.id);
            if !servers.iter().any(|s| s.role == LearnerType::Participant) {
                return Err(ConfigError::Invalid(
                    "every server.N line is an observer: an ensemble needs at least one participant"
                        .to_string(),
                ));
            }
            cfg.quorum = Some(Quorum {
                servers,
                peer_type,
                election_port_bind_retry,
                quorum_listen_on_all_ips,
                sync_enabled,
                standalone_enabled,
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
    fn metrics_provider_keys_configure_the_prometheus_endpoint() {
        let (c, w) = ZkConfig::parse("dataDir=/x\n").unwrap();
        assert_eq!((c.metrics_http_port, c.metrics_http_host), (None, None));
        assert!(w.is_empty(), "{w:?}");
        let (c, w) = ZkConfig::parse(&format!(
            "dataDir=/x\nmetricsProvider.className={PROMETHEUS_PROVIDER_CLASS}\n\
             metricsProvider.httpPort=7000\nmetricsProvider.httpHost=127.0.0.1\n"
        ))
        .unwrap();
        assert_eq!(c.metrics_http_port, Some(7000));
        assert_eq!(c.metrics_http_host, Some(IpAddr::from([127, 0, 0, 1])));
        assert!(w.is_empty(), "{w:?}");
        // The port alone starts the endpoint: Prometheus is the only provider Kiln has.
        let (c, _) = ZkConfig::parse("dataDir=/x\nmetricsProvider.httpPort=7001\n").unwrap();
        assert_eq!(c.metrics_http_port, Some(7001));
        let (_, w) =
            ZkConfig::parse("dataDir=/x\nmetricsProvider.className=com.example.Other\n").unwrap();
        assert_eq!(w.len(), 1);
        assert!(
            w[0].starts_with("metricsProvider.className=com.example.Other"),
            "{w:?}"
        );
        let (_, w) = ZkConfig::parse("dataDir=/x\nmetricsProvider.exportJvmInfo=false\n").unwrap();
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("no effect"), "{w:?}");
        for bad_line in [
            "metricsProvider.httpPort=0",
            "metricsProvider.httpPort=70000",
            "metricsProvider.httpPort=seven",
            "metricsProvider.httpHost=not-an-ip",
            "metricsProvider.exportJvmInfo=maybe",
        ] {
            let e = ZkConfig::parse(&format!("dataDir=/x\n{bad_line}\n")).unwrap_err();
            assert!(e.to_string().starts_with(bad_line), "{e}");
        }
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
    fn server_lines_parse_roles_client_addresses_and_ipv6() {
        let (c, _) = ZkConfig::parse(
            "dataDir=/x\nserver.3=127.0.0.3:2888:3888;2181\nserver.1=h1:2888:3888:participant\n\
             server.2=[::1]:2888:3888:observer;127.0.0.2:2182\n",
        )
        .unwrap();
        let q = c.quorum.unwrap();
        assert_eq!(
            q.servers.iter().map(|s| s.id).collect::<Vec<_>>(),
            [1, 2, 3]
        );
        assert_eq!(q.voters().count(), 2);
        assert_eq!(q.servers[1].host, "::1");
        assert_eq!(q.servers[1].role, LearnerType::Observer);
        assert_eq!(q.servers[1].client, Some(("127.0.0.2".to_string(), 2182)));
        assert_eq!(q.servers[2].client, Some(("0.0.0.0".to_string(), 2181)));
        assert_eq!(
            q.config_string(),
            "server.1=h1:2888:3888:participant\nserver.2=[::1]:2888:3888:observer;127.0.0.2:2182\n\
             server.3=127.0.0.3:2888:3888:participant;0.0.0.0:2181\nversion=0"
        );
        assert!(q.is_ensemble());
    }

    #[test]
    fn one_server_line_is_standalone_unless_standalone_is_disabled() {
        let (c, _) = ZkConfig::parse("dataDir=/x\nserver.1=a:2888:3888\n").unwrap();
        assert!(!c.quorum.as_ref().unwrap().is_ensemble());
        assert!(c.me().is_none());
        let (c, _) =
            ZkConfig::parse("dataDir=/x\nstandaloneEnabled=false\nserver.1=a:2888:3888\n").unwrap();
        assert!(c.quorum.unwrap().is_ensemble());
    }

    #[test]
    fn bad_server_lines_and_quorum_keys_are_refused_with_the_reason() {
        for (text, want) in [
            ("server.1=a:2888", "expected host:quorumPort:electionPort"),
            ("server.1=a:2888:2888", "must differ"),
            ("server.1=a:2888:3888:voter", "unknown server type voter"),
            ("server.1=a:0:3888", "quorum port 0"),
            ("server.1=a:1:2|b:1:2", "multiAddress"),
            ("server.x=a:1:2", "server id"),
            ("server.1=a:1:2\nserver.1=b:1:2", "listed twice"),
            ("server.1=a:1:2:observer", "needs at least one participant"),
            ("electionAlg=1", "only electionAlg=3"),
            ("peerType=leader", "expected participant or observer"),
        ] {
            let e = ZkConfig::parse(&format!("dataDir=/x\n{text}\n"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn an_ensemble_member_needs_a_myid_in_the_list() {
        let dir = std::env::temp_dir().join(format!("kiln-cfg-myid-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let cfg = dir.join("zoo.cfg");
        fs::write(
            &cfg,
            format!(
                "dataDir={}\nserver.1=a:2888:3888\nserver.2=b:2888:3888\nserver.3=c:2888:3888\n",
                dir.display()
            ),
        )
        .unwrap();
        let e = ZkConfig::load(&cfg).unwrap_err().to_string();
        assert!(
            e.contains("myid is missing") && e.contains("1, 2, 3"),
            "{e}"
        );
        fs::write(dir.join("myid"), "7\n").unwrap();
        let e = ZkConfig::load(&cfg).unwrap_err().to_string();
        assert!(
            e.contains("myid 7 is not in the server list (1, 2, 3)"),
            "{e}"
        );
        fs::write(dir.join("myid"), "2\n").unwrap();
        let (c, _) = ZkConfig::load(&cfg).unwrap();
        assert_eq!(c.me().map(|s| s.host.as_str()), Some("b"));
        fs::remove_dir_all(&dir).unwrap();
    }
}
