//! Writer and reader together: round trips, truncation, corruption, faults.

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use spindle_types::limits::WAL_BLOCK_BYTES_MAX;

use crate::block::BlockEncoder;
use crate::error::XlogError;
use crate::format::{FileType, EOF_MARKER, FIXHEADER_SIZE, ZROW_MAGIC};
use crate::meta::Meta;
use crate::reader::{Block, XlogReader};
use crate::row::{encode_row, Row};
use crate::testutil::{txn, MemFs};
use crate::vclock::Vclock;
use crate::writer::XlogWriter;

const UUID: &str = "db035f73-1308-4bcf-9ed2-a1555ae67ad0";

fn dir() -> PathBuf {
    PathBuf::from("/wal")
}

fn xlog_meta(start_lsn: u64) -> Meta {
    let mut vclock = Vclock::new();
    vclock.set(1, start_lsn);
    Meta::new(FileType::Xlog, UUID, vclock)
}

/// Writes `txns` (one flush per group of `per_flush`) and closes; returns the file bytes.
fn write_file(txns: &[Vec<Row>], per_flush: usize) -> Vec<u8> {
    let fs = MemFs::default();
    let mut w = XlogWriter::create(fs.clone(), &dir(), xlog_meta(0)).unwrap();
    for group in txns.chunks(per_flush.max(1)) {
        for t in group {
            w.append_txn(t);
        }
        w.flush().unwrap();
    }
    let path = w.close().unwrap();
    fs.contents(&path).unwrap()
}

/// Reads rows until the first error or the end; returns them with the outcome.
fn read_rows(data: Vec<u8>) -> (Vec<Row>, Result<bool, XlogError>) {
    let mut r = match XlogReader::new(data) {
        Ok(r) => r,
        Err(e) => return (Vec::new(), Err(e)),
    };
    let mut rows = Vec::new();
    loop {
        match r.next_row() {
            Ok(Some(row)) => rows.push(row),
            Ok(None) => return (rows, Ok(r.has_eof_marker())),
            Err(e) => return (rows, Err(e)),
        }
    }
}

fn read_blocks(data: Vec<u8>) -> Vec<Block> {
    let mut r = XlogReader::new(data).unwrap();
    let mut blocks = Vec::new();
    while let Some(b) = r.next_block().unwrap() {
        blocks.push(b);
    }
    assert!(r.has_eof_marker());
    blocks
}

fn sample_txns() -> Vec<Vec<Row>> {
    vec![
        txn(1, 1, 3),
        txn(2, 3, 5),
        txn(5, 1, 3000),
        txn(6, 2, 1),
        txn(8, 1, 0),
    ]
}

#[test]
fn rows_round_trip_through_a_file() {
    let txns = sample_txns();
    let data = write_file(&txns, 2);
    let (rows, end) = read_rows(data.clone());
    assert_eq!(rows, txns.concat());
    assert!(end.unwrap(), "closed file has the EOF marker");
    assert!(data.ends_with(&EOF_MARKER));
    let blocks = read_blocks(data);
    assert_eq!(blocks.len(), 3, "one block per flush");
    assert!(blocks[1].compressed, "the 3000-byte row forces zstd");
    assert!(!blocks[0].compressed);
    assert!(blocks.windows(2).all(|w| w[0].offset < w[1].offset));
}

#[test]
fn xlog_is_renamed_at_creation_and_names_follow_the_signature() {
    let fs = MemFs::default();
    let mut meta = xlog_meta(12);
    meta.vclock.set(0, 1);
    let w = XlogWriter::create(fs.clone(), &dir(), meta.clone()).unwrap();
    let expected = dir().join("00000000000000000013.xlog");
    assert_eq!(w.path(), expected);
    assert!(fs.contents(&expected).is_some());
    assert!(
        XlogWriter::create(fs.clone(), &dir(), meta).is_err(),
        "never over an existing file"
    );
    assert_eq!(w.close().unwrap(), expected);
    let (parsed, len) = Meta::parse(&fs.contents(&expected).unwrap()).unwrap();
    assert_eq!(parsed.vclock.to_string(), "{0: 1, 1: 12}");
    assert_eq!(
        fs.contents(&expected).unwrap().len(),
        len + EOF_MARKER.len()
    );
}

