//! `spindle cat FILE...`: print the rows of `.xlog`/`.snap` files the way Tarantool 2.6's
//! `tarantoolctl cat` does (YAML by default, `--format json` or `--format lua`), with the
//! same filters (`--space`, `--show-system`, `--from`, `--to`, `--replica`).
//!
//! This crate owns `spindle cat`: its arguments ([`CatArgs`], [`CatFormat`]), reading the
//! files, the filters, and [`run`], which the `spindle` binary calls. tarantoolctl builds a
//! Lua table per row and serializes it, so the output depends on Lua's table order,
//! libyaml's emitter and `%.14g` number formatting:
//! - `record`: one row as tarantoolctl's Lua record (`src/box/lua/xlog.c`), MessagePack
//!   decoded as Tarantool's two decoders do;
//! - `lua`: LuaJIT's table order, replayed so keys print in `lua_next` order;
//! - `output`: the three formats; YAML and JSON come from `spindle_emit`.
//!
//! Where tarantoolctl is silent, spindle says what happened: a torn tail is a warning (exit
//! 0), damage is an error naming the file and offset (exit 1) unless `--skip-corrupt`.

mod lua;
mod output;
mod record;

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use spindle_emit::Value;
use spindle_xlog::{Row, XlogError, XlogReader};

/// Output formats of `tarantoolctl cat`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CatFormat {
    Yaml,
    Json,
    Lua,
}

// The arguments of `spindle cat`. (No doc comment: clap would make it the command's help
// text, which the `Cat` variant of the binary's command enum already gives.)
#[derive(Args, Debug)]
pub struct CatArgs {
    /// `.xlog` / `.snap` files, printed in the given order.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// yaml (as tarantoolctl), json (one object per line) or lua (`box.space[N]:op(...)`).
    #[arg(long, value_enum, default_value_t = CatFormat::Yaml)]
    pub format: CatFormat,
    /// Only rows of this space (repeatable). Rows without a space are then skipped.
    #[arg(long = "space", value_name = "ID")]
    pub spaces: Vec<u64>,
    /// Also print rows of system spaces (id < 512), which are hidden unless --space is given.
    #[arg(long)]
    pub show_system: bool,
    /// Only rows with lsn >= LSN.
    #[arg(long, value_name = "LSN", default_value_t = 0)]
    pub from: u64,
    /// Only rows with lsn < LSN (exclusive, as in tarantoolctl).
    #[arg(long, value_name = "LSN")]
    pub to: Option<u64>,
    /// Only rows from this replica id (repeatable). With a single id, reading a file stops
    /// at the first row of that replica with lsn >= --to.
    #[arg(long = "replica", value_name = "ID")]
    pub replicas: Vec<u64>,
    /// Skip damaged blocks (with a warning) and keep reading, as tarantoolctl does silently.
    #[arg(long)]
    pub skip_corrupt: bool,
}

/// Why printing stopped early.
enum Stop {
    /// stdout is gone (e.g. `| head`): stop quietly.
    BrokenPipe,
    /// An error already reported on stderr.
    Failed,
}

/// `spindle cat`: prints every file in order to stdout, progress and problems to stderr.
/// Success also when stdout is closed early (`| head`); failure after the first file that
/// cannot be read or printed.
pub fn run(args: CatArgs) -> ExitCode {
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let mut result = Ok(());
    for file in &args.files {
        eprintln!("Processing file '{}'", file.display());
        result = cat_file(file, &args, &mut out);
        if result.is_err() {
            break;
        }
    }
    let flushed = out.flush();
    match (result, flushed) {
        (Err(Stop::Failed), _) => ExitCode::FAILURE,
        (Err(Stop::BrokenPipe), _) => ExitCode::SUCCESS,
        (Ok(()), Err(e)) if e.kind() != io::ErrorKind::BrokenPipe => {
            eprintln!("spindle cat: cannot write to stdout: {e}");
            ExitCode::FAILURE
        }
        (Ok(()), _) => ExitCode::SUCCESS,
    }
}

fn write_out(out: &mut impl Write, bytes: &[u8]) -> Result<(), Stop> {
    out.write_all(bytes).map_err(|e| {
        if e.kind() == io::ErrorKind::BrokenPipe {
            Stop::BrokenPipe
        } else {
            eprintln!("spindle cat: cannot write to stdout: {e}");
            Stop::Failed
        }
    })
}

