//! `laminar.toml`, the configuration of `laminar serve`.
//!
//! Every key is optional but the pipeline's SQL; unknown keys are errors
//! (a typo must not silently fall back to a default), and so is a value
//! out of its range. An error names the file, the key and what is wrong:
//! `laminar.toml: limits.line_bytes_max: must be between 64 and
//! 67108864, found 0`. `laminar serve --check` validates the file and the
//! SQL and exits.
//!
//! ```toml
//! [pipeline]
//! sql = "CREATE SOURCE …"        # inline, or:
//! files = ["pipeline.sql"]       # relative to the config file
//!
//! [state]
//! dir = "/var/lib/laminar"
//! checkpoint_interval_ms = 1000
//! fork_snapshots = true          # snapshot large states in a forked process
//! fork_snapshot_mb = 16          # … from this many MB of a node's state
//!
//! [shards]
//! count = 2                      # default: one per core of `cpus`
//! cpus = "0-1"                   # the shard map: shard i on the i-th core
//!
//! [listen]
//! host = "127.0.0.1"             # tcp sources and sinks
//! admin = "127.0.0.1:9600"       # /health /ready /metrics /status
//! sql = "127.0.0.1:6875"         # PostgreSQL protocol ("" turns it off)
//!
//! [sql]
//! user = "laminar"               # the user a client names when a password is set
//! password = "…"                 # SCRAM-SHA-256; none: any user, no password
//! connections_max = 64
//! result_rows_max = 1000000      # rows one SELECT may return
//! subscribe_buffer_bytes = 4194304  # unread rows a SUBSCRIBE may leave: then cut
//!
//! [limits]
//! connections_per_source = 256
//! line_bytes_max = 1048576
//! inbox_bytes_max = 8388608      # received, not yet decoded, per source
//! subscriber_buffer_bytes = 4194304
//! state_entries_max = 10000000   # groups/windows/sessions per operator
//! stall_report_ms = 2000         # no progress with input waiting: logged
//! mesh_bytes_max = 33554432      # per shard: outboxes and mesh channels
//! held_bytes_max = 33554432      # per shard: rows behind a checkpoint barrier
//!
//! [watermark]
//! idle_timeout_ms = 10000
//! skew_ms = 300000
//!
//! [shutdown]
//! timeout_ms = 30000
//! ```
//!
//! A crate of its own (serde, toml, std) so that the `config` fuzz target
//! runs exactly this code without building the engine.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// What is wrong with a config: one line naming the key (or the line of
/// the file) and the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

type Result<T> = std::result::Result<T, ConfigError>;

macro_rules! bail {
    ($($arg:tt)*) => {
        return Err(ConfigError(format!($($arg)*)))
    };
}

/// Defaults of `[limits]` and `[watermark]`; `laminar_reactor::live::
/// LiveLimits::default()` holds the same (a test in `serve` checks).
pub const CONNECTIONS_PER_SOURCE_DEFAULT: usize = 256;
pub const LINE_BYTES_MAX_DEFAULT: usize = 1 << 20;
pub const INBOX_BYTES_MAX_DEFAULT: usize = 8 << 20;
pub const SUBSCRIBER_BUFFER_BYTES_DEFAULT: usize = 4 << 20;
pub const STATE_ENTRIES_MAX_DEFAULT: usize = 10_000_000;
pub const STALL_REPORT_MS_DEFAULT: u64 = 2_000;
pub const MESH_BYTES_MAX_DEFAULT: usize = 32 << 20;
pub const HELD_BYTES_MAX_DEFAULT: usize = 32 << 20;
pub const IDLE_TIMEOUT_MS_DEFAULT: u64 = 10_000;
pub const SKEW_MS_DEFAULT: u64 = 300_000;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub pipeline: Pipeline,
    #[serde(default)]
    pub state: State,
    #[serde(default)]
    pub shards: Shards,
    #[serde(default)]
    pub listen: Listen,
    #[serde(default)]
    pub sql: Sql,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub watermark: Watermark,
    #[serde(default)]
    pub shutdown: Shutdown,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pipeline {
    pub sql: Option<String>,
    #[serde(default)]
    pub files: Vec<PathBuf>,
}

/// `laminar_reactor::checkpoint::FORK_BYTES_MIN_DEFAULT` in MB (this crate
/// does not depend on the engine; a test in `bin/src/serve.rs` holds the
/// two equal).
pub const FORK_SNAPSHOT_MB_DEFAULT: u64 = 16;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct State {
    pub dir: PathBuf,
    pub checkpoint_interval_ms: u64,
    pub fork_snapshots: bool,
    pub fork_snapshot_mb: u64,
}

