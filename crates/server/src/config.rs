//! Configuration: command-line flags named after Tarantool's `box.cfg` options (dashes for
//! underscores) and an optional TOML file with the same keys (underscores). Flags win.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Deserialize;

use spindle_net::ListenAddr;
use spindle_types::compat::Version;
use spindle_types::txn_cfg;

use spindle_types::limits::{
    HTTP_BODY_MAX_DEFAULT, HTTP_BODY_MAX_LIMIT, HTTP_IDLE_TIMEOUT_DEFAULT, KV_WINDOW_DEFAULT,
    KV_WINDOW_MAX, NET_MSG_MAX_DEFAULT, PACKET_SIZE_MAX_DEFAULT, REPLICATION_TIMEOUT_DEFAULT,
    WAL_MAX_SIZE_DEFAULT,
};

#[derive(Parser, Debug)]
#[command(
    name = "spindle",
    version,
    about = "A Tarantool-compatible in-memory database"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the server.
    Serve(Box<ServeArgs>),
    /// Print the rows of .xlog/.snap files, like `tarantoolctl cat`.
    Cat(spindle_cat::CatArgs),
    /// Connect to a console or binary port, like `tarantoolctl connect`.
    Connect(spindle_connect::ConnectArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WalModeArg {
    None,
    Write,
    Fsync,
}

#[derive(Args, Debug, Default)]
pub struct ServeArgs {
    /// TOML file with the same keys as the flags (listen, data_dir, wal_mode, ...).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Address to accept IPROTO clients on [default: 127.0.0.1:3301].
    #[arg(long)]
    pub listen: Option<String>,
    /// Directory for the WAL and snapshots [default: ./spindle-data].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Directory for `.xlog` files (overrides --data-dir).
    #[arg(long)]
    pub wal_dir: Option<PathBuf>,
    /// Directory for `.snap` files (overrides --data-dir).
    #[arg(long)]
    pub memtx_dir: Option<PathBuf>,
    /// none: memory only; write: write() per group commit; fsync: plus fdatasync [default: write].
    #[arg(long, value_enum)]
    pub wal_mode: Option<WalModeArg>,
    /// Size at which the WAL starts a new file, bytes.
    #[arg(long)]
    pub wal_max_size: Option<u64>,
    /// Network threads [default: 1].
    #[arg(long)]
    pub iproto_threads: Option<usize>,
    /// Requests in flight per network thread before it stops reading [default: 768].
    #[arg(long)]
    pub net_msg_max: Option<usize>,
    /// Largest accepted request packet, bytes [default: 16 MiB].
    #[arg(long)]
    pub max_packet_size: Option<usize>,
    /// Password of the `admin` user, set at start.
    #[arg(long, env = "SPINDLE_ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: Option<String>,
    /// error, warn, info, debug or trace [default: info].
    #[arg(long)]
    pub log_level: Option<String>,
    /// Skip damaged WAL data instead of refusing to start.
    #[arg(long)]
    pub force_recovery: bool,
    /// Seconds between automatic checkpoints; 0 turns them off [default: 3600].
    #[arg(long)]
    pub checkpoint_interval: Option<f64>,
    /// Checkpoints (snapshots and the xlogs they need) kept on disk [default: 2].
    #[arg(long)]
    pub checkpoint_count: Option<usize>,
    /// Refuse client writes with ER_READONLY (replicas).
    #[arg(long)]
    pub read_only: bool,
    /// Masters to replicate from: `[user:password@]host:port`, comma-separated. An empty
    /// data directory is bootstrapped from the first one (JOIN).
    #[arg(long)]
    pub replication: Option<String>,
    /// Seconds between relay heartbeats and between applier reconnects; peers silent for
    /// four times this are dropped [default: 1].
    #[arg(long)]
    pub replication_timeout: Option<f64>,
    /// Also open an admin console (Tarantool's text console, full admin rights, no password)
    /// on `host:port` or `unix/:PATH`.
    #[arg(long)]
    pub console_listen: Option<String>,
    /// The Tarantool version to announce (greeting, box.info.version, _TARANTOOL); 2.10.0
    /// and later also turn on IPROTO_ID, streams and BEGIN/COMMIT/ROLLBACK [default: 2.6.0].
    #[arg(long)]
    pub compat_version: Option<String>,
    /// Run BEGIN…COMMIT stream transactions on the MVCC engine: they survive across
    /// requests, read their own writes and fail with ER_TRANSACTION_CONFLICT on a conflict.
    #[arg(long)]
    pub memtx_use_mvcc_engine: bool,
    /// Isolation of a transaction that asks for the default: read-committed,
    /// read-confirmed, best-effort or 1..3 [default: best-effort].
    #[arg(long)]
    pub txn_isolation: Option<String>,
    /// Also serve the HTTP commit API (docs/http-api.md) on `host:port`.
    #[arg(long)]
    pub http_listen: Option<String>,
    /// Largest HTTP request body, bytes [default: 1 MiB; at most 16 MiB].
    #[arg(long)]
    pub http_max_body_size: Option<usize>,
    /// Seconds an HTTP connection may idle, or take to send a request [default: 30].
    #[arg(long)]
    pub http_idle_timeout: Option<f64>,
    /// Commits kept for HTTP preconditions; older read versions are refused [default: 10000].
    #[arg(long)]
    pub http_conflict_window: Option<usize>,
}

/// The TOML file: the same keys, with underscores.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    wal_dir: Option<PathBuf>,
    memtx_dir: Option<PathBuf>,
    wal_mode: Option<WalModeArg>,
    wal_max_size: Option<u64>,
    iproto_threads: Option<usize>,
    net_msg_max: Option<usize>,
    max_packet_size: Option<usize>,
    admin_password: Option<String>,
    log_level: Option<String>,
    force_recovery: Option<bool>,
    checkpoint_interval: Option<f64>,
    checkpoint_count: Option<usize>,
    read_only: Option<bool>,
    replication: Option<String>,
    replication_timeout: Option<f64>,
    console_listen: Option<String>,
    compat_version: Option<String>,
    memtx_use_mvcc_engine: Option<bool>,
    txn_isolation: Option<toml::Value>,
    http_listen: Option<String>,
    http_max_body_size: Option<usize>,
    http_idle_timeout: Option<f64>,
    http_conflict_window: Option<usize>,
}

