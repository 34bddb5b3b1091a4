//! The text header ("meta") at the start of every file (spec §2.2).

use crate::error::{XlogError, XlogResult};
use crate::format::{
    FileType, META_FILETYPE_LEN_MAX, META_LEN_MAX, META_VERSION, META_VERSIONS_ACCEPTED,
    SERVER_VERSION,
};
use crate::vclock::Vclock;

/// Instance UUID used when a header has no `Instance:` line.
const NIL_UUID: &str = "00000000-0000-0000-0000-000000000000";

/// The decoded text header.
#[derive(Clone, Debug, PartialEq)]
pub struct Meta {
    pub filetype: FileType,
    /// The informational `Version:` line (the server that wrote the file). The format version
    /// line is always written as `0.13`; `0.12` and `0.13` are accepted on read.
    pub version: String,
    /// 36-character lowercase UUID of the instance that wrote the file.
    pub instance_uuid: String,
    /// The vclock at file creation; its signature is the file name.
    pub vclock: Vclock,
    /// XLOG only: the previous xlog's header vclock; `None` for the first xlog in a directory.
    pub prev_vclock: Option<Vclock>,
}

impl Meta {
    /// A header written by this server, without `PrevVClock`.
    pub fn new(filetype: FileType, instance_uuid: impl Into<String>, vclock: Vclock) -> Meta {
        Meta {
            filetype,
            version: SERVER_VERSION.to_string(),
            instance_uuid: instance_uuid.into(),
            vclock,
            prev_vclock: None,
        }
    }

    /// Appends the header, ending with the empty line. `PrevVClock` is written for XLOG
    /// only: Tarantool never writes it in a snapshot.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut text = format!(
            "{}\n{}\nVersion: {}\nInstance: {}\nVClock: {}\n",
            self.filetype.header_name(),
            META_VERSION,
            self.version,
            self.instance_uuid,
            self.vclock
        );
        if let (FileType::Xlog, Some(prev)) = (self.filetype, &self.prev_vclock) {
            text.push_str(&format!("PrevVClock: {prev}\n"));
        }
        text.push('\n');
        // Even 32 maximal components in both vclocks fit; only a huge `version` could not.
        assert!(
            text.len() <= META_LEN_MAX,
            "meta header of {} bytes is too long",
            text.len()
        );
        out.extend_from_slice(text.as_bytes());
    }

    /// Parses the header at the start of `data`; returns it with its length in bytes
    /// (including the terminating empty line), i.e. the offset of the first block.
    pub fn parse(data: &[u8]) -> XlogResult<(Meta, usize)> {
        let end = find_header_end(data)?;
        let text = data.get(..end).unwrap_or_default();
        let text = std::str::from_utf8(text).map_err(|_| XlogError::bad_meta("not UTF-8"))?;
        let mut lines = text.split('\n');
        let filetype = parse_filetype(lines.next().unwrap_or_default())?;
        let version = lines.next().unwrap_or_default();
        if !META_VERSIONS_ACCEPTED.contains(&version) {
            return Err(XlogError::bad_meta(format!(
                "unsupported format version {version:?}"
            )));
        }
        let mut meta = Meta::new(filetype, NIL_UUID, Vclock::new());
        meta.version = String::new();
        for line in lines.filter(|l| !l.is_empty()) {
            parse_key_line(&mut meta, line)?;
        }
        Ok((meta, end + 2))
    }
}

/// Offset of the first "\n\n"; the header must end within the first `META_LEN_MAX` bytes.
fn find_header_end(data: &[u8]) -> XlogResult<usize> {
    let window = data.get(..META_LEN_MAX.min(data.len())).unwrap_or_default();
    window.windows(2).position(|w| w == b"\n\n").ok_or_else(|| {
        if data.len() < META_LEN_MAX {
            XlogError::bad_meta("file ends inside the header")
        } else {
            XlogError::bad_meta("no end of header")
        }
    })
}

fn parse_filetype(line: &str) -> XlogResult<FileType> {
    if line.len() > META_FILETYPE_LEN_MAX {
        return Err(XlogError::bad_meta("filetype line too long"));
    }
    FileType::from_header_name(line)
        .ok_or_else(|| XlogError::bad_meta(format!("unsupported filetype {line:?}")))
}