#[test]
fn snapshot_stays_inprogress_until_close() {
    let fs = MemFs::default();
    let meta = Meta::new(FileType::Snap, UUID, xlog_meta(7).vclock);
    let mut w = XlogWriter::create(fs.clone(), &dir(), meta).unwrap();
    let tmp = dir().join("00000000000000000007.snap.inprogress");
    assert_eq!(w.path(), tmp);
    // Autocommit mode writes a block each time 128 KiB of rows are buffered.
    let row_count = 300;
    let mut writes = 0;
    for (n, row) in txn(1, row_count, 1000).into_iter().enumerate() {
        let mut row = row;
        row.header.is_commit = true;
        row.header.tsn = row.header.lsn;
        let before = w.offset();
        w.append_row(&row).unwrap();
        writes += usize::from(w.offset() != before);
        assert!(
            w.pending_bytes() < WAL_BLOCK_BYTES_MAX,
            "row {n} left the buffer full"
        );
    }
    assert_eq!(
        writes, 2,
        "~300 KiB of rows: two 128 KiB blocks written before close"
    );
    let done = w.close().unwrap();
    assert_eq!(done, dir().join("00000000000000000007.snap"));
    assert!(fs.contents(&tmp).is_none());
    let data = fs.contents(&done).unwrap();
    let mut r = XlogReader::with_type(data.clone(), FileType::Snap).unwrap();
    let mut count = 0;
    while r.next_row().unwrap().is_some() {
        count += 1;
    }
    assert_eq!(count, row_count);
    assert!(r.has_eof_marker());
    assert!(
        XlogReader::with_type(data.clone(), FileType::Xlog).is_err(),
        "filetype must match"
    );
    let blocks = read_blocks(data);
    assert_eq!(blocks.len(), 3);
    assert!(blocks.iter().all(|b| b.compressed));
}

#[test]
fn group_commit_splits_blocks_only_at_txn_boundaries() {
    // 40 transactions of 3 rows of ~2 KiB: 240 KiB in one flush -> two blocks.
    let txns: Vec<Vec<Row>> = (0..40).map(|i| txn(1 + 3 * i, 3, 2000)).collect();
    let data = write_file(&txns, txns.len());
    let blocks = read_blocks(data);
    assert_eq!(blocks.len(), 2);
    for b in &blocks {
        assert!(
            b.rows.last().unwrap().header.is_commit,
            "block ends a transaction"
        );
        assert!(b.compressed);
    }
    let total: usize = blocks.iter().map(|b| b.rows.len()).sum();
    assert_eq!(total, 120);

    // One transaction larger than the limit stays one block.
    let big = vec![txn(1, 100, 2000)];
    assert_eq!(read_blocks(write_file(&big, 1)).len(), 1);
}

#[test]
fn every_truncation_is_a_torn_tail_never_corruption() {
    let txns = sample_txns();
    let all_rows = txns.concat();
    let data = write_file(&txns, 1);
    let header_len = XlogReader::new(data.clone()).unwrap().header_len() as usize;
    let boundaries: Vec<u64> = read_blocks(data.clone()).iter().map(|b| b.offset).collect();
    for cut in 0..data.len() {
        let (rows, end) = read_rows(data[..cut].to_vec());
        assert_eq!(
            rows[..],
            all_rows[..rows.len()],
            "cut {cut}: rows must be a prefix"
        );
        match end {
            Err(XlogError::BadMeta { .. }) => assert!(cut < header_len, "cut {cut}"),
            Err(XlogError::TornTail { offset }) => {
                assert!(
                    offset as usize >= header_len && (offset as usize) < cut,
                    "cut {cut}"
                );
            }
            Ok(false) => {
                let at_boundary = cut == header_len || boundaries.contains(&(cut as u64));
                assert!(
                    at_boundary || cut == data.len() - 4,
                    "cut {cut} ended cleanly mid-block"
                );
            }
            other => panic!("cut {cut}: unexpected {other:?}"),
        }
        // Whole transactions only: a torn tail never leaves half a transaction.
        if let Some(last) = rows.last() {
            assert!(last.header.is_commit, "cut {cut}");
        }
    }
}

