//! A binary port: AUTH (chap-sha1) when the URI names a user, then every statement as an EVAL
//! of `return require("console").eval(...)`, whose one result is the formatted reply.

use std::io::{self, Read, Write};

use spindle_proto::iproto::{self, decode_frame, decode_response, Frame};
use spindle_types::limits::PACKET_SIZE_HARD_MAX;

use crate::uri::{Conn, Uri};
use crate::{Failure, Remote};

const EVAL: &str = "return require(\"console\").eval(...)";

pub struct BinaryPort {
    conn: Conn,
    next_sync: u64,
    /// Bytes read past the last response.
    input: Vec<u8>,
}

impl BinaryPort {
    pub fn open(conn: Conn, salt: &[u8], uri: &Uri) -> Result<BinaryPort, Failure> {
        let mut port = BinaryPort {
            conn,
            next_sync: 1,
            input: Vec::new(),
        };
        if let Some(user) = &uri.user {
            let password = uri.password.as_deref().unwrap_or("");
            let scramble = spindle_proto::auth::scramble(salt, password);
            let sync = port.sync();
            let mut packet = Vec::new();
            iproto::encode_auth(&mut packet, sync, user, Some(&scramble));
            port.request(&packet, sync)?;
        }
        Ok(port)
    }

    fn sync(&mut self) -> u64 {
        let sync = self.next_sync;
        self.next_sync += 1;
        sync
    }

    /// Sends `packet` and returns the DATA of the reply with `sync` (pushes are printed).
    fn request(&mut self, packet: &[u8], sync: u64) -> Result<Option<rmpv::Value>, Failure> {
        self.conn.write_all(packet)?;
        loop {
            let (response, packet) = self.read_packet()?;
            if response.is_push() {
                if let Some(text) = first_string(data(&packet, &response)?) {
                    println!("{text}");
                }
                continue;
            }
            if response.sync != sync {
                continue;
            }
            if response.is_error() {
                return Err(Failure::Server(response.error_message.unwrap_or_default()));
            }
            return Ok(data(&packet, &response)?);
        }
    }

    fn read_packet(&mut self) -> io::Result<(iproto::Response, Vec<u8>)> {
        loop {
            match decode_frame(&self.input, PACKET_SIZE_HARD_MAX as usize) {
                Ok(Frame::Packet { prefix_len, len }) => {
                    let rest = self
                        .input
                        .split_off((prefix_len + len).min(self.input.len()));
                    let framed = std::mem::replace(&mut self.input, rest);
                    let packet = framed.get(prefix_len..).unwrap_or_default().to_vec();
                    let response = decode_response(&packet).map_err(|e| invalid(&e))?;
                    return Ok((response, packet));
                }
                Ok(Frame::Need(_)) => self.fill()?,
                Err(e) => return Err(invalid(&e)),
            }
        }
    }

    fn fill(&mut self) -> io::Result<()> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.conn.read(&mut chunk)?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "Peer closed"));
        }
        self.input
            .extend_from_slice(chunk.get(..n).unwrap_or_default());
        Ok(())
    }
}

impl Remote for BinaryPort {
    fn eval(&mut self, statement: &str) -> Result<String, Failure> {
        let sync = self.sync();
        let mut args = Vec::new();
        let line = rmpv::Value::Array(vec![rmpv::Value::from(statement)]);
        rmpv::encode::write_value(&mut args, &line).map_err(io::Error::other)?;
        let mut packet = Vec::new();
        iproto::encode_eval(&mut packet, sync, EVAL, &args);
        let reply = self.request(&packet, sync)?;
        Ok(first_string(reply).unwrap_or_default())
    }
}

fn invalid(e: &dyn std::fmt::Debug) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("bad response: {e:?}"))
}

/// The DATA value of a response, if it has one.
fn data(packet: &[u8], response: &iproto::Response) -> io::Result<Option<rmpv::Value>> {
    let Some(span) = &response.data else {
        return Ok(None);
    };
    let mut bytes = iproto::slice(packet, span);
    rmpv::decode::read_value(&mut bytes)
        .map(Some)
        .map_err(|e| invalid(&e))
}

/// The first element of an array DATA, if it is a string.
fn first_string(data: Option<rmpv::Value>) -> Option<String> {
    match data? {
        rmpv::Value::Array(items) => match items.into_iter().next()? {
            rmpv::Value::String(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
            _ => None,
        },
        _ => None,
    }
}