fn parse_key_line(meta: &mut Meta, line: &str) -> XlogResult<()> {
    let (k, v) = line
        .split_once(':')
        .ok_or_else(|| XlogError::bad_meta(format!("can't parse line {line:?}")))?;
    let v = v.trim_start_matches([' ', '\t']);
    match k {
        // "Server" is the pre-1.7 name of the same key.
        "Instance" | "Server" => meta.instance_uuid = parse_uuid(v)?,
        "VClock" => meta.vclock = Vclock::parse_text(v).map_err(vclock_in_meta)?,
        "PrevVClock" => meta.prev_vclock = Some(Vclock::parse_text(v).map_err(vclock_in_meta)?),
        "Version" => meta.version = v.to_string(),
        _ => {} // Tarantool only warns about unknown keys.
    }
    Ok(())
}

fn parse_uuid(text: &str) -> XlogResult<String> {
    let text = text.trim_end_matches([' ', '\t']);
    match uuid::Uuid::parse_str(text) {
        Ok(u) if text.len() == 36 => Ok(u.hyphenated().to_string()),
        _ => Err(XlogError::bad_meta(format!(
            "invalid instance UUID {text:?}"
        ))),
    }
}

fn vclock_in_meta(e: XlogError) -> XlogError {
    XlogError::bad_meta(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const REAL_HEADER: &str = "XLOG\n0.13\nVersion: 2.6.0-0-g47aa4e01e\n\
        Instance: db035f73-1308-4bcf-9ed2-a1555ae67ad0\nVClock: {0: 1, 1: 316}\n\
        PrevVClock: {}\n\n";

    #[test]
    fn parses_a_real_header() {
        let mut data = REAL_HEADER.as_bytes().to_vec();
        data.extend_from_slice(&[0xd5, 0xba, 0x0b, 0xab]);
        let (meta, len) = Meta::parse(&data).unwrap();
        assert_eq!(len, REAL_HEADER.len());
        assert_eq!(meta.filetype, FileType::Xlog);
        assert_eq!(meta.version, "2.6.0-0-g47aa4e01e");
        assert_eq!(meta.instance_uuid, "db035f73-1308-4bcf-9ed2-a1555ae67ad0");
        assert_eq!(meta.vclock.to_string(), "{0: 1, 1: 316}");
        assert_eq!(meta.vclock.signature(), 317);
        assert_eq!(meta.prev_vclock, Some(Vclock::new()));
        let mut out = Vec::new();
        meta.encode(&mut out);
        assert_eq!(out, REAL_HEADER.as_bytes(), "encode is the exact inverse");
    }

    #[test]
    fn snapshots_never_write_prev_vclock() {
        let mut meta = Meta::new(FileType::Snap, NIL_UUID, Vclock::new());
        meta.prev_vclock = Some(Vclock::new());
        let mut out = Vec::new();
        meta.encode(&mut out);
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(text.starts_with("SNAP\n0.13\nVersion: spindle-"));
        assert!(!text.contains("PrevVClock"));
        let (parsed, len) = Meta::parse(&out).unwrap();
        assert_eq!(len, out.len());
        assert_eq!(parsed.prev_vclock, None);
    }

    #[test]
    fn reader_rules() {
        let ok = "SNAP\n0.12\nServer: DB035F73-1308-4BCF-9ED2-A1555AE67AD0\nFoo: bar\n\
                  VClock:\t{1: 2}\n\n";
        let (meta, _) = Meta::parse(ok.as_bytes()).unwrap();
        assert_eq!(meta.instance_uuid, "db035f73-1308-4bcf-9ed2-a1555ae67ad0");
        assert_eq!(meta.vclock.get(1), 2);
        for bad in [
            "XLOG\n0.11\n\n",
            "VYLOG\n0.13\n\n",
            "XLOGXLOGXLOG\n0.13\n\n",
            "XLOG\n0.13\nVClock: {1: x}\n\n",
            "XLOG\n0.13\nInstance: nope\n\n",
            "XLOG\n0.13\nno colon\n\n",
            "XLOG\n0.13\nVClock: {}\n",
            "",
        ] {
            assert!(
                matches!(Meta::parse(bad.as_bytes()), Err(XlogError::BadMeta { .. })),
                "{bad:?}"
            );
        }
    }
}
