//! A small blocking IPROTO client over `std::net::TcpStream`, for integration tests, the bench
//! tool and other utilities. It speaks to spindle and to a real Tarantool alike.
//!
//! Two ways to use it:
//! * typed calls (`ping`, `select`, `insert`, `call`, ...) that send one request and wait for
//!   its reply; server errors come back as [`ClientError::Server`];
//! * pipelining: [`Client::enqueue`] any number of requests (built with the encoders of
//!   `spindle_proto::iproto`), [`Client::flush`], then [`Client::recv`] each reply. Replies are
//!   returned raw (errors included) and may arrive in any order: match them by sync.
//!
//! Every socket operation is bounded by a timeout (30 s unless changed), so a test against a
//! stuck server fails instead of hanging.

use rmpv::Value;
use spindle_proto::greeting::{decode_greeting, Greeting};
use spindle_proto::iproto::{self, decode_frame, decode_response, Frame, Response};
use spindle_types::iproto::GREETING_SIZE;
use spindle_types::limits::PACKET_SIZE_HARD_MAX;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Socket read/write timeout set on connect.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Bytes requested from the socket per read when a reply is incomplete.
const READ_CHUNK: usize = 64 * 1024;

/// What a typed call can fail with.
#[derive(Debug)]
pub enum ClientError {
    /// The socket failed or timed out, or the peer sent something that is not IPROTO
    /// (`io::ErrorKind::InvalidData`).
    Io(io::Error),
    /// The server answered with an error response.
    Server { code: u32, message: String },
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Io(e) => write!(f, "i/o error: {e}"),
            ClientError::Server { code, message } => write!(f, "server error {code}: {message}"),
        }
    }
}

impl std::error::Error for ClientError {}

impl From<io::Error> for ClientError {
    fn from(e: io::Error) -> Self {
        ClientError::Io(e)
    }
}

impl ClientError {
    /// The server's error code, if this is a server error.
    pub fn code(&self) -> Option<u32> {
        match self {
            ClientError::Server { code, .. } => Some(*code),
            ClientError::Io(_) => None,
        }
    }
}

fn invalid_data(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

/// Encodes one value (writing into a Vec cannot fail, but the API says it may).
pub fn encode_value(value: &Value) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, value).map_err(io::Error::other)?;
    Ok(out)
}

/// One received response packet (prefix stripped) with its decoded header and body fields.
#[derive(Clone, Debug)]
pub struct Reply {
    pub packet: Vec<u8>,
    pub response: Response,
}

impl Reply {
    pub fn sync(&self) -> u64 {
        self.response.sync
    }

    /// 0 unless this is an error response.
    pub fn code(&self) -> u32 {
        self.response.code
    }

    pub fn is_error(&self) -> bool {
        self.response.is_error()
    }

    /// The raw DATA value, if any.
    pub fn data_bytes(&self) -> Option<&[u8]> {
        self.response
            .data
            .as_ref()
            .map(|span| iproto::slice(&self.packet, span))
    }

    /// DATA as values: the elements of the array (a non-array DATA is returned as one element;
    /// no DATA as none).
    pub fn data(&self) -> io::Result<Vec<Value>> {
        let Some(mut bytes) = self.data_bytes() else {
            return Ok(Vec::new());
        };
        match rmpv::decode::read_value(&mut bytes).map_err(|e| invalid_data(e.to_string()))? {
            Value::Array(items) => Ok(items),
            other => Ok(vec![other]),
        }
    }

    /// The whole body as a value (an empty map if the reply has no body).
    pub fn body(&self) -> io::Result<Value> {
        let mut bytes = iproto::slice(&self.packet, &self.response.body);
        if bytes.is_empty() {
            return Ok(Value::Map(Vec::new()));
        }
        rmpv::decode::read_value(&mut bytes).map_err(|e| invalid_data(e.to_string()))
    }

    /// DATA on success, [`ClientError::Server`] on an error response.
    pub fn into_result(self) -> Result<Vec<Value>, ClientError> {
        if self.is_error() {
            let message = self.response.error_message.clone().unwrap_or_default();
            return Err(ClientError::Server {
                code: self.code(),
                message,
            });
        }
        Ok(self.data()?)
    }
}

/// A connection. Not thread-safe; open one per thread.
pub struct Client {
    stream: TcpStream,
    greeting: Greeting,
    next_sync: u64,
    /// Encoded requests not yet written.
    output: Vec<u8>,
    /// Bytes read but not yet returned, starting at `input_start`.
    input: Vec<u8>,
    input_start: usize,
}