/// The effective configuration.
#[derive(Debug)]
pub struct Config {
    /// None: no IPROTO listener (an init script's `box.cfg{}` without `listen`).
    pub listen: Option<ListenAddr>,
    pub wal_dir: PathBuf,
    pub memtx_dir: PathBuf,
    pub wal_mode: WalModeArg,
    pub wal_max_size: u64,
    pub iproto_threads: usize,
    pub net_msg_max: usize,
    pub max_packet_size: usize,
    pub admin_password: Option<String>,
    pub log_level: String,
    pub force_recovery: bool,
    pub checkpoint_interval: f64,
    pub checkpoint_count: usize,
    pub read_only: bool,
    /// Upstream URIs, in the given order.
    pub replication: Vec<spindle_repl::Uri>,
    pub replication_timeout: f64,
    /// `box.cfg.work_dir`: the process changes into it before anything else.
    pub work_dir: Option<PathBuf>,
    /// `box.cfg.pid_file`, written at start and removed at exit.
    pub pid_file: Option<PathBuf>,
    /// `box.cfg.log`: a file that takes the place of stderr.
    pub log_file: Option<PathBuf>,
    /// `spindle serve --console-listen`: an admin console to open once booted.
    pub console_listen: Option<String>,
    /// The Tarantool version announced to clients (`compat_version`).
    pub compat_version: Version,
    pub memtx_use_mvcc_engine: bool,
    /// `txn_cfg` level, 1 to 3.
    pub txn_isolation: u8,
    /// The HTTP commit API's address, if it is served.
    pub http_listen: Option<SocketAddr>,
    pub http_max_body_size: usize,
    pub http_idle_timeout: f64,
    pub http_conflict_window: usize,
}