impl Default for State {
    fn default() -> State {
        State {
            // systemd's StateDirectory=laminar.
            dir: PathBuf::from("/var/lib/laminar"),
            checkpoint_interval_ms: 1000,
            fork_snapshots: true,
            fork_snapshot_mb: FORK_SNAPSHOT_MB_DEFAULT,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Shards {
    pub count: Option<usize>,
    pub cpus: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Listen {
    pub host: String,
    pub admin: String,
    /// The PostgreSQL protocol's address; empty: not served.
    pub sql: String,
}

impl Default for Listen {
    fn default() -> Listen {
        Listen {
            host: "127.0.0.1".into(),
            admin: "127.0.0.1:9600".into(),
            sql: "127.0.0.1:6875".into(),
        }
    }
}

/// `[sql]`: the PostgreSQL protocol's access and limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Sql {
    pub user: String,
    pub password: Option<String>,
    pub connections_max: usize,
    pub result_rows_max: usize,
    pub subscribe_buffer_bytes: usize,
}

impl Default for Sql {
    fn default() -> Sql {
        Sql {
            user: "laminar".into(),
            password: None,
            connections_max: 64,
            result_rows_max: 1_000_000,
            subscribe_buffer_bytes: 4 << 20,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub connections_per_source: usize,
    pub line_bytes_max: usize,
    pub inbox_bytes_max: usize,
    pub subscriber_buffer_bytes: usize,
    pub state_entries_max: usize,
    pub stall_report_ms: u64,
    pub mesh_bytes_max: usize,
    pub held_bytes_max: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            connections_per_source: CONNECTIONS_PER_SOURCE_DEFAULT,
            line_bytes_max: LINE_BYTES_MAX_DEFAULT,
            inbox_bytes_max: INBOX_BYTES_MAX_DEFAULT,
            subscriber_buffer_bytes: SUBSCRIBER_BUFFER_BYTES_DEFAULT,
            state_entries_max: STATE_ENTRIES_MAX_DEFAULT,
            stall_report_ms: STALL_REPORT_MS_DEFAULT,
            mesh_bytes_max: MESH_BYTES_MAX_DEFAULT,
            held_bytes_max: HELD_BYTES_MAX_DEFAULT,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Watermark {
    pub idle_timeout_ms: u64,
    pub skew_ms: u64,
}

impl Default for Watermark {
    fn default() -> Watermark {
        Watermark {
            idle_timeout_ms: IDLE_TIMEOUT_MS_DEFAULT,
            skew_ms: SKEW_MS_DEFAULT,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Shutdown {
    pub timeout_ms: u64,
}

impl Default for Shutdown {
    fn default() -> Shutdown {
        Shutdown { timeout_ms: 30_000 }
    }
}

/// Largest config file read (a limit on everything from outside).
const CONFIG_BYTES_MAX: u64 = 1 << 20;

/// Checks `value` is within `range`, naming the key.
fn within<T: PartialOrd + std::fmt::Display + Copy>(key: &str, value: T, lo: T, hi: T) -> Result<()> {
    if value < lo || value > hi {
        bail!("{key}: must be between {lo} and {hi}, found {value}");
    }
    Ok(())
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config> {
        let read_error = |e: std::io::Error| ConfigError(format!("reading {}: {e}", path.display()));
        let len = std::fs::metadata(path).map_err(read_error)?.len();
        if len > CONFIG_BYTES_MAX {
            bail!(
                "{}: {len} bytes; a config is at most {CONFIG_BYTES_MAX}",
                path.display()
            );
        }
        let text = std::fs::read_to_string(path).map_err(read_error)?;
        Config::parse(&text, path.parent().unwrap_or(Path::new(".")))
            .map_err(|e| ConfigError(format!("{}: {e}", path.display())))
    }

    /// Parses and validates config text; `base` is where relative SQL
    /// file names start.
    pub fn parse(text: &str, base: &Path) -> Result<Config> {
        let mut config: Config = toml::from_str(text).map_err(|e| {
            // toml names the key and the line; keep it on one line, even
            // when the key itself holds a line break (`"\n" = 1`).
            let message: String = e
                .message()
                .trim()
                .chars()
                .map(|c| {
                    if c.is_control() {
                        c.escape_default().to_string()
                    } else {
                        c.to_string()
                    }
                })
                .collect();
            match e.span() {
                Some(span) => {
                    let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                    ConfigError(format!("line {line}: {message}"))
                }
                None => ConfigError(message),
            }
        })?;
        config.validate()?;
        for f in &mut config.pipeline.files {
            if f.is_relative() {
                *f = base.join(&*f);
            }
        }
        Ok(config)
    }

    fn validate(&self) -> Result<()> {
        match (&self.pipeline.sql, self.pipeline.files.is_empty()) {
            (None, true) => bail!("pipeline: give the SQL as pipeline.sql or pipeline.files"),
            (Some(_), false) => bail!("pipeline: give pipeline.sql or pipeline.files, not both"),
            _ => {}
        }
        if self.pipeline.files.len() > 256 {
            bail!("pipeline.files: at most 256 files");
        }
        if self.state.dir.as_os_str().is_empty() {
            bail!("state.dir: must not be empty");
        }
        within(
            "state.checkpoint_interval_ms",
            self.state.checkpoint_interval_ms,
            10,
            86_400_000,
        )?;
        within("state.fork_snapshot_mb", self.state.fork_snapshot_mb, 0, 1 << 20)?;
        if let Some(n) = self.shards.count {
            within("shards.count", n, 1, 256)?;
        }
        if let Some(c) = &self.shards.cpus {
            parse_cpu_list(c).map_err(|e| ConfigError(format!("shards.cpus: {e}")))?;
        }
        self.listen.host.parse::<std::net::IpAddr>().map_err(|_| {
            ConfigError(format!(
                "listen.host: expected an IP address, found {:?}",
                self.listen.host
            ))
        })?;
        self.listen.admin.parse::<std::net::SocketAddr>().map_err(|_| {
            ConfigError(format!(
                "listen.admin: expected IP:PORT (e.g. 127.0.0.1:9600), found {:?}",
                self.listen.admin
            ))
        })?;
        if !self.listen.sql.is_empty() {
            self.listen.sql.parse::<std::net::SocketAddr>().map_err(|_| {
                ConfigError(format!(
                    "listen.sql: expected IP:PORT (e.g. 127.0.0.1:6875) or \"\" for none, found {:?}",
                    self.listen.sql
                ))
            })?;
        }
        if self.sql.user.is_empty() {
            return Err(ConfigError("sql.user: must not be empty".into()));
        }
        if self.sql.password.as_deref() == Some("") {
            return Err(ConfigError(
                "sql.password: must not be empty (leave it out for none)".into(),
            ));
        }
        within("sql.connections_max", self.sql.connections_max, 1, 10_000)?;
        within("sql.result_rows_max", self.sql.result_rows_max, 1, 1 << 32)?;
        within(
            "sql.subscribe_buffer_bytes",
            self.sql.subscribe_buffer_bytes,
            4 << 10,
            1 << 30,
        )?;
        let l = &self.limits;
        within("limits.connections_per_source", l.connections_per_source, 1, 65_536)?;
        within("limits.line_bytes_max", l.line_bytes_max, 64, 64 << 20)?;
        within("limits.inbox_bytes_max", l.inbox_bytes_max, 64 << 10, 1 << 30)?;
        within(
            "limits.subscriber_buffer_bytes",
            l.subscriber_buffer_bytes,
            4 << 10,
            1 << 30,
        )?;
        within("limits.state_entries_max", l.state_entries_max, 1, 1 << 40)?;
        within("limits.stall_report_ms", l.stall_report_ms, 100, 3_600_000)?;
        within("limits.mesh_bytes_max", l.mesh_bytes_max, 1 << 20, 1 << 34)?;
        within("limits.held_bytes_max", l.held_bytes_max, 1 << 20, 1 << 34)?;
        within(
            "watermark.idle_timeout_ms",
            self.watermark.idle_timeout_ms,
            1,
            86_400_000,
        )?;
        within("watermark.skew_ms", self.watermark.skew_ms, 0, 31_622_400_000)?;
        within("shutdown.timeout_ms", self.shutdown.timeout_ms, 100, 3_600_000)?;
        Ok(())
    }

    /// The pipeline's SQL text and the name its errors use.
    pub fn sql(&self) -> Result<Vec<(String, String)>> {
        match &self.pipeline.sql {
            Some(sql) => Ok(vec![("pipeline.sql".into(), sql.clone())]),
            None => self
                .pipeline
                .files
                .iter()
                .map(|f| {
                    let text =
                        std::fs::read_to_string(f).map_err(|e| ConfigError(format!("reading {}: {e}", f.display())))?;
                    Ok((f.display().to_string(), text))
                })
                .collect(),
        }
    }
}

/// A CPU list such as `0-3,8,10-11`.
#[derive(Debug, Clone)]
pub struct CpuList(pub Vec<usize>);

/// Parses `0-3,8,10-11`.
pub fn parse_cpu_list(text: &str) -> std::result::Result<CpuList, String> {
    let mut cpus = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = || format!("invalid CPU list element {part:?} (expected e.g. 0-3,8)");
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (
                    a.trim().parse().map_err(|_| bad())?,
                    b.trim().parse().map_err(|_| bad())?,
                );
                if a > b || b - a >= 4096 {
                    return Err(bad());
                }
                cpus.extend(a..=b);
            }
            None => cpus.push(part.parse().map_err(|_| bad())?),
        }
        if cpus.len() > 4096 {
            return Err("a CPU list names at most 4096 CPUs".into());
        }
    }
    if cpus.is_empty() {
        return Err("the CPU list is empty".into());
    }
    Ok(CpuList(cpus))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        format!("{:#}", Config::parse(text, Path::new(".")).unwrap_err())
    }

    #[test]
    fn a_minimal_config_takes_the_defaults() {
        let c = Config::parse("[pipeline]\nsql = 'SELECT 1'\n", Path::new(".")).unwrap();
        assert_eq!(c.state.dir, PathBuf::from("/var/lib/laminar"));
        assert_eq!(c.listen.admin, "127.0.0.1:9600");
        assert_eq!(c.listen.sql, "127.0.0.1:6875");
        assert_eq!((c.sql.connections_max, c.sql.password.as_deref()), (64, None));
        assert_eq!(c.limits.line_bytes_max, 1 << 20);
    }

    #[test]
    fn errors_name_the_key_and_the_problem() {
        assert!(err("").contains("pipeline"), "{}", err(""));
        let e = err("[pipeline]\nsql = 'x'\n[limits]\nline_bytes_maxx = 5\n");
        assert!(e.contains("line 4") && e.contains("line_bytes_maxx"), "{e}");
        let e = err("[pipeline]\nsql = 'x'\n[limits]\nline_bytes_max = 0\n");
        assert!(e.contains("limits.line_bytes_max: must be between 64"), "{e}");
        let e = err("[pipeline]\nsql = 'x'\n[limits]\nline_bytes_max = 'big'\n");
        assert!(e.contains("line 4") && e.contains("invalid type"), "{e}");
        let e = err("[pipeline]\nsql = 'x'\n[listen]\nadmin = 'localhost'\n");
        assert!(e.contains("listen.admin: expected IP:PORT"), "{e}");
        let e = err("[pipeline]\nsql = 'x'\n[listen]\nsql = 'localhost:6875'\n");
        assert!(e.contains("listen.sql: expected IP:PORT"), "{e}");
        let e = err("[pipeline]\nsql = 'x'\n[sql]\nconnections_max = 0\n");
        assert!(
            e.contains("sql.connections_max: must be between 1 and 10000, found 0"),
            "{e}"
        );
        let e = err("[pipeline]\nsql = 'x'\n[sql]\npassword = ''\n");
        assert!(e.contains("sql.password: must not be empty"), "{e}");
        let e = err("[pipeline]\nsql = 'x'\n[sql]\nsubscribe_buffer_bytes = 10\n");
        assert!(e.contains("sql.subscribe_buffer_bytes"), "{e}");
        let off = Config::parse("[pipeline]\nsql = 'x'\n[listen]\nsql = ''\n", Path::new(".")).unwrap();
        assert_eq!(off.listen.sql, "");
        // A key with a line break in it (found by the fuzzer): the error
        // names it escaped, on one line.
        let e = err(" [\"\\n [\"]");
        assert!(e.contains("unknown field `\\n [`") && !e.contains('\n'), "{e}");
        let e = err("[pipeline]\nsql = 'x'\nfiles = ['a.sql']\n");
        assert!(e.contains("not both"), "{e}");
        let e = err("[pipeline]\nsql = 'x'\n[shards]\ncpus = '3-1'\n");
        assert!(e.contains("shards.cpus"), "{e}");
        let e = err("[pipeline]\nsql = 'x'\n[state]\ncheckpoint_interval_ms = -1\n");
        assert!(e.contains("line 4"), "{e}");
        let e = err("[pipeline]\nsql = 'x'\n[state]\nfork_snapshot_mb = 2000000\n");
        assert!(
            e.contains("state.fork_snapshot_mb: must be between 0 and 1048576"),
            "{e}"
        );
        let e = err("[pipeline]\nsql = 'x'\n[state]\nfork_snapshots = 'yes'\n");
        assert!(e.contains("line 4") && e.contains("expected a boolean"), "{e}");
    }

    #[test]
    fn relative_sql_files_start_at_the_config() {
        let c = Config::parse("[pipeline]\nfiles = ['p.sql']\n", Path::new("/etc/laminar")).unwrap();
        assert_eq!(c.pipeline.files, vec![PathBuf::from("/etc/laminar/p.sql")]);
    }
}
