//! `fio`: files and paths. Handles from `open(path, flags, mode)` with `read`, `write`,
//! `pread`, `pwrite`, `seek`, `stat`, `truncate`, `fsync`, `close`; paths: `pathjoin`,
//! `basename`, `dirname`, `abspath`, `path.exists/is_dir/is_file/is_link/lexists`, `stat`,
//! `lstat`, `mkdir`, `mktree`, `rmdir`, `rmtree`, `unlink`, `rename`, `symlink`, `link`,
//! `readlink`, `chmod`, `truncate`, `listdir`, `glob`, `tempdir`, `cwd`, `chdir`,
//! `copyfile`; constants in `fio.c`. Failures return `nil` (or `false`) and
//! `fio: <strerror>`, as Tarantool's do.
//!
//! The calls are synchronous on the TX thread (Tarantool runs them on its coio thread pool
//! and yields): a slow disk stalls the TX thread meanwhile.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use mlua::{IntoLuaMulti, Lua, MultiValue, Table, UserData, UserDataMethods, Value};

pub fn install(lua: &Lua) -> mlua::Result<()> {
    super::preload_rust(lua, "fio", module)
}

/// `fio: <strerror>` without Rust's ` (os error N)` suffix.
fn fio_error(e: &std::io::Error) -> String {
    let text = e.to_string();
    let text = match text.rfind(" (os error ") {
        Some(i) => &text[..i],
        None => &text,
    };
    format!("fio: {text}")
}

type LuaResult = mlua::Result<MultiValue>;

/// `value` on success, `nil, 'fio: ...'` on failure.
fn or_nil<T: IntoLuaMulti>(lua: &Lua, r: std::io::Result<T>) -> LuaResult {
    match r {
        Ok(v) => v.into_lua_multi(lua),
        Err(e) => (Value::Nil, fio_error(&e)).into_lua_multi(lua),
    }
}

/// `true` on success, `false, 'fio: ...'` on failure.
fn ok_or_false(lua: &Lua, r: std::io::Result<()>) -> LuaResult {
    match r {
        Ok(()) => true.into_lua_multi(lua),
        Err(e) => (false, fio_error(&e)).into_lua_multi(lua),
    }
}

fn bad_fd() -> std::io::Error {
    std::io::Error::from_raw_os_error(9)
}

const FLAGS: [(&str, i32); 16] = [
    ("O_RDONLY", 0),
    ("O_WRONLY", 1),
    ("O_RDWR", 2),
    ("O_CREAT", 0o100),
    ("O_EXCL", 0o200),
    ("O_NOCTTY", 0o400),
    ("O_TRUNC", 0o1000),
    ("O_APPEND", 0o2000),
    ("O_NONBLOCK", 0o4000),
    ("O_DSYNC", 0o10000),
    ("O_ASYNC", 0o20000),
    ("O_DIRECT", 0o40000),
    ("O_DIRECTORY", 0o200000),
    ("O_NOFOLLOW", 0o400000),
    ("O_CLOEXEC", 0o2000000),
    ("O_SYNC", 0o4010000),
];

fn flag_value(name: &str) -> Result<i32, String> {
    FLAGS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| *v)
        .ok_or_else(|| format!("fio.open(): unknown flag: {name}"))
}

fn parse_flags(v: &Value) -> Result<i32, String> {
    match v {
        Value::Nil => Ok(0),
        Value::Integer(i) => Ok(*i as i32),
        Value::Number(n) => Ok(*n as i32),
        Value::String(s) => flag_value(&s.to_string_lossy()),
        Value::Table(t) => {
            let mut flags = 0;
            for item in t.sequence_values::<Value>() {
                flags |= parse_flags(&item.map_err(|e| super::message(&e))?)?;
            }
            Ok(flags)
        }
        _ => Err("fio.open(): bad flags".into()),
    }
}

fn open(path: &str, flags: i32, mode: u32) -> std::io::Result<File> {
    let mut o = OpenOptions::new();
    match flags & 3 {
        0 => o.read(true),
        1 => o.write(true),
        _ => o.read(true).write(true),
    };
    // Creation, truncation and the rest go to open(2) as they are.
    o.custom_flags(flags & !3).mode(mode).open(path)
}