impl Config {
    /// What an init script's `box.cfg{}` starts from: Tarantool's defaults (no listener, the
    /// data in the current directory).
    pub fn script_defaults() -> Config {
        Config {
            listen: None,
            wal_dir: ".".into(),
            memtx_dir: ".".into(),
            wal_mode: WalModeArg::Write,
            wal_max_size: WAL_MAX_SIZE_DEFAULT,
            iproto_threads: 1,
            net_msg_max: NET_MSG_MAX_DEFAULT,
            max_packet_size: PACKET_SIZE_MAX_DEFAULT,
            admin_password: None,
            log_level: "info".into(),
            force_recovery: false,
            checkpoint_interval: 3600.0,
            checkpoint_count: 2,
            read_only: false,
            replication: Vec::new(),
            replication_timeout: REPLICATION_TIMEOUT_DEFAULT,
            work_dir: None,
            pid_file: None,
            log_file: None,
            console_listen: None,
            compat_version: Version::DEFAULT,
            memtx_use_mvcc_engine: false,
            txn_isolation: txn_cfg::BEST_EFFORT,
            http_listen: None,
            http_max_body_size: HTTP_BODY_MAX_DEFAULT,
            http_idle_timeout: HTTP_IDLE_TIMEOUT_DEFAULT,
            http_conflict_window: KV_WINDOW_DEFAULT,
        }
    }

    /// The options of `spindle serve` as `box.cfg{}` shows them (Tarantool's names).
    pub fn box_cfg(&self) -> serde_json::Value {
        let replication: Vec<String> = self.replication.iter().map(|u| u.full()).collect();
        let mut cfg = serde_json::json!({
            "listen": self.listen.as_ref().map(|a| a.to_string()),
            "wal_dir": self.wal_dir.display().to_string(),
            "memtx_dir": self.memtx_dir.display().to_string(),
            "wal_mode": wal_mode_name(self.wal_mode),
            "wal_max_size": self.wal_max_size,
            "iproto_threads": self.iproto_threads,
            "net_msg_max": self.net_msg_max,
            "force_recovery": self.force_recovery,
            "checkpoint_interval": self.checkpoint_interval,
            "checkpoint_count": self.checkpoint_count,
            "read_only": self.read_only,
            "replication": if replication.is_empty() { serde_json::Value::Null } else { replication.into() },
            "replication_timeout": self.replication_timeout,
        });
        // Only when set: box.cfg then lists exactly 2.6's keys by default.
        if self.compat_version != Version::DEFAULT {
            cfg["compat_version"] = self.compat_version.to_string().into();
        }
        if self.memtx_use_mvcc_engine {
            cfg["memtx_use_mvcc_engine"] = true.into();
        }
        if self.txn_isolation != txn_cfg::BEST_EFFORT {
            cfg["txn_isolation"] = self.txn_isolation.into();
        }
        if let Some(addr) = self.http_listen {
            cfg["http_listen"] = addr.to_string().into();
            cfg["http_max_body_size"] = self.http_max_body_size.into();
            cfg["http_idle_timeout"] = self.http_idle_timeout.into();
            cfg["http_conflict_window"] = self.http_conflict_window.into();
        }
        cfg
    }

    /// Applies the options of the first `box.cfg{}` (every option, defaults filled in).
    pub fn apply_box_cfg(&mut self, options: &serde_json::Value) -> Result<(), String> {
        let Some(map) = options.as_object() else {
            return Err("Incorrect type of box.cfg argument".into());
        };
        for (key, value) in map {
            self.apply_option(key, value)
                .map_err(|e| format!("Incorrect value for option '{key}': {e}"))?;
        }
        self.validate()
    }

