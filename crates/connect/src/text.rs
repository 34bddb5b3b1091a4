//! A console port: statements go as text ending in the `$EOF$` delimiter; a reply ends at
//! `\n...\n` (YAML output) or `;` (Lua output). The client follows `\set output` in what it
//! sends to know which ending to wait for, as tarantoolctl does.

use std::io::{self, Read, Write};

use crate::uri::Conn;
use crate::{Failure, Remote};

const YAML_END: &[u8] = b"\n...\n";
const LUA_END: &[u8] = b";";
const DELIMITER: &str = "$EOF$";

pub struct TextPort {
    conn: Conn,
    /// Bytes read past the last reply.
    input: Vec<u8>,
    end: &'static [u8],
}

impl TextPort {
    /// Sets YAML output and the `$EOF$` delimiter.
    pub fn open(conn: Conn) -> Result<TextPort, Failure> {
        let mut port = TextPort {
            conn,
            input: Vec::new(),
            end: YAML_END,
        };
        port.send(b"\\set output yaml\n")?;
        port.read_reply()?;
        port.send(format!("require(\"console\").delimiter(\"{DELIMITER}\")\n").as_bytes())?;
        port.read_reply()?;
        Ok(port)
    }

    fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.conn.write_all(bytes)?;
        self.conn.flush()
    }

    /// Reads up to the first reply ending; push messages before the reply are printed.
    fn read_reply(&mut self) -> io::Result<String> {
        loop {
            if let Some(at) = find(&self.input, self.end) {
                let rest = self.input.split_off(at + self.end.len());
                let reply =
                    String::from_utf8_lossy(&std::mem::replace(&mut self.input, rest)).into_owned();
                if is_push(&reply) {
                    println!("{reply}");
                    continue;
                }
                return Ok(reply);
            }
            let mut chunk = [0u8; 16 * 1024];
            let n = self.conn.read(&mut chunk)?;
            if n == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "Peer closed"));
            }
            self.input
                .extend_from_slice(chunk.get(..n).unwrap_or_default());
        }
    }

    /// `\set output X` switches the reply ending if X is a known format.
    fn follow_output(&mut self, statement: &str) {
        let Some(command) = statement.strip_prefix('\\') else {
            return;
        };
        let words: Vec<&str> = command.split_whitespace().collect();
        let [set, param, value] = words.as_slice() else {
            return;
        };
        if !matches!(*set, "set" | "s") || !matches!(*param, "output" | "o") {
            return;
        }
        match value.split(',').next() {
            Some("yaml") => self.end = YAML_END,
            Some("lua") => self.end = LUA_END,
            _ => {}
        }
    }
}

impl Remote for TextPort {
    fn eval(&mut self, statement: &str) -> Result<String, Failure> {
        self.follow_output(statement);
        self.send(format!("{statement}{DELIMITER}\n").as_bytes())?;
        Ok(self.read_reply()?)
    }
}

fn is_push(reply: &str) -> bool {
    reply.starts_with("%TAG !push!") || reply.starts_with("-- Push")
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
