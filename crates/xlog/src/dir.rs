//! Finding log files in a directory (spec §2.1).

use std::io;
use std::path::{Path, PathBuf};

use crate::format::FileType;
use crate::fs::LogFs;

/// The files of `filetype` in `dir` as `(signature, path)`, ascending by signature. Only
/// names that are exactly `<digits>.<ext>` count, so `N.xlog.inprogress` and
/// `N.xlog.corrupted` are ignored, as Tarantool's directory index does.
pub fn scan_dir<Fs: LogFs + ?Sized>(
    fs: &Fs,
    dir: &Path,
    filetype: FileType,
) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut files: Vec<(u64, PathBuf)> = fs
        .list(dir)?
        .into_iter()
        .filter_map(|path| {
            let name = path.file_name()?.to_str()?;
            Some((parse_file_name(name, filetype)?, path))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// The signature encoded in a file name, if the name is `<digits>.<ext>` for `filetype`.
pub fn parse_file_name(name: &str, filetype: FileType) -> Option<u64> {
    let (digits, ext) = name.split_once('.')?;
    if ext != filetype.extension() || digits.is_empty() {
        return None;
    }
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::OsFs;

    #[test]
    fn names_are_matched_exactly() {
        let x = FileType::Xlog;
        assert_eq!(parse_file_name("00000000000000000013.xlog", x), Some(13));
        assert_eq!(parse_file_name("7.xlog", x), Some(7));
        for bad in [
            "13.xlog.inprogress",
            "13.xlog.corrupted",
            "13.snap",
            ".xlog",
            "1a.xlog",
            "+1.xlog",
            "99999999999999999999999.xlog",
            "13.XLOG",
        ] {
            assert_eq!(parse_file_name(bad, x), None, "{bad}");
        }
        assert_eq!(
            parse_file_name("00000000000000000005.snap", FileType::Snap),
            Some(5)
        );
    }

    #[test]
    fn scan_sorts_and_filters() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "00000000000000000010.xlog",
            "00000000000000000002.xlog",
            "00000000000000000011.xlog.inprogress",
            "00000000000000000005.snap",
            "junk.txt",
        ] {
            std::fs::write(dir.path().join(name), b"").unwrap();
        }
        let xlogs = scan_dir(&OsFs, dir.path(), FileType::Xlog).unwrap();
        let sigs: Vec<u64> = xlogs.iter().map(|(s, _)| *s).collect();
        assert_eq!(sigs, [2, 10]);
        assert!(xlogs[1].1.ends_with("00000000000000000010.xlog"));
        let snaps = scan_dir(&OsFs, dir.path(), FileType::Snap).unwrap();
        assert_eq!(snaps.len(), 1);
    }
}