    /// One option; the ones spindle has no use for are accepted and ignored.
    pub fn apply_option(&mut self, key: &str, v: &serde_json::Value) -> Result<(), String> {
        use serde_json::Value as J;
        let text = |v: &J| match v {
            J::String(s) => Some(s.clone()),
            J::Number(n) => Some(n.to_string()),
            _ => None,
        };
        let number = |v: &J| {
            v.as_f64()
                .ok_or_else(|| "should be of type number".to_string())
        };
        match key {
            "listen" => {
                self.listen = match text(v) {
                    Some(t) => Some(parse_listen(&t)?),
                    None => None,
                }
            }
            "work_dir" => self.work_dir = text(v).map(PathBuf::from),
            "wal_dir" => self.wal_dir = text(v).unwrap_or_else(|| ".".into()).into(),
            "memtx_dir" => self.memtx_dir = text(v).unwrap_or_else(|| ".".into()).into(),
            "pid_file" => self.pid_file = text(v).map(PathBuf::from),
            "log" => self.log_file = text(v).map(log_path).transpose()?,
            "wal_mode" => {
                self.wal_mode = match v.as_str() {
                    Some("none") => WalModeArg::None,
                    Some("write") => WalModeArg::Write,
                    Some("fsync") => WalModeArg::Fsync,
                    _ => return Err("expected one of none, write, fsync".into()),
                }
            }
            "wal_max_size" => self.wal_max_size = number(v)? as u64,
            "iproto_threads" => self.iproto_threads = number(v)? as usize,
            "net_msg_max" => self.net_msg_max = number(v)? as usize,
            "force_recovery" => self.force_recovery = v.as_bool().unwrap_or(false),
            "read_only" => self.read_only = v.as_bool().unwrap_or(false),
            "checkpoint_interval" => self.checkpoint_interval = number(v)?,
            "checkpoint_count" => self.checkpoint_count = number(v)? as usize,
            "replication_timeout" => self.replication_timeout = number(v)?,
            "replication" => self.replication = parse_replication_json(v)?,
            "log_level" => self.log_level = log_level_name(v),
            "compat_version" => {
                let text = v.as_str().ok_or("should be of type string")?;
                self.compat_version = Version::parse(text)?;
            }
            "memtx_use_mvcc_engine" => self.memtx_use_mvcc_engine = v.as_bool().unwrap_or(false),
            "txn_isolation" if !v.is_null() => {
                self.txn_isolation = txn_cfg::parse_isolation(v.as_str(), v.as_f64())?;
            }
            "http_listen" => {
                self.http_listen = text(v).map(|t| parse_http_listen(&t)).transpose()?
            }
            "http_max_body_size" => self.http_max_body_size = number(v)? as usize,
            "http_idle_timeout" => self.http_idle_timeout = number(v)?,
            "http_conflict_window" => self.http_conflict_window = number(v)? as usize,
            _ => {}
        }
        Ok(())
    }
    pub fn resolve(args: ServeArgs) -> Result<Config, String> {
        let file = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                toml::from_str::<FileConfig>(&text)
                    .map_err(|e| format!("{}: {e}", path.display()))?
            }
            None => FileConfig::default(),
        };
        let listen_text = args
            .listen
            .or(file.listen)
            .unwrap_or_else(|| "127.0.0.1:3301".into());
        let listen = Some(parse_listen(&listen_text)?);
        let data_dir = args
            .data_dir
            .or(file.data_dir)
            .unwrap_or_else(|| "spindle-data".into());
        let config = Config {
            listen,
            wal_dir: args
                .wal_dir
                .or(file.wal_dir)
                .unwrap_or_else(|| data_dir.clone()),
            memtx_dir: args.memtx_dir.or(file.memtx_dir).unwrap_or(data_dir),
            wal_mode: args.wal_mode.or(file.wal_mode).unwrap_or(WalModeArg::Write),
            wal_max_size: args
                .wal_max_size
                .or(file.wal_max_size)
                .unwrap_or(WAL_MAX_SIZE_DEFAULT),
            iproto_threads: args.iproto_threads.or(file.iproto_threads).unwrap_or(1),
            net_msg_max: args
                .net_msg_max
                .or(file.net_msg_max)
                .unwrap_or(NET_MSG_MAX_DEFAULT),
            max_packet_size: args
                .max_packet_size
                .or(file.max_packet_size)
                .unwrap_or(PACKET_SIZE_MAX_DEFAULT),
            // An empty SPINDLE_ADMIN_PASSWORD means "not set", not "set it to empty".
            admin_password: args
                .admin_password
                .filter(|p| !p.is_empty())
                .or(file.admin_password),
            log_level: args
                .log_level
                .or(file.log_level)
                .unwrap_or_else(|| "info".into()),
            force_recovery: args.force_recovery || file.force_recovery.unwrap_or(false),
            checkpoint_interval: args
                .checkpoint_interval
                .or(file.checkpoint_interval)
                .unwrap_or(3600.0),
            checkpoint_count: args.checkpoint_count.or(file.checkpoint_count).unwrap_or(2),
            read_only: args.read_only || file.read_only.unwrap_or(false),
            replication: parse_replication(args.replication.or(file.replication))?,
            replication_timeout: args
                .replication_timeout
                .or(file.replication_timeout)
                .unwrap_or(REPLICATION_TIMEOUT_DEFAULT),
            work_dir: None,
            pid_file: None,
            log_file: None,
            console_listen: args.console_listen.or(file.console_listen),
            compat_version: match args.compat_version.or(file.compat_version) {
                Some(text) => Version::parse(&text)?,
                None => Version::DEFAULT,
            },
            memtx_use_mvcc_engine: args.memtx_use_mvcc_engine
                || file.memtx_use_mvcc_engine.unwrap_or(false),
            txn_isolation: isolation_arg(args.txn_isolation, file.txn_isolation)?,
            http_listen: args
                .http_listen
                .or(file.http_listen)
                .map(|t| parse_http_listen(&t))
                .transpose()?,
            http_max_body_size: args
                .http_max_body_size
                .or(file.http_max_body_size)
                .unwrap_or(HTTP_BODY_MAX_DEFAULT),
            http_idle_timeout: args
                .http_idle_timeout
                .or(file.http_idle_timeout)
                .unwrap_or(HTTP_IDLE_TIMEOUT_DEFAULT),
            http_conflict_window: args
                .http_conflict_window
                .or(file.http_conflict_window)
                .unwrap_or(KV_WINDOW_DEFAULT),
        };
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), String> {
        if !(1..=1000).contains(&self.iproto_threads) {
            return Err(format!(
                "iproto_threads must be 1..1000, got {}",
                self.iproto_threads
            ));
        }
        if self.net_msg_max < 2 {
            return Err(format!(
                "net_msg_max must be at least 2, got {}",
                self.net_msg_max
            ));
        }
        if !(self.checkpoint_interval >= 0.0 && self.checkpoint_interval.is_finite()) {
            return Err("checkpoint_interval must be a non-negative number of seconds".into());
        }
        if self.checkpoint_count < 1 {
            return Err("checkpoint_count must be at least 1".into());
        }
        if !(self.replication_timeout > 0.0 && self.replication_timeout.is_finite()) {
            return Err("replication_timeout must be a positive number of seconds".into());
        }
        if self.max_packet_size < 1024 {
            return Err("max_packet_size must be at least 1024".into());
        }
        if !(1..=HTTP_BODY_MAX_LIMIT).contains(&self.http_max_body_size) {
            return Err(format!(
                "http_max_body_size must be 1..{HTTP_BODY_MAX_LIMIT}, got {}",
                self.http_max_body_size
            ));
        }
        if !(self.http_idle_timeout > 0.0 && self.http_idle_timeout <= 86400.0) {
            return Err("http_idle_timeout must be a positive number of seconds".into());
        }
        if !(1..=KV_WINDOW_MAX).contains(&self.http_conflict_window) {
            return Err(format!(
                "http_conflict_window must be 1..{KV_WINDOW_MAX}, got {}",
                self.http_conflict_window
            ));
        }
        Ok(())
    }
}