/// Offsets inside a block whose damage the format detects: the magic, the CRC, the padding
/// header and the payload. Not the length (a length pointing past the end of the file is
/// indistinguishable from a torn tail, in Tarantool too), not CRC32P and not the padding
/// bytes, which are never checked.
fn checked_bytes(data: &[u8], start: usize, end: usize) -> Vec<usize> {
    let mut cur = &data[start + 4..start + FIXHEADER_SIZE];
    let full = cur.len();
    spindle_proto::mp::read_uint(&mut cur).unwrap();
    spindle_proto::mp::read_uint(&mut cur).unwrap();
    let crc_at = start + 4 + full - cur.len();
    spindle_proto::mp::read_uint(&mut cur).unwrap();
    let pad_at = start + 4 + full - cur.len();
    (start..start + 4)
        .chain(crc_at..=pad_at)
        .chain(start + FIXHEADER_SIZE..end)
        .collect()
}

#[test]
fn flipped_bytes_are_corruption_at_the_right_offset() {
    let txns = sample_txns();
    let data = write_file(&txns, 1);
    let blocks = read_blocks(data.clone());
    for victim in 1..=2 {
        let start = blocks[victim].offset as usize;
        let end = blocks[victim + 1].offset as usize;
        let rows_before: usize = blocks[..victim].iter().map(|b| b.rows.len()).sum();
        for pos in checked_bytes(&data, start, end) {
            let mut bad = data.clone();
            bad[pos] ^= 0x10;
            let (rows, end) = read_rows(bad);
            match end {
                Err(XlogError::Corrupt { offset, .. }) => assert_eq!(offset, start as u64),
                other => panic!("flip at {pos}: {other:?}"),
            }
            assert_eq!(rows.len(), rows_before, "flip at {pos}");
        }
    }
    assert!(
        blocks[2].compressed,
        "both a plain and a zstd block were damaged"
    );
}