/// Reports an error after flushing what was printed, so the two streams stay in order.
fn fail(out: &mut impl Write, msg: String) -> Stop {
    let _ = out.flush();
    eprintln!("spindle cat: {msg}");
    Stop::Failed
}

fn cat_file(path: &Path, args: &CatArgs, out: &mut impl Write) -> Result<(), Stop> {
    let name = path.display();
    let data = std::fs::read(path).map_err(|e| fail(out, format!("cannot open '{name}': {e}")))?;
    let mut reader = XlogReader::new(data).map_err(|e| {
        fail(
            out,
            format!("'{name}' is not a Tarantool .xlog/.snap file: {e}"),
        )
    })?;
    let mut printed = false;
    let result = loop {
        match reader.next_row() {
            Ok(Some(row)) => match print_row(&row, args, out, &mut printed) {
                Ok(true) => {}
                Ok(false) => break Ok(()),
                Err(Stop::Failed) => {
                    let at = reader.block_offset().unwrap_or_else(|| reader.offset());
                    break Err(fail(
                        out,
                        format!(
                            "{name}: cannot print the row with lsn {} in the block at offset {at}",
                            row.header.lsn
                        ),
                    ));
                }
                Err(stop) => break Err(stop),
            },
            Ok(None) => break Ok(()),
            Err(XlogError::TornTail { offset }) => {
                let _ = out.flush();
                eprintln!(
                    "spindle cat: warning: {name}: the file ends inside the block at offset \
                     {offset} (torn tail, e.g. a crash mid-write); the rows before it were printed"
                );
                break Ok(());
            }
            Err(e) if args.skip_corrupt && is_damage(&e) => {
                let _ = out.flush();
                match reader.resync() {
                    Some(next) => eprintln!(
                        "spindle cat: warning: {name}: {e}; skipped to offset {next}"
                    ),
                    None => eprintln!(
                        "spindle cat: warning: {name}: {e}; no intact block follows"
                    ),
                }
            }
            Err(e) => {
                break Err(fail(
                    out,
                    format!("{name}: {e}; the rows before it were printed (--skip-corrupt skips damaged blocks)"),
                ))
            }
        }
    };
    if result.is_ok() || matches!(result, Err(Stop::Failed)) {
        if args.format == CatFormat::Yaml && printed {
            write_out(out, b"...\n\n")?;
        }
        let _ = out.flush();
    }
    result
}

fn is_damage(e: &XlogError) -> bool {
    matches!(
        e,
        XlogError::Corrupt { .. } | XlogError::DataAfterEof { .. } | XlogError::BadRow { .. }
    )
}

/// Filters and prints one row. `Ok(false)` ends the file (the `--replica` early stop).
fn print_row(
    row: &Row,
    args: &CatArgs,
    out: &mut impl Write,
    printed: &mut bool,
) -> Result<bool, Stop> {
    let record = record::build(row).map_err(|e| {
        let _ = out.flush();
        eprintln!("spindle cat: {e}");
        Stop::Failed
    })?;
    // tarantoolctl compares Lua numbers: the int64_t lsn is pushed as a double.
    let lsn = row.header.lsn as i64 as f64;
    let to = args.to.map_or(f64::INFINITY, |t| t as f64);
    let rid = record::replica_id(&record).and_then(Value::as_number);
    let sid = record::space_id(&record);
    let sid_num = sid.and_then(Value::as_number);
    if let [only] = args.replicas.as_slice() {
        if rid == Some(*only as f64) && lsn >= to {
            return Ok(false);
        }
    }
    let skip = lsn < args.from as f64
        || lsn >= to
        || (args.spaces.is_empty() && !args.show_system && sid_num.is_some_and(|s| s < 512.0))
        || (!args.spaces.is_empty()
            && !sid_num.is_some_and(|s| args.spaces.iter().any(|&id| id as f64 == s)))
        || (!args.replicas.is_empty()
            && !rid.is_some_and(|r| args.replicas.iter().any(|&id| id as f64 == r)));
    if skip {
        return Ok(true);
    }
    let text = match args.format {
        CatFormat::Yaml => output::yaml_record(&record).map_err(|e| {
            let _ = out.flush();
            eprintln!("spindle cat: {e}");
            Stop::Failed
        })?,
        CatFormat::Json => output::json_record(&record),
        CatFormat::Lua => output::lua_record(&record),
    };
    *printed = true;
    write_out(out, &text)?;
    Ok(true)
}
