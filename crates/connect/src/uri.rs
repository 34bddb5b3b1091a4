//! The address `spindle connect` takes: `[user[:password]@]host:port`, a bare port (on
//! localhost) or `[user[:password]@]unix/:<path>`.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

/// How long the TCP handshake may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, PartialEq, Eq)]
pub struct Uri {
    pub user: Option<String>,
    pub password: Option<String>,
    pub target: Target,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Target {
    Tcp { host: String, port: u16 },
    Unix(PathBuf),
}

impl Uri {
    pub fn parse(text: &str) -> Option<Uri> {
        let (credentials, address) = match text.rsplit_once('@') {
            Some((credentials, address)) => (Some(credentials), address),
            None => (None, text),
        };
        let (user, password) = match credentials {
            None => (None, None),
            Some(c) => match c.split_once(':') {
                Some((user, password)) => (Some(user.to_string()), Some(password.to_string())),
                None => (Some(c.to_string()), None),
            },
        };
        if user.as_deref() == Some("") {
            return None;
        }
        Some(Uri {
            user,
            password,
            target: parse_target(address)?,
        })
    }

    /// `host:port` or `unix/:<path>`, as the prompt and messages show it.
    pub fn display_name(&self) -> String {
        match &self.target {
            Target::Tcp { host, port } => format!("{host}:{port}"),
            Target::Unix(path) => format!("unix/:{}", path.display()),
        }
    }

    pub fn connect(&self) -> io::Result<Conn> {
        match &self.target {
            Target::Tcp { host, port } => {
                let host = host.trim_start_matches('[').trim_end_matches(']');
                let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
                for addr in (host, *port).to_socket_addrs()? {
                    match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
                        Ok(stream) => {
                            stream.set_nodelay(true)?;
                            return Ok(Conn::Tcp(stream));
                        }
                        Err(e) => last = e,
                    }
                }
                Err(last)
            }
            Target::Unix(path) => Ok(Conn::Unix(UnixStream::connect(path)?)),
        }
    }
}

fn parse_target(address: &str) -> Option<Target> {
    if let Some(path) = address.strip_prefix("unix/:") {
        return (!path.is_empty()).then(|| Target::Unix(PathBuf::from(path)));
    }
    if let Ok(port) = address.parse::<u16>() {
        return Some(Target::Tcp {
            host: "localhost".to_string(),
            port,
        });
    }
    let (host, port) = address.rsplit_once(':')?;
    if host.is_empty() {
        return None;
    }
    Some(Target::Tcp {
        host: host.to_string(),
        port: port.parse().ok()?,
    })
}

/// A connection to either kind of socket.
pub enum Conn {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.read(buf),
            Conn::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.write(buf),
            Conn::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Conn::Tcp(s) => s.flush(),
            Conn::Unix(s) => s.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(host: &str, port: u16) -> Target {
        Target::Tcp {
            host: host.to_string(),
            port,
        }
    }

    #[test]
    fn forms() {
        let u = Uri::parse("admin:pw@127.0.0.1:3301").expect("uri");
        assert_eq!(u.user.as_deref(), Some("admin"));
        assert_eq!(u.password.as_deref(), Some("pw"));
        assert_eq!(u.target, tcp("127.0.0.1", 3301));
        let u = Uri::parse("guest@localhost:3301").expect("uri");
        assert_eq!((u.user.as_deref(), u.password), (Some("guest"), None));
        assert_eq!(
            Uri::parse("3301").expect("uri").target,
            tcp("localhost", 3301)
        );
        assert_eq!(
            Uri::parse("unix/:/tmp/a.sock").expect("uri").target,
            Target::Unix(PathBuf::from("/tmp/a.sock"))
        );
        assert_eq!(
            Uri::parse("[::1]:3301").expect("uri").target,
            tcp("[::1]", 3301)
        );
        assert!(Uri::parse("host:notaport").is_none());
        assert!(Uri::parse("unix/:").is_none());
        assert!(Uri::parse(":3301").is_none());
    }
}
