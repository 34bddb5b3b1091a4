//! Unix socket files the Lua side listens on (`console.listen`, `socket.tcp_server` with
//! `unix/`): what is left of a dead process's socket is removed before the bind.

use std::io;
use std::path::Path;

use tracing::info;

/// A socket file nobody listens on is left over from a process that died: removed, as
/// Tarantool does. A live one stays, and the bind fails.
pub fn remove_dead_socket(path: &Path) {
    use std::os::unix::fs::FileTypeExt;
    let is_socket = std::fs::symlink_metadata(path)
        .map(|m| m.file_type().is_socket())
        .unwrap_or(false);
    if !is_socket {
        return;
    }
    if let Err(e) = std::os::unix::net::UnixStream::connect(path) {
        if e.kind() == io::ErrorKind::ConnectionRefused {
            info!("removing the dead UNIX socket {}", path.display());
            let _ = std::fs::remove_file(path);
        }
    }
}