/// `http_listen`: the forms `listen` takes (a bare port is 127.0.0.1's), TCP only.
pub fn parse_http_listen(text: &str) -> Result<SocketAddr, String> {
    match parse_listen(text)? {
        ListenAddr::Tcp(addr) => Ok(addr),
        ListenAddr::Unix(_) => Err(format!("http_listen must be HOST:PORT, got '{text}'")),
    }
}

fn wal_mode_name(mode: WalModeArg) -> &'static str {
    match mode {
        WalModeArg::None => "none",
        WalModeArg::Write => "write",
        WalModeArg::Fsync => "fsync",
    }
}

/// `box.cfg.log`: a file path, or `file:PATH`; pipes and syslog are not supported.
fn log_path(text: String) -> Result<PathBuf, String> {
    if text.starts_with('|') || text.starts_with("pipe:") || text.starts_with("syslog:") {
        return Err("only log files are supported".into());
    }
    Ok(PathBuf::from(text.strip_prefix("file:").unwrap_or(&text)))
}

/// Tarantool's numeric log levels (1 syserror .. 7 debug) as tracing filter names.
fn log_level_name(v: &serde_json::Value) -> String {
    match v.as_f64().map(|n| n as i64) {
        Some(..=2) => "error",
        Some(3 | 4) => "warn",
        Some(5) => "info",
        Some(6) => "debug",
        Some(7..) => "trace",
        None => v.as_str().unwrap_or("info"),
    }
    .to_string()
}

