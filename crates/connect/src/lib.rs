//! `spindle connect URI`: a client for an admin console port or a binary port, like
//! `tarantoolctl connect`. The port's kind comes from its greeting (`(Lua console)` or
//! `(Binary)`). On a console port it speaks the text protocol with the `$EOF$` delimiter; on a
//! binary port it authenticates (chap-sha1) and sends each statement as an EVAL of
//! `require("console").eval(...)`. Either way the server formats the reply and this prints it.
//!
//! With a terminal on stdin it is a line editor with history, joining lines while a statement
//! is incomplete Lua; with anything else it sends all of stdin as one chunk, prints the reply
//! and exits 3 if the reply is an error (2 if it cannot connect).

mod binary;
mod reply;
mod text;
mod uri;

use std::io::{self, IsTerminal, Read, Write};
use std::process::ExitCode;

use spindle_proto::greeting::decode_greeting;
use spindle_types::iproto::GREETING_SIZE;

pub use uri::Uri;

/// Exit code when the reply to piped input is an error.
const EXIT_REMOTE_ERROR: u8 = 3;
/// Exit code when the server cannot be reached.
const EXIT_NO_CONNECTION: u8 = 2;

#[derive(clap::Args, Debug)]
pub struct ConnectArgs {
    /// `[user[:password]@]host:port`, a bare port (on localhost) or `unix/:<path>`.
    pub uri: String,
}

/// A connected server, of either kind.
trait Remote {
    /// Sends one statement; the server's formatted reply.
    fn eval(&mut self, statement: &str) -> Result<String, Failure>;
}

/// Why a statement got no reply.
#[derive(Debug)]
enum Failure {
    /// The connection failed.
    Io(io::Error),
    /// The server refused the request (a binary-port error response).
    Server(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Io(e) => write!(f, "{e}"),
            Failure::Server(message) => f.write_str(message),
        }
    }
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        Failure::Io(e)
    }
}

pub fn run(args: ConnectArgs) -> ExitCode {
    let Some(uri) = Uri::parse(&args.uri) else {
        eprintln!("Invalid URI: {}", args.uri);
        return ExitCode::from(EXIT_NO_CONNECTION);
    };
    let mut remote = match open(&uri) {
        Ok(remote) => remote,
        Err(Failure::Io(_)) => {
            eprintln!("Failed to connect to Tarantool");
            return ExitCode::from(EXIT_NO_CONNECTION);
        }
        Err(Failure::Server(message)) => {
            eprintln!("Failed to connect to Tarantool\n{message}");
            return ExitCode::from(EXIT_NO_CONNECTION);
        }
    };
    eprintln!("connected to {}", uri.display_name());
    if io::stdin().is_terminal() {
        interactive(remote.as_mut(), &uri)
    } else {
        piped(remote.as_mut())
    }
}

/// Connects, tells the port's kind by its greeting, and checks that statements run
/// (`return true`, as tarantoolctl does).
fn open(uri: &Uri) -> Result<Box<dyn Remote>, Failure> {
    let mut conn = uri.connect()?;
    let mut raw = [0u8; GREETING_SIZE];
    conn.read_exact(&mut raw)?;
    let greeting = decode_greeting(&raw)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not a Tarantool greeting"))?;
    let mut remote: Box<dyn Remote> = match greeting.protocol.as_str() {
        "Lua console" => Box::new(text::TextPort::open(conn)?),
        "Binary" => Box::new(binary::BinaryPort::open(conn, &greeting.salt, uri)?),
        other => {
            return Err(Failure::Server(format!("Unsupported protocol: {other}")));
        }
    };
    remote.eval("return true")?;
    Ok(remote)
}

/// All of stdin as one chunk; the reply on stdout, an error's message on stderr.
fn piped(remote: &mut dyn Remote) -> ExitCode {
    let mut input = Vec::new();
    if let Err(e) = io::stdin().read_to_end(&mut input) {
        eprintln!("cannot read stdin: {e}");
        return ExitCode::FAILURE;
    }
    let input = String::from_utf8_lossy(&input);
    match remote.eval(&input) {
        Ok(output) => match reply::error_message(&output) {
            Some(message) => {
                eprintln!("Error while executing remote command:\n{message}");
                ExitCode::from(EXIT_REMOTE_ERROR)
            }
            None => {
                print_reply(&output);
                ExitCode::SUCCESS
            }
        },
        Err(e) => {
            eprintln!("Error while executing remote command:\n{e}");
            ExitCode::from(EXIT_REMOTE_ERROR)
        }
    }
}

fn print_reply(output: &str) {
    let mut stdout = io::stdout();
    let _ = writeln!(stdout, "{output}").and_then(|()| stdout.flush());
}

/// The line editor: statements continue over lines while they are incomplete Lua.
fn interactive(remote: &mut dyn Remote, uri: &Uri) -> ExitCode {
    let mut editor = match rustyline::DefaultEditor::new() {
        Ok(editor) => editor,
        Err(e) => {
            eprintln!("cannot start the line editor: {e}");
            return ExitCode::FAILURE;
        }
    };
    let prompt = format!("{}> ", uri.display_name());
    let continuation = format!("{}> ", " ".repeat(prompt.len() - 2));
    let lua = mlua::Lua::new();
    loop {
        let Some(statement) = read_statement(&mut editor, &lua, &prompt, &continuation) else {
            return ExitCode::SUCCESS;
        };
        let _ = editor.add_history_entry(statement.as_str());
        match remote.eval(&statement) {
            Ok(output) => print_reply(&output),
            Err(Failure::Server(message)) => eprintln!("{message}"),
            Err(Failure::Io(e)) => {
                eprintln!("Connection lost: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
}

/// One statement: lines are joined while they do not compile only for want of an ending.
fn read_statement(
    editor: &mut rustyline::DefaultEditor,
    lua: &mlua::Lua,
    prompt: &str,
    continuation: &str,
) -> Option<String> {
    let mut statement = String::new();
    let mut current = prompt;
    loop {
        let line = match editor.readline(current) {
            Ok(line) => line,
            Err(rustyline::error::ReadlineError::Interrupted) if !statement.is_empty() => {
                statement.clear();
                current = prompt;
                continue;
            }
            Err(_) => return None,
        };
        statement.push_str(&line);
        if statement.starts_with('\\') || !is_incomplete(lua, &statement) {
            return Some(statement);
        }
        statement.push('\n');
        current = continuation;
    }
}

/// True if `chunk` fails to compile only because it ends too early, and is not an
/// expression either (`(42\n)` fails the same way as a statement but is complete).
fn is_incomplete(lua: &mlua::Lua, chunk: &str) -> bool {
    let compiles = |src: &str| lua.load(src).into_function();
    match compiles(chunk) {
        Err(mlua::Error::SyntaxError {
            incomplete_input: true,
            ..
        }) => compiles(&format!("return {chunk}")).is_err(),
        _ => false,
    }
}