/// An open file.
struct Handle {
    file: Option<File>,
}

impl Handle {
    fn file(&mut self) -> std::io::Result<&mut File> {
        self.file.as_mut().ok_or_else(bad_fd)
    }

    fn read(&mut self, n: Option<usize>) -> std::io::Result<Vec<u8>> {
        let f = self.file()?;
        let mut buf = Vec::new();
        match n {
            Some(n) => {
                Read::by_ref(f).take(n as u64).read_to_end(&mut buf)?;
            }
            None => {
                f.read_to_end(&mut buf)?;
            }
        }
        Ok(buf)
    }

    fn pread(&mut self, n: usize, offset: u64) -> std::io::Result<Vec<u8>> {
        let f = self.file()?;
        let mut buf = vec![0u8; n];
        let mut got = 0;
        while got < n {
            let k = f.read_at(&mut buf[got..], offset + got as u64)?;
            if k == 0 {
                break;
            }
            got += k;
        }
        buf.truncate(got);
        Ok(buf)
    }
}

fn whence(v: Option<Value>, offset: i64) -> Result<SeekFrom, String> {
    let name = match v {
        None | Some(Value::Nil) => return Ok(SeekFrom::Start(offset.max(0) as u64)),
        Some(Value::String(s)) => s.to_string_lossy(),
        Some(Value::Integer(i)) => ["SEEK_SET", "SEEK_CUR", "SEEK_END"]
            .get(i as usize)
            .map_or_else(String::new, |s| s.to_string()),
        Some(_) => String::new(),
    };
    match name.as_str() {
        "SEEK_SET" => Ok(SeekFrom::Start(offset.max(0) as u64)),
        "SEEK_CUR" => Ok(SeekFrom::Current(offset)),
        "SEEK_END" => Ok(SeekFrom::End(offset)),
        other => Err(format!("fio.seek(): unknown whence: {other}")),
    }
}

impl UserData for Handle {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method_mut("read", |lua, h, n: Option<usize>| {
            let r = h.read(n).and_then(|b| {
                lua.create_string(b)
                    .map_err(|e| std::io::Error::other(e.to_string()))
            });
            or_nil(lua, r)
        });
        methods.add_method_mut("pread", |lua, h, (n, offset): (usize, u64)| {
            let r = h.pread(n, offset).and_then(|b| {
                lua.create_string(b)
                    .map_err(|e| std::io::Error::other(e.to_string()))
            });
            or_nil(lua, r)
        });
        methods.add_method_mut("write", |lua, h, data: mlua::String| {
            let r = h.file().and_then(|f| f.write_all(&data.as_bytes()));
            ok_or_false(lua, r)
        });
        methods.add_method_mut("pwrite", |lua, h, (data, offset): (mlua::String, u64)| {
            let r = h
                .file()
                .and_then(|f| f.write_all_at(&data.as_bytes(), offset));
            ok_or_false(lua, r)
        });
        methods.add_method_mut(
            "seek",
            |lua, h, (offset, how): (Option<i64>, Option<Value>)| {
                let from = whence(how, offset.unwrap_or(0)).map_err(mlua::Error::runtime)?;
                let r = h.file().and_then(|f| f.seek(from));
                or_nil(lua, r)
            },
        );
        methods.add_method_mut("truncate", |lua, h, len: Option<u64>| {
            let r = h.file().and_then(|f| f.set_len(len.unwrap_or(0)));
            ok_or_false(lua, r)
        });
        methods.add_method_mut("fsync", |lua, h, ()| {
            let r = h.file().and_then(|f| f.sync_all());
            ok_or_false(lua, r)
        });
        methods.add_method_mut("fdatasync", |lua, h, ()| {
            let r = h.file().and_then(|f| f.sync_data());
            ok_or_false(lua, r)
        });
        methods.add_method_mut("stat", |lua, h, ()| {
            match h.file().and_then(|f| f.metadata()) {
                Ok(m) => stat_table(lua, &m)?.into_lua_multi(lua),
                Err(e) => (Value::Nil, fio_error(&e)).into_lua_multi(lua),
            }
        });
        methods.add_method_mut("close", |lua, h, ()| {
            let r = match h.file.take() {
                Some(_) => Ok(()),
                None => Err(bad_fd()),
            };
            ok_or_false(lua, r)
        });
        methods.add_meta_method(mlua::MetaMethod::ToString, |_, h, ()| {
            Ok(match &h.file {
                Some(_) => "fio: file handle".to_string(),
                None => "fio: closed file handle".to_string(),
            })
        });
    }
}