impl Client {
    /// Connects and reads the greeting.
    pub fn connect(addr: impl ToSocketAddrs) -> io::Result<Client> {
        Self::from_stream(TcpStream::connect(addr)?)
    }

    /// Like [`Client::connect`], with a bound on the TCP handshake too.
    pub fn connect_timeout(addr: &SocketAddr, timeout: Duration) -> io::Result<Client> {
        Self::from_stream(TcpStream::connect_timeout(addr, timeout)?)
    }

    fn from_stream(mut stream: TcpStream) -> io::Result<Client> {
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(DEFAULT_TIMEOUT))?;
        stream.set_write_timeout(Some(DEFAULT_TIMEOUT))?;
        let mut raw = [0u8; GREETING_SIZE];
        stream.read_exact(&mut raw)?;
        let greeting = decode_greeting(&raw).ok_or_else(|| invalid_data("bad greeting"))?;
        if greeting.protocol != "Binary" {
            return Err(invalid_data(format!(
                "not a binary port: {}",
                greeting.protocol
            )));
        }
        Ok(Client {
            stream,
            greeting,
            next_sync: 1,
            output: Vec::new(),
            input: Vec::new(),
            input_start: 0,
        })
    }

    pub fn greeting(&self) -> &Greeting {
        &self.greeting
    }

    /// Sets the read and write timeouts (None = block forever; avoid in tests).
    pub fn set_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.stream.set_read_timeout(timeout)?;
        self.stream.set_write_timeout(timeout)
    }

    /// The socket, e.g. to shut down one direction in a test.
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Allocates the next sync (a per-connection counter from 1, like net.box).
    pub fn next_sync(&mut self) -> u64 {
        let sync = self.next_sync;
        self.next_sync = self.next_sync.wrapping_add(1);
        sync
    }

    /// Queues one request: `encode` appends it to the output buffer given a fresh sync, which
    /// is returned. Nothing is sent until [`Client::flush`].
    pub fn enqueue(&mut self, encode: impl FnOnce(&mut Vec<u8>, u64)) -> u64 {
        let sync = self.next_sync();
        encode(&mut self.output, sync);
        sync
    }

    /// Writes every queued request.
    pub fn flush(&mut self) -> io::Result<()> {
        if !self.output.is_empty() {
            self.stream.write_all(&self.output)?;
            self.output.clear();
        }
        Ok(())
    }

    /// Flushes the queue, then writes `bytes` exactly as given (framed or not).
    pub fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.flush()?;
        self.stream.write_all(bytes)
    }

    /// Reads one response and hands it to `visit` without copying it.
    pub fn recv_with<T>(
        &mut self,
        visit: impl FnOnce(&Response, &[u8]) -> T,
    ) -> Result<T, ClientError> {
        loop {
            let pending = self.input.get(self.input_start..).unwrap_or_default();
            match decode_frame(pending, PACKET_SIZE_HARD_MAX as usize) {
                Ok(Frame::Packet { prefix_len, len }) => {
                    let packet = pending
                        .get(prefix_len..prefix_len + len)
                        .unwrap_or_default();
                    let response = decode_response(packet)
                        .map_err(|e| invalid_data(format!("malformed response: {e:?}")))?;
                    let result = visit(&response, packet);
                    self.input_start += prefix_len + len;
                    return Ok(result);
                }
                Ok(Frame::Need(total)) => self.fill(total)?,
                Err(e) => return Err(invalid_data(format!("bad response frame: {e:?}")).into()),
            }
        }
    }

    /// Reads until at least `need` unconsumed bytes are buffered.
    fn fill(&mut self, need: usize) -> io::Result<()> {
        if self.input_start > 0 {
            self.input.drain(..self.input_start);
            self.input_start = 0;
        }
        while self.input.len() < need {
            let filled = self.input.len();
            self.input.resize(filled + READ_CHUNK.max(need - filled), 0);
            let read = self
                .stream
                .read(self.input.get_mut(filled..).unwrap_or_default());
            match read {
                Ok(0) => {
                    self.input.truncate(filled);
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                Ok(n) => self.input.truncate(filled + n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => self.input.truncate(filled),
                Err(e) => {
                    self.input.truncate(filled);
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Reads one response (of any kind: OK, push or error).
    pub fn recv(&mut self) -> Result<Reply, ClientError> {
        self.recv_with(|response, packet| Reply {
            packet: packet.to_vec(),
            response: response.clone(),
        })
    }

    /// Sends one complete framed packet and reads the next response, whatever it is.
    pub fn request(&mut self, packet: &[u8]) -> Result<Reply, ClientError> {
        self.send_raw(packet)?;
        self.recv()
    }

    /// Sends one request and waits for its final reply (skipping pushes). Requires that no
    /// other request is in flight, so the first non-push reply must carry our sync.
    fn call_one(
        &mut self,
        encode: impl FnOnce(&mut Vec<u8>, u64),
    ) -> Result<Vec<Value>, ClientError> {
        let sync = self.enqueue(encode);
        self.flush()?;
        loop {
            let reply = self.recv()?;
            if reply.response.is_push() {
                continue;
            }
            if reply.sync() != sync {
                let what = format!("reply for sync {} while waiting for {sync}", reply.sync());
                return Err(invalid_data(what).into());
            }
            return reply.into_result();
        }
    }

    /// chap-sha1 authentication with the greeting's salt.
    pub fn auth(&mut self, user: &str, password: &str) -> Result<(), ClientError> {
        let scramble = spindle_proto::auth::scramble(&self.greeting.salt, password);
        self.call_one(|out, sync| iproto::encode_auth(out, sync, user, Some(&scramble)))?;
        Ok(())
    }

    /// AUTH with an explicit scramble, or with the empty tuple `[]` when None.
    pub fn auth_raw(&mut self, user: &str, scramble: Option<&[u8]>) -> Result<(), ClientError> {
        self.call_one(|out, sync| iproto::encode_auth(out, sync, user, scramble))?;
        Ok(())
    }

    pub fn ping(&mut self) -> Result<(), ClientError> {
        self.call_one(iproto::encode_ping)?;
        Ok(())
    }

    pub fn select(
        &mut self,
        space: u32,
        index: u32,
        iterator: u32,
        offset: u32,
        limit: u32,
        key: &Value,
    ) -> Result<Vec<Value>, ClientError> {
        let key = encode_value(key)?;
        self.call_one(|out, sync| {
            iproto::encode_select(out, sync, space, index, iterator, offset, limit, &key)
        })
    }

    pub fn insert(&mut self, space: u32, tuple: &Value) -> Result<Vec<Value>, ClientError> {
        let tuple = encode_value(tuple)?;
        self.call_one(|out, sync| iproto::encode_insert(out, sync, space, &tuple))
    }

    pub fn replace(&mut self, space: u32, tuple: &Value) -> Result<Vec<Value>, ClientError> {
        let tuple = encode_value(tuple)?;
        self.call_one(|out, sync| iproto::encode_replace(out, sync, space, &tuple))
    }

    /// UPDATE with 0-based field numbers (INDEX_BASE 0, like tarantool-python).
    pub fn update(
        &mut self,
        space: u32,
        index: u32,
        key: &Value,
        ops: &Value,
    ) -> Result<Vec<Value>, ClientError> {
        let (key, ops) = (encode_value(key)?, encode_value(ops)?);
        self.call_one(|out, sync| iproto::encode_update(out, sync, space, index, 0, &key, &ops))
    }

    /// UPSERT with 0-based field numbers.
    pub fn upsert(
        &mut self,
        space: u32,
        tuple: &Value,
        ops: &Value,
    ) -> Result<Vec<Value>, ClientError> {
        let (tuple, ops) = (encode_value(tuple)?, encode_value(ops)?);
        self.call_one(|out, sync| iproto::encode_upsert(out, sync, space, 0, &tuple, &ops))
    }

    pub fn delete(
        &mut self,
        space: u32,
        index: u32,
        key: &Value,
    ) -> Result<Vec<Value>, ClientError> {
        let key = encode_value(key)?;
        self.call_one(|out, sync| iproto::encode_delete(out, sync, space, index, &key))
    }

    /// CALL (type 10); `args` must be an array.
    pub fn call(&mut self, name: &str, args: &Value) -> Result<Vec<Value>, ClientError> {
        let args = encode_value(args)?;
        self.call_one(|out, sync| iproto::encode_call(out, sync, name, &args))
    }

    /// CALL_16 (type 6); `args` must be an array.
    pub fn call_16(&mut self, name: &str, args: &Value) -> Result<Vec<Value>, ClientError> {
        let args = encode_value(args)?;
        self.call_one(|out, sync| iproto::encode_call_16(out, sync, name, &args))
    }

    /// EVAL; `args` (an array) is available to the expression as `...`.
    pub fn eval(&mut self, expr: &str, args: &Value) -> Result<Vec<Value>, ClientError> {
        let args = encode_value(args)?;
        self.call_one(|out, sync| iproto::encode_eval(out, sync, expr, &args))
    }
}