#[test]
fn resync_skips_a_damaged_block() {
    let txns = sample_txns();
    let data = write_file(&txns, 1);
    let blocks = read_blocks(data.clone());
    let mut bad = data.clone();
    let payload_at = blocks[1].offset as usize + FIXHEADER_SIZE + 3;
    bad[payload_at] ^= 0xff;
    let mut r = XlogReader::new(bad).unwrap();
    let mut rows = Vec::new();
    let mut skipped = Vec::new();
    loop {
        match r.next_row() {
            Ok(Some(row)) => rows.push(row.header.lsn),
            Ok(None) => break,
            Err(XlogError::Corrupt { offset, .. }) => {
                skipped.push(offset);
                assert!(r.next_row().is_err(), "errors are sticky");
                assert_eq!(r.resync(), Some(blocks[2].offset));
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(skipped, [blocks[1].offset]);
    assert_eq!(
        rows,
        [1, 5, 6, 7, 8],
        "the 3-row transaction 2..4 is lost, nothing else"
    );
    assert!(r.has_eof_marker());
}

#[test]
fn an_undecodable_row_in_a_good_block_skips_the_rest_of_that_block() {
    let mut payload = Vec::new();
    encode_row(&txn(1, 1, 1)[0], &mut payload);
    payload.extend_from_slice(&[0x81, 0xc1, 0x00]); // a header map with an invalid key
    encode_row(&txn(3, 1, 1)[0], &mut payload);
    let mut data = Vec::new();
    xlog_meta(0).encode(&mut data);
    let header_len = data.len() as u64;
    let mut enc = BlockEncoder::new();
    enc.encode(&payload, &mut data);
    let second = data.len() as u64;
    let mut next = Vec::new();
    encode_row(&txn(4, 1, 1)[0], &mut next);
    enc.encode(&next, &mut data);
    let mut r = XlogReader::new(data).unwrap();
    assert_eq!(r.next_row().unwrap().unwrap().header.lsn, 1);
    assert_eq!(r.block_offset(), Some(header_len));
    match r.next_row() {
        Err(XlogError::Corrupt { offset, reason }) => {
            assert_eq!(offset, header_len);
            assert!(reason.contains("payload byte"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(r.resync(), Some(second));
    assert_eq!(r.next_row().unwrap().unwrap().header.lsn, 4);
    assert_eq!(r.next_row().unwrap(), None);
    assert!(!r.has_eof_marker());
}

#[test]
fn data_after_the_eof_marker_is_an_error() {
    let mut data = write_file(&sample_txns(), 5);
    let marker_at = data.len() as u64 - 4;
    data.extend_from_slice(&[0, 0, 1]);
    let (_, end) = read_rows(data);
    assert!(matches!(end, Err(XlogError::DataAfterEof { offset }) if offset == marker_at));
}

#[test]
fn zeros_after_the_data_are_unwritten_space_not_damage() {
    let closed = write_file(&sample_txns(), 2);
    let expected: Vec<Row> = sample_txns().concat();
    // A crash between the EOF marker and the cut of the preallocated space.
    let mut data = closed.clone();
    data.extend_from_slice(&[0; 5000]);
    let (rows, end) = read_rows(data);
    assert_eq!((rows, end.unwrap()), (expected.clone(), true));
    // A crash before the EOF marker: the zeros are where the next block would have gone.
    let mut data = closed[..closed.len() - EOF_MARKER.len()].to_vec();
    let data_end = data.len() as u64;
    data.extend_from_slice(&[0; 5000]);
    let (rows, end) = read_rows(data.clone());
    assert_eq!((rows, end.unwrap()), (expected.clone(), false));
    let (meta_len, spans_end) = {
        let (_, header_len) = Meta::parse(&data).unwrap();
        let (spans, end) = crate::reader::scan_blocks(&data, header_len);
        assert!(matches!(
            end,
            crate::reader::ScanEnd::Clean { eof_marker: false }
        ));
        (header_len, spans.last().map(|s| s.offset + s.len))
    };
    assert!(meta_len > 0);
    assert_eq!(spans_end, Some(data_end as usize));
    // Zeros and then bytes: a multi-page write the crash tore, which is a torn tail.
    data.push(7);
    let (rows, end) = read_rows(data);
    assert_eq!(rows, expected);
    assert!(matches!(end, Err(XlogError::TornTail { offset }) if offset == data_end));
}

#[test]
fn bad_magic_is_corruption() {
    let mut data = write_file(&sample_txns(), 5);
    let first = XlogReader::new(data.clone()).unwrap().header_len() as usize;
    data[first + 1] = 0;
    let (rows, end) = read_rows(data);
    assert!(rows.is_empty());
    assert!(matches!(end, Err(XlogError::Corrupt { offset, .. }) if offset == first as u64));
}

#[test]
fn a_failed_write_is_truncated_away() {
    let fs = MemFs::default();
    let mut w = XlogWriter::create(fs.clone(), &dir(), xlog_meta(0)).unwrap();
    w.append_txn(&txn(1, 2, 10));
    w.flush().unwrap();
    let good = w.offset();
    w.append_txn(&txn(3, 2, 10));
    fs.fail_next_write(7);
    assert!(w.flush().is_err());
    assert_eq!(w.offset(), good);
    assert_eq!(
        fs.contents(w.path()).unwrap().len() as u64,
        good,
        "partial write cut off"
    );
    assert_eq!(w.pending_bytes(), 0, "the failed transactions are dropped");
    // The writer keeps working; the next transaction reuses the failed LSNs.
    w.append_txn(&txn(3, 1, 10));
    w.flush().unwrap();
    let path = w.close().unwrap();
    let (rows, end) = read_rows(fs.contents(&path).unwrap());
    let lsns: Vec<u64> = rows.iter().map(|r| r.header.lsn).collect();
    assert_eq!(lsns, [1, 2, 3]);
    assert!(end.unwrap());
}

#[test]
fn a_failed_truncate_or_sync_breaks_the_writer() {
    let fs = MemFs::default();
    let mut w = XlogWriter::create(fs.clone(), &dir(), xlog_meta(0)).unwrap();
    w.append_txn(&txn(1, 1, 10));
    fs.fail_next_write(3);
    fs.fail_set_len(true);
    assert!(w.flush().is_err());
    assert!(w.is_broken());
    fs.fail_set_len(false);
    w.append_txn(&txn(1, 1, 10));
    assert!(w.flush().is_err(), "a broken writer refuses further writes");

    let mut w = XlogWriter::create(fs.clone(), &dir().join("b"), xlog_meta(0)).unwrap();
    fs.fail_sync(true);
    assert!(w.sync().is_err());
    fs.fail_sync(false);
    assert!(w.is_broken() && w.sync().is_err());
}

#[test]
fn reopen_accepts_only_a_header_only_file() {
    let fs = MemFs::default();
    let w = XlogWriter::create(fs.clone(), &dir(), xlog_meta(4)).unwrap();
    let path = w.close().unwrap();
    let mut w = XlogWriter::reopen(fs.clone(), &path).unwrap();
    assert_eq!(w.meta().vclock.get(1), 4);
    w.append_txn(&txn(5, 2, 1));
    w.flush().unwrap();
    w.close().unwrap();
    let (rows, end) = read_rows(fs.contents(&path).unwrap());
    assert_eq!(rows, txn(5, 2, 1));
    assert!(end.unwrap());
    assert!(matches!(
        XlogWriter::reopen(fs, &path),
        Err(XlogError::NotEmpty { .. })
    ));
}

#[test]
fn reopen_cuts_preallocated_zeros_of_a_header_only_file() {
    for tail in [
        &[0u8; 4096][..],
        &[EOF_MARKER.as_slice(), &[0; 100]].concat(),
    ] {
        let fs = MemFs::default();
        let path = XlogWriter::create(fs.clone(), &dir(), xlog_meta(4))
            .unwrap()
            .path()
            .to_path_buf();
        let header = fs.contents(&path).unwrap();
        fs.set_contents(&path, [header.as_slice(), tail].concat());
        let mut w = XlogWriter::reopen(fs.clone(), &path).unwrap();
        w.append_txn(&txn(5, 1, 1));
        w.flush().unwrap();
        w.close().unwrap();
        let (rows, end) = read_rows(fs.contents(&path).unwrap());
        assert_eq!((rows, end.unwrap()), (txn(5, 1, 1), true));
    }
}

#[test]
fn discard_removes_an_unfinished_snapshot() {
    let fs = MemFs::default();
    let meta = Meta::new(FileType::Snap, UUID, Vclock::new());
    let w = XlogWriter::create(fs.clone(), &dir(), meta).unwrap();
    let path = w.path().to_path_buf();
    w.discard().unwrap();
    assert!(fs.contents(&path).is_none());
}

#[test]
fn writers_and_readers_can_move_to_the_wal_thread() {
    fn assert_send<T: Send>() {}
    assert_send::<XlogWriter<crate::fs::OsFs>>();
    assert_send::<XlogWriter<MemFs>>();
    assert_send::<XlogReader>();
}

#[test]
fn snapshot_names_are_never_reused() {
    let fs = MemFs::default();
    let meta = Meta::new(FileType::Snap, UUID, xlog_meta(3).vclock);
    XlogWriter::create(fs.clone(), &dir(), meta.clone())
        .unwrap()
        .close()
        .unwrap();
    let err = XlogWriter::create(fs.clone(), &dir(), meta).err().unwrap();
    assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists);
}

#[test]
fn real_files_on_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let mut w = XlogWriter::create(crate::fs::OsFs, tmp.path(), xlog_meta(0)).unwrap();
    for t in sample_txns() {
        w.append_txn(&t);
    }
    w.flush().unwrap();
    w.sync().unwrap();
    let path = w.close().unwrap();
    let found = crate::dir::scan_dir(&crate::fs::OsFs, tmp.path(), FileType::Xlog).unwrap();
    assert_eq!(found, vec![(0, path.clone())]);
    let mut r = XlogReader::open(&crate::fs::OsFs, &path, FileType::Xlog).unwrap();
    let mut n = 0;
    while r.next_row().unwrap().is_some() {
        n += 1;
    }
    assert_eq!(n, 8);
    assert!(Path::new(&path).exists());
}

fn arb_txns() -> impl Strategy<Value = Vec<Vec<Row>>> {
    proptest::collection::vec((1usize..4, 0usize..1500), 1..12).prop_map(|shapes| {
        let mut lsn = 1;
        shapes
            .into_iter()
            .map(|(len, filler)| {
                let t = txn(lsn, len, filler);
                lsn += len as u64;
                t
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn random_txns_round_trip(txns in arb_txns(), per_flush in 1usize..5) {
        let data = write_file(&txns, per_flush);
        let (rows, end) = read_rows(data);
        prop_assert_eq!(rows, txns.concat());
        prop_assert!(end.unwrap());
    }

    /// Garbage after a valid header: the reader returns errors, never panics, and
    /// `resync` always makes progress, so force-mode reading terminates.
    #[test]
    fn garbage_never_panics(garbage in proptest::collection::vec(any::<u8>(), 0..400),
                            plant_magic in any::<bool>()) {
        let mut data = Vec::new();
        xlog_meta(0).encode(&mut data);
        if plant_magic {
            data.extend_from_slice(&ZROW_MAGIC);
        }
        data.extend_from_slice(&garbage);
        let mut r = XlogReader::new(data.clone()).unwrap();
        for _ in 0..=data.len() + 1 {
            match r.next_row() {
                Ok(Some(_)) => continue,
                Ok(None) => break,
                Err(_) => {
                    let before = r.offset();
                    if let Some(at) = r.resync() {
                        prop_assert!(at >= before);
                    }
                }
            }
        }
    }

    /// Random bytes flipped anywhere after the header never panic the reader.
    #[test]
    fn random_damage_never_panics(txns in arb_txns(), flips in proptest::collection::vec(
        (any::<prop::sample::Index>(), any::<u8>()), 1..6)) {
        let mut data = write_file(&txns, 2);
        let header_len = XlogReader::new(data.clone()).unwrap().header_len() as usize;
        let body_len = data.len() - header_len;
        for (at, byte) in flips {
            data[header_len + at.index(body_len)] ^= byte | 1;
        }
        let (rows, _) = read_rows(data);
        prop_assert!(rows.len() <= txns.concat().len());
    }
}

/// Whether `dir` is on tmpfs, which refuses `O_DIRECT` (durable writes then append).
fn on_tmpfs(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `c` is a valid C string and `st` a properly sized out-parameter.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    (unsafe { libc::statfs(c.as_ptr(), &mut st) }) == 0 && st.f_type == libc::TMPFS_MAGIC
}

/// Durable writes on a real disk overwrite preallocated zeros; whatever the sizes, a reader
/// of the open file sees every row, and the closed file is byte-for-byte what the appending
/// writer leaves for the same groups.
#[test]
fn durable_writes_leave_the_same_file_as_appends() {
    use spindle_types::limits::LOG_PREALLOC_BYTES;
    let tmp = tempfile::tempdir().unwrap();
    let direct = !on_tmpfs(tmp.path());
    // Groups from a few bytes to many pages (the large ones compress), ~1.4 MiB in all,
    // past one preallocation step.
    let groups: Vec<Vec<Vec<Row>>> = (0..2000u64)
        .map(|i| {
            let filler = [5, 400, 90, 700, 5, 40_000][(i % 6) as usize];
            (0..1 + i % 3)
                .map(|j| txn(1 + i * 10 + j * 3, 1 + (i % 3) as usize, filler))
                .collect()
        })
        .collect();
    let mut w = XlogWriter::create(crate::fs::OsFs, tmp.path(), xlog_meta(0)).unwrap();
    let path = w.path().to_path_buf();
    let mut expected = Vec::new();
    for (i, group) in groups.iter().enumerate() {
        for t in group {
            w.append_txn(t);
            expected.extend_from_slice(t);
        }
        w.flush_durable().unwrap();
        let len = std::fs::metadata(&path).unwrap().len();
        if direct {
            assert_eq!(
                len % LOG_PREALLOC_BYTES,
                0,
                "group {i}: preallocated in steps"
            );
            assert!(len >= w.offset());
        } else {
            assert_eq!(len, w.offset());
        }
        if i % 100 == 99 {
            let (rows, end) = read_rows(std::fs::read(&path).unwrap());
            assert_eq!(rows, expected);
            assert!(!end.unwrap());
        }
    }
    assert!(w.offset() > LOG_PREALLOC_BYTES, "{}", w.offset());
    w.close().unwrap();
    let on_disk = std::fs::read(&path).unwrap();

    let fs = MemFs::default();
    let mut a = XlogWriter::create(fs.clone(), &dir(), xlog_meta(0)).unwrap();
    for group in &groups {
        for t in group {
            a.append_txn(t);
        }
        a.flush().unwrap();
    }
    let appended = fs.contents(&a.close().unwrap()).unwrap();
    assert!(on_disk == appended, "the closed files differ");
}

/// A crash leaves the preallocated zeros behind: the rows are all there, and a failed write
/// cut back with `set_len` is overwritten by the next one.
#[test]
fn durable_files_survive_a_crash_and_a_cut() {
    let tmp = tempfile::tempdir().unwrap();
    let mut w = XlogWriter::create(crate::fs::OsFs, tmp.path(), xlog_meta(0)).unwrap();
    let path = w.path().to_path_buf();
    w.append_txn(&txn(1, 2, 100));
    w.flush_durable().unwrap();
    let keep = w.offset();
    w.append_txn(&txn(3, 1, 5000));
    w.flush_durable().unwrap();
    drop(w);
    let (rows, end) = read_rows(std::fs::read(&path).unwrap());
    assert_eq!(rows, [txn(1, 2, 100), txn(3, 1, 5000)].concat());
    assert!(!end.unwrap());

    // As the WAL does after a failed write: reopen, cut back, write on (first appending,
    // then cut again while writing directly).
    use crate::fs::{LogFile, LogFs};
    let mut f = crate::fs::OsFs.open_append(&path).unwrap();
    f.set_len(keep).unwrap();
    let mut next = Vec::new();
    let mut enc = BlockEncoder::new();
    let mut payload = Vec::new();
    for row in txn(3, 1, 7) {
        encode_row(&row, &mut payload);
    }
    enc.encode(&payload, &mut next);
    f.write_all_durable(&next).unwrap();
    f.set_len(keep).unwrap();
    f.write_all_durable(&next).unwrap();
    f.trim().unwrap();
    let data = std::fs::read(&path).unwrap();
    assert_eq!(data.len() as u64, keep + next.len() as u64);
    let (rows, end) = read_rows(data);
    assert_eq!(rows, [txn(1, 2, 100), txn(3, 1, 7)].concat());
    assert!(!end.unwrap());
}