const STAT_LUA: &str = r#"
local S_IFMT = 0xF000
local function kind(bits) return function(st) return bit.band(st.mode, S_IFMT) == bits end end
local mt = {__index = {
    is_reg = kind(0x8000), is_dir = kind(0x4000), is_chr = kind(0x2000),
    is_blk = kind(0x6000), is_fifo = kind(0x1000), is_link = kind(0xA000),
    is_sock = kind(0xC000),
}}
return function(t) return setmetatable(t, mt) end
"#;

fn stat_table(lua: &Lua, m: &fs::Metadata) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    let fields: [(&str, f64); 13] = [
        ("dev", m.dev() as f64),
        ("inode", m.ino() as f64),
        ("mode", f64::from(m.mode())),
        ("nlink", m.nlink() as f64),
        ("uid", f64::from(m.uid())),
        ("gid", f64::from(m.gid())),
        ("rdev", m.rdev() as f64),
        ("size", m.size() as f64),
        ("blksize", m.blksize() as f64),
        ("blocks", m.blocks() as f64),
        ("atime", m.atime() as f64 + m.atime_nsec() as f64 / 1e9),
        ("mtime", m.mtime() as f64 + m.mtime_nsec() as f64 / 1e9),
        ("ctime", m.ctime() as f64 + m.ctime_nsec() as f64 / 1e9),
    ];
    for (k, v) in fields {
        t.raw_set(k, v)?;
    }
    let make: mlua::Function = match lua.named_registry_value("spindle.fio.stat") {
        Ok(f) => f,
        Err(_) => {
            let f: mlua::Function = lua.load(STAT_LUA).set_name("=fio.stat").call(())?;
            lua.set_named_registry_value("spindle.fio.stat", f.clone())?;
            f
        }
    };
    make.call(t)
}

fn pathjoin(parts: &[String]) -> String {
    let joined = parts.join("/");
    let mut out = String::with_capacity(joined.len());
    for c in joined.chars() {
        if c == '/' && out.ends_with('/') {
            continue;
        }
        out.push(c);
    }
    while out.len() > 1 && out.ends_with('/') {
        out.pop();
    }
    out
}

fn basename(path: &str, suffix: Option<&str>) -> String {
    let base = path.rsplit('/').next().unwrap_or("");
    match suffix {
        Some(s) if !s.is_empty() && base.ends_with(s) => base[..base.len() - s.len()].to_string(),
        _ => base.to_string(),
    }
}

/// dirname(3).
fn dirname(path: &str) -> String {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        return if path.starts_with('/') { "/" } else { "." }.to_string();
    }
    match trimmed.rfind('/') {
        None => ".".to_string(),
        Some(i) => {
            let dir = trimmed[..i].trim_end_matches('/');
            if dir.is_empty() { "/" } else { dir }.to_string()
        }
    }
}

/// The absolute, lexically normalized form of `path` (no symlinks resolved).
fn abspath(path: &str) -> std::io::Result<String> {
    let full = if path.starts_with('/') {
        PathBuf::from(path)
    } else {
        std::env::current_dir()?.join(path)
    };
    let mut out = PathBuf::from("/");
    for c in full.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    Ok(out.to_string_lossy().into_owned())
}

fn listdir(path: &str) -> std::io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in fs::read_dir(path)? {
        names.push(entry?.file_name().to_string_lossy().into_owned());
    }
    Ok(names)
}

fn mktree(path: &str, mode: u32) -> std::io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(path)
}