/// `box.cfg.replication`: one URI or a list of them.
fn parse_replication_json(v: &serde_json::Value) -> Result<Vec<spindle_repl::Uri>, String> {
    match v {
        serde_json::Value::Null => Ok(Vec::new()),
        serde_json::Value::String(s) => parse_replication(Some(s.clone())),
        serde_json::Value::Number(n) => parse_replication(Some(n.to_string())),
        serde_json::Value::Array(items) => items
            .iter()
            .map(|i| match i {
                serde_json::Value::String(s) => spindle_repl::Uri::parse(s),
                serde_json::Value::Number(n) => spindle_repl::Uri::parse(&n.to_string()),
                _ => Err("should be a URI or a list of URIs".into()),
            })
            .collect(),
        _ => Err("should be a URI or a list of URIs".into()),
    }
}

/// Comma-separated replication URIs.
fn parse_replication(text: Option<String>) -> Result<Vec<spindle_repl::Uri>, String> {
    text.unwrap_or_default()
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(spindle_repl::Uri::parse)
        .collect()
}

/// `--txn-isolation` or the file's `txn_isolation` (a name or a number).
fn isolation_arg(arg: Option<String>, file: Option<toml::Value>) -> Result<u8, String> {
    let bad = |e: String| format!("txn_isolation: {e}");
    if let Some(text) = arg {
        let number = text.parse::<f64>().ok();
        let name = number.is_none().then_some(text.as_str());
        return txn_cfg::parse_isolation(name, number).map_err(bad);
    }
    match file {
        None => Ok(txn_cfg::BEST_EFFORT),
        Some(toml::Value::String(s)) => txn_cfg::parse_isolation(Some(&s), None).map_err(bad),
        Some(toml::Value::Integer(n)) => {
            txn_cfg::parse_isolation(None, Some(n as f64)).map_err(bad)
        }
        Some(_) => Err(bad("should be a string or a number".into())),
    }
}

/// Accepts `HOST:PORT`, `:PORT`, a bare port, a socket path (`/...`, `./...`) or
/// `unix/:PATH`, as box.cfg.listen does.
pub fn parse_listen(text: &str) -> Result<ListenAddr, String> {
    if let Some(path) = text.strip_prefix("unix/:") {
        if path.is_empty() {
            return Err(format!("cannot parse listen address '{text}'"));
        }
        return Ok(ListenAddr::Unix(PathBuf::from(path)));
    }
    if text.starts_with('/') || text.starts_with("./") || text.starts_with("../") {
        return Ok(ListenAddr::Unix(PathBuf::from(text)));
    }
    let candidate = if let Ok(port) = text.parse::<u16>() {
        format!("127.0.0.1:{port}")
    } else if let Some(port) = text.strip_prefix(':') {
        format!("0.0.0.0:{port}")
    } else {
        text.replace("localhost", "127.0.0.1")
    };
    candidate
        .parse::<SocketAddr>()
        .map(ListenAddr::Tcp)
        .map_err(|_| format!("cannot parse listen address '{text}'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_listen_accepts_tcp_and_unix_forms() {
        let tcp = |s: &str| ListenAddr::Tcp(s.parse().unwrap_or_else(|e| panic!("{s}: {e}")));
        assert_eq!(parse_listen("3301"), Ok(tcp("127.0.0.1:3301")));
        assert_eq!(parse_listen(":3301"), Ok(tcp("0.0.0.0:3301")));
        assert_eq!(parse_listen("localhost:3301"), Ok(tcp("127.0.0.1:3301")));
        let unix = |s: &str| ListenAddr::Unix(PathBuf::from(s));
        assert_eq!(parse_listen("/tmp/x.sock"), Ok(unix("/tmp/x.sock")));
        assert_eq!(parse_listen("./x.sock"), Ok(unix("./x.sock")));
        assert_eq!(parse_listen("unix/:/tmp/x.sock"), Ok(unix("/tmp/x.sock")));
        assert_eq!(parse_listen("unix/:x.sock"), Ok(unix("x.sock")));
        assert!(parse_listen("unix/:").is_err());
        assert!(parse_listen("x.sock").is_err());
    }

    #[test]
    fn unix_listen_address_prints_back_parseable() {
        let addr = ListenAddr::Unix(PathBuf::from("/tmp/x.sock"));
        assert_eq!(addr.to_string(), "unix/:/tmp/x.sock");
        assert_eq!(parse_listen(&addr.to_string()), Ok(addr));
    }
}