fn tempdir() -> std::io::Result<String> {
    let base = std::env::temp_dir();
    for _ in 0..100 {
        let name = format!("spindle{:08x}", rand::random::<u32>());
        let path = base.join(name);
        match fs::DirBuilder::new().mode(0o700).create(&path) {
            Ok(()) => return Ok(path.to_string_lossy().into_owned()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::from_raw_os_error(17))
}

fn glob_paths(pattern: &str) -> Result<Vec<String>, String> {
    let paths = glob::glob(pattern).map_err(|e| format!("fio: {e}"))?;
    let mut out: Vec<String> = paths
        .filter_map(Result::ok)
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    out.sort();
    Ok(out)
}

fn exists(p: &str, follow: bool) -> Option<fs::Metadata> {
    if follow {
        fs::metadata(p).ok()
    } else {
        fs::symlink_metadata(p).ok()
    }
}

fn add_path_predicates(lua: &Lua, m: &Table) -> mlua::Result<()> {
    let path = lua.create_table()?;
    type Check = fn(&fs::Metadata) -> bool;
    let checks: [(&str, bool, Check); 5] = [
        ("exists", true, |_| true),
        ("lexists", false, |_| true),
        ("is_dir", true, |m| m.is_dir()),
        ("is_file", true, |m| m.is_file()),
        ("is_link", false, |m| m.file_type().is_symlink()),
    ];
    for (name, follow, check) in checks {
        path.set(
            name,
            lua.create_function(move |_, p: String| {
                Ok(exists(&p, follow).is_some_and(|m| check(&m)))
            })?,
        )?;
    }
    m.set("path", path)
}

fn add_constants(lua: &Lua, m: &Table) -> mlua::Result<()> {
    let c = lua.create_table()?;
    let flag = lua.create_table()?;
    for (name, v) in FLAGS {
        flag.set(name, v)?;
    }
    c.set("flag", flag)?;
    let seek = lua.create_table()?;
    for (i, name) in ["SEEK_SET", "SEEK_CUR", "SEEK_END"].iter().enumerate() {
        seek.set(*name, i)?;
    }
    c.set("seek", seek)?;
    let mode = lua.create_table()?;
    for (name, v) in [
        ("S_IRWXU", 0o700),
        ("S_IRUSR", 0o400),
        ("S_IWUSR", 0o200),
        ("S_IXUSR", 0o100),
        ("S_IRWXG", 0o70),
        ("S_IRGRP", 0o40),
        ("S_IWGRP", 0o20),
        ("S_IXGRP", 0o10),
        ("S_IRWXO", 0o7),
        ("S_IROTH", 0o4),
        ("S_IWOTH", 0o2),
        ("S_IXOTH", 0o1),
    ] {
        mode.set(name, v)?;
    }
    c.set("mode", mode)?;
    m.set("c", c)
}

fn module(lua: &Lua) -> mlua::Result<Table> {
    let m = lua.create_table()?;
    m.set(
        "open",
        super::function(
            lua,
            |lua, (path, flags, mode): (String, Value, Option<u32>)| {
                let flags = parse_flags(&flags)?;
                let r = open(&path, flags, mode.unwrap_or(0o777)).and_then(|f| {
                    lua.create_userdata(Handle { file: Some(f) })
                        .map_err(|e| std::io::Error::other(e.to_string()))
                });
                or_nil(lua, r).map_err(|e| super::message(&e))
            },
        )?,
    )?;
    m.set(
        "pathjoin",
        lua.create_function(|_, parts: mlua::Variadic<String>| Ok(pathjoin(&parts)))?,
    )?;
    m.set(
        "basename",
        lua.create_function(|_, (p, suffix): (Option<String>, Option<String>)| {
            Ok(p.map(|p| basename(&p, suffix.as_deref())))
        })?,
    )?;
    m.set(
        "dirname",
        lua.create_function(|_, p: Option<String>| Ok(p.map(|p| dirname(&p))))?,
    )?;
    m.set(
        "abspath",
        lua.create_function(|lua, p: String| or_nil(lua, abspath(&p)))?,
    )?;
    add_path_predicates(lua, &m)?;
    add_constants(lua, &m)?;
    m.set(
        "stat",
        lua.create_function(|lua, p: String| match fs::metadata(&p) {
            Ok(md) => stat_table(lua, &md)?.into_lua_multi(lua),
            Err(e) => (Value::Nil, fio_error(&e)).into_lua_multi(lua),
        })?,
    )?;
    m.set(
        "lstat",
        lua.create_function(|lua, p: String| match fs::symlink_metadata(&p) {
            Ok(md) => stat_table(lua, &md)?.into_lua_multi(lua),
            Err(e) => (Value::Nil, fio_error(&e)).into_lua_multi(lua),
        })?,
    )?;
    m.set(
        "mkdir",
        lua.create_function(|lua, (p, mode): (String, Option<u32>)| {
            let r = fs::DirBuilder::new().mode(mode.unwrap_or(0o777)).create(&p);
            ok_or_false(lua, r)
        })?,
    )?;
    m.set(
        "mktree",
        lua.create_function(|lua, (p, mode): (String, Option<u32>)| {
            ok_or_false(lua, mktree(&p, mode.unwrap_or(0o777)))
        })?,
    )?;
    type PathOp = fn(&str) -> std::io::Result<()>;
    let ops: [(&str, PathOp); 3] = [
        ("rmdir", |p| fs::remove_dir(p)),
        ("unlink", |p| fs::remove_file(p)),
        ("rmtree", |p| fs::remove_dir_all(p)),
    ];
    for (name, op) in ops {
        m.set(
            name,
            lua.create_function(move |lua, p: String| ok_or_false(lua, op(&p)))?,
        )?;
    }
    type PairOp = fn(&str, &str) -> std::io::Result<()>;
    let pair_ops: [(&str, PairOp); 4] = [
        ("rename", |a, b| fs::rename(a, b)),
        ("symlink", |a, b| std::os::unix::fs::symlink(a, b)),
        ("link", |a, b| fs::hard_link(a, b)),
        ("copyfile", |a, b| fs::copy(a, b).map(|_| ())),
    ];
    for (name, op) in pair_ops {
        m.set(
            name,
            lua.create_function(move |lua, (a, b): (String, String)| ok_or_false(lua, op(&a, &b)))?,
        )?;
    }
    m.set(
        "readlink",
        lua.create_function(|lua, p: String| {
            or_nil(
                lua,
                fs::read_link(&p).map(|t| t.to_string_lossy().into_owned()),
            )
        })?,
    )?;
    m.set(
        "chmod",
        lua.create_function(|lua, (p, mode): (String, u32)| {
            ok_or_false(
                lua,
                fs::set_permissions(&p, fs::Permissions::from_mode(mode)),
            )
        })?,
    )?;
    m.set(
        "truncate",
        lua.create_function(|lua, (p, len): (String, Option<u64>)| {
            let r = OpenOptions::new()
                .write(true)
                .open(&p)
                .and_then(|f| f.set_len(len.unwrap_or(0)));
            ok_or_false(lua, r)
        })?,
    )?;
    m.set(
        "listdir",
        lua.create_function(|lua, p: String| or_nil(lua, listdir(&p)))?,
    )?;
    m.set(
        "glob",
        super::function(lua, |_, pattern: String| glob_paths(&pattern))?,
    )?;
    m.set(
        "tempdir",
        lua.create_function(|lua, ()| or_nil(lua, tempdir()))?,
    )?;
    m.set(
        "cwd",
        lua.create_function(|lua, ()| {
            or_nil(
                lua,
                std::env::current_dir().map(|p| p.to_string_lossy().into_owned()),
            )
        })?,
    )?;
    m.set(
        "chdir",
        lua.create_function(|_, p: String| Ok(std::env::set_current_dir(Path::new(&p)).is_ok()))?,
    )?;
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_helpers_follow_tarantool() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(pathjoin(&s(&["a", "b", "/c/", "d/"])), "a/b/c/d");
        assert_eq!(pathjoin(&s(&["/", "a"])), "/a");
        assert_eq!(pathjoin(&s(&["a//b", ""])), "a/b");
        assert_eq!(basename("/a/b.txt", Some(".txt")), "b");
        assert_eq!(basename("/a/b/", None), "");
        assert_eq!(dirname("/a/b.txt"), "/a");
        assert_eq!(dirname("b.txt"), ".");
        assert_eq!(dirname("/"), "/");
        assert_eq!(dirname("/a/b/"), "/a");
        assert_eq!(abspath("/a/../b").ok().as_deref(), Some("/b"));
    }
}
