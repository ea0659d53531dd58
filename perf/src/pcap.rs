//! The classic libpcap file format (not pcapng), as `net_pcap`'s `rx_pcap=` reads it.
//!
//! A file is a 24-byte global header followed by records, each a 16-byte record
//! header and the captured bytes. We write little-endian, microsecond timestamps,
//! link type Ethernet; the reader accepts both byte orders and both timestamp
//! resolutions, so it can check files written by other tools too.

use std::fmt;
use std::io::{self, Read, Write};

/// Field ranges of the global header and of a record header.
mod field {
    use std::ops::Range;

    pub const MAGIC: Range<usize> = 0..4;
    pub const VERSION_MAJOR: Range<usize> = 4..6;
    pub const VERSION_MINOR: Range<usize> = 6..8;
    pub const THISZONE: Range<usize> = 8..12;
    pub const SIGFIGS: Range<usize> = 12..16;
    pub const SNAPLEN: Range<usize> = 16..20;
    pub const LINKTYPE: Range<usize> = 20..24;
    pub const GLOBAL_LEN: usize = 24;

    pub const TS_SEC: Range<usize> = 0..4;
    pub const TS_FRAC: Range<usize> = 4..8;
    pub const INCL_LEN: Range<usize> = 8..12;
    pub const ORIG_LEN: Range<usize> = 12..16;
    pub const RECORD_LEN: usize = 16;
}

/// Length of the global header.
pub const GLOBAL_HEADER_LEN: usize = field::GLOBAL_LEN;
/// Length of a record header.
pub const RECORD_HEADER_LEN: usize = field::RECORD_LEN;
/// The snapshot length we write: no frame of ours comes near it.
pub const SNAPLEN: u32 = 65535;
/// LINKTYPE_ETHERNET.
pub const LINKTYPE_ETHERNET: u32 = 1;

/// The longest record the reader accepts: libpcap's own limit (MAXIMUM_SNAPLEN).
pub const MAX_RECORD_LEN: u32 = 262_144;

const MAGIC_MICROS: u32 = 0xa1b2_c3d4;
const MAGIC_NANOS: u32 = 0xa1b2_3c4d;

/// Why a pcap file could not be written or read.
#[derive(Debug)]
pub enum PcapError {
    /// The underlying reader or writer failed.
    Io(io::Error),
    /// The first four bytes are no pcap magic number (pcapng is not supported).
    BadMagic(u32),
    /// A major version other than 2.
    UnsupportedVersion(u16, u16),
    /// A link type other than Ethernet.
    UnsupportedLinkType(u32),
    /// The file ends inside the global header.
    TruncatedHeader,
    /// The file ends inside a record header or its data.
    TruncatedRecord,
    /// A record longer than we write ([`SNAPLEN`]) or libpcap reads (256 KiB).
    RecordTooLong {
        /// The record's length in bytes.
        len: u32,
        /// The longest allowed, in bytes.
        max: u32,
    },
}

impl PcapError {
    /// The error as a snake_case label.
    pub const fn reason(&self) -> &'static str {
        match self {
            PcapError::Io(_) => "io",
            PcapError::BadMagic(_) => "bad_magic",
            PcapError::UnsupportedVersion(..) => "unsupported_version",
            PcapError::UnsupportedLinkType(_) => "unsupported_link_type",
            PcapError::TruncatedHeader => "truncated_header",
            PcapError::TruncatedRecord => "truncated_record",
            PcapError::RecordTooLong { .. } => "record_too_long",
        }
    }
}

impl fmt::Display for PcapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PcapError::Io(e) => write!(f, "pcap I/O: {e}"),
            PcapError::BadMagic(m) => write!(f, "not a pcap file (magic {m:#010x})"),
            PcapError::UnsupportedVersion(major, minor) => {
                write!(f, "unsupported pcap version {major}.{minor}")
            }
            PcapError::UnsupportedLinkType(t) => write!(f, "link type {t} is not Ethernet"),
            PcapError::TruncatedHeader => f.write_str("pcap file ends inside its header"),
            PcapError::TruncatedRecord => f.write_str("pcap file ends inside a record"),
            PcapError::RecordTooLong { len, max } => {
                write!(f, "record of {len} bytes exceeds {max}")
            }
        }
    }
}

impl std::error::Error for PcapError {}

impl From<io::Error> for PcapError {
    fn from(e: io::Error) -> Self {
        PcapError::Io(e)
    }
}

/// Writes Ethernet frames to a pcap stream. Wrap a file in a `BufWriter`.
pub struct PcapWriter<W: Write> {
    out: W,
    records: u64,
}

impl<W: Write> PcapWriter<W> {
    /// Writes the global header.
    pub fn new(mut out: W) -> Result<Self, PcapError> {
        let mut header = [0u8; field::GLOBAL_LEN];
        header[field::MAGIC].copy_from_slice(&MAGIC_MICROS.to_le_bytes());
        header[field::VERSION_MAJOR].copy_from_slice(&2u16.to_le_bytes());
        header[field::VERSION_MINOR].copy_from_slice(&4u16.to_le_bytes());
        header[field::THISZONE].copy_from_slice(&0i32.to_le_bytes());
        header[field::SIGFIGS].copy_from_slice(&0u32.to_le_bytes());
        header[field::SNAPLEN].copy_from_slice(&SNAPLEN.to_le_bytes());
        header[field::LINKTYPE].copy_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
        out.write_all(&header)?;
        Ok(PcapWriter { out, records: 0 })
    }

    /// Appends one frame captured at `ts_micros` microseconds after the epoch.
    pub fn write_frame(&mut self, ts_micros: u64, frame: &[u8]) -> Result<(), PcapError> {
        let len = u32::try_from(frame.len())
            .ok()
            .filter(|&len| len <= SNAPLEN)
            .ok_or(PcapError::RecordTooLong {
                len: u32::try_from(frame.len()).unwrap_or(u32::MAX),
                max: SNAPLEN,
            })?;
        // The seconds field is 32 bits: timestamps wrap after 136 years, harmless here.
        let secs = (ts_micros / 1_000_000) as u32;
        let micros = (ts_micros % 1_000_000) as u32;
        let mut header = [0u8; field::RECORD_LEN];
        header[field::TS_SEC].copy_from_slice(&secs.to_le_bytes());
        header[field::TS_FRAC].copy_from_slice(&micros.to_le_bytes());
        header[field::INCL_LEN].copy_from_slice(&len.to_le_bytes());
        header[field::ORIG_LEN].copy_from_slice(&len.to_le_bytes());
        self.out.write_all(&header)?;
        self.out.write_all(frame)?;
        self.records += 1;
        Ok(())
    }

    /// Frames written so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Flushes and returns the stream.
    pub fn finish(mut self) -> Result<W, PcapError> {
        self.out.flush()?;
        Ok(self.out)
    }
}

/// One record read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Capture time in microseconds (nanosecond files are rounded down).
    pub ts_micros: u64,
    /// Length on the wire; may exceed `data.len()` when the capture was cut.
    pub orig_len: u32,
    /// The captured bytes.
    pub data: Vec<u8>,
}

/// Reads a pcap stream record by record.
pub struct PcapReader<R: Read> {
    input: R,
    big_endian: bool,
    nanos: bool,
    snaplen: u32,
}

impl<R: Read> PcapReader<R> {
    /// Reads and checks the global header.
    pub fn new(mut input: R) -> Result<Self, PcapError> {
        let mut header = [0u8; field::GLOBAL_LEN];
        if !read_full(&mut input, &mut header)? {
            return Err(PcapError::TruncatedHeader);
        }
        let magic_le = u32::from_le_bytes(word(&header, field::MAGIC));
        let magic_be = u32::from_be_bytes(word(&header, field::MAGIC));
        let (big_endian, nanos) = match (magic_le, magic_be) {
            (MAGIC_MICROS, _) => (false, false),
            (MAGIC_NANOS, _) => (false, true),
            (_, MAGIC_MICROS) => (true, false),
            (_, MAGIC_NANOS) => (true, true),
            _ => return Err(PcapError::BadMagic(magic_le)),
        };
        let u16_at = |r: std::ops::Range<usize>| {
            let b = [header[r.start], header[r.start + 1]];
            if big_endian {
                u16::from_be_bytes(b)
            } else {
                u16::from_le_bytes(b)
            }
        };
        let u32_at = |r: std::ops::Range<usize>| {
            let b = word(&header, r);
            if big_endian {
                u32::from_be_bytes(b)
            } else {
                u32::from_le_bytes(b)
            }
        };
        let (major, minor) = (u16_at(field::VERSION_MAJOR), u16_at(field::VERSION_MINOR));
        if major != 2 {
            return Err(PcapError::UnsupportedVersion(major, minor));
        }
        let linktype = u32_at(field::LINKTYPE);
        if linktype != LINKTYPE_ETHERNET {
            return Err(PcapError::UnsupportedLinkType(linktype));
        }
        Ok(PcapReader {
            input,
            big_endian,
            nanos,
            snaplen: u32_at(field::SNAPLEN),
        })
    }

    /// The file's snapshot length.
    pub fn snaplen(&self) -> u32 {
        self.snaplen
    }

    /// The next record, `None` at a clean end of file.
    pub fn next_record(&mut self) -> Result<Option<Record>, PcapError> {
        let mut header = [0u8; field::RECORD_LEN];
        let mut first = [0u8; 1];
        // A clean end of file falls exactly between records.
        if self.input.read(&mut first)? == 0 {
            return Ok(None);
        }
        header[0] = first[0];
        if !read_full(&mut self.input, &mut header[1..])? {
            return Err(PcapError::TruncatedRecord);
        }
        let u32_at = |r: std::ops::Range<usize>| {
            let b = word(&header, r);
            if self.big_endian {
                u32::from_be_bytes(b)
            } else {
                u32::from_le_bytes(b)
            }
        };
        let secs = u64::from(u32_at(field::TS_SEC));
        let frac = u64::from(u32_at(field::TS_FRAC));
        let incl_len = u32_at(field::INCL_LEN);
        let orig_len = u32_at(field::ORIG_LEN);
        // Checked before allocating, so a corrupt length cannot ask for gigabytes.
        if incl_len > MAX_RECORD_LEN {
            return Err(PcapError::RecordTooLong {
                len: incl_len,
                max: MAX_RECORD_LEN,
            });
        }
        let mut data = vec![0u8; incl_len as usize];
        if !read_full(&mut self.input, &mut data)? {
            return Err(PcapError::TruncatedRecord);
        }
        let frac_micros = if self.nanos { frac / 1000 } else { frac };
        Ok(Some(Record {
            ts_micros: secs * 1_000_000 + frac_micros,
            orig_len,
            data,
        }))
    }
}

/// Four bytes of `buf` at `r` (always a 4-byte range of a fixed-size header).
fn word(buf: &[u8], r: std::ops::Range<usize>) -> [u8; 4] {
    [
        buf[r.start],
        buf[r.start + 1],
        buf[r.start + 2],
        buf[r.start + 3],
    ]
}

/// Fills `buf`; `false` when the input ended first.
fn read_full<R: Read>(input: &mut R, buf: &mut [u8]) -> Result<bool, PcapError> {
    match input.read_exact(buf) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(PcapError::Io(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(frames: &[&[u8]]) -> Vec<u8> {
        let mut w = PcapWriter::new(Vec::new()).unwrap();
        for (i, f) in frames.iter().enumerate() {
            w.write_frame(1_700_000_000_000_000 + i as u64 * 1_500_000, f)
                .unwrap();
        }
        assert_eq!(w.records(), frames.len() as u64);
        w.finish().unwrap()
    }

    fn read_all(bytes: &[u8]) -> Result<Vec<Record>, PcapError> {
        let mut r = PcapReader::new(bytes)?;
        let mut out = Vec::new();
        while let Some(rec) = r.next_record()? {
            out.push(rec);
        }
        Ok(out)
    }

    #[test]
    fn global_header_is_the_libpcap_one() {
        let bytes = written(&[]);
        assert_eq!(
            bytes,
            [
                0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 1, 0,
                0, 0
            ]
        );
    }

    #[test]
    fn record_header_layout() {
        let bytes = written(&[&[0xaa; 60]]);
        assert_eq!(bytes.len(), GLOBAL_HEADER_LEN + RECORD_HEADER_LEN + 60);
        let rec = &bytes[GLOBAL_HEADER_LEN..];
        assert_eq!(u32::from_le_bytes(word(rec, 0..4)), 1_700_000_000);
        assert_eq!(u32::from_le_bytes(word(rec, 4..8)), 0);
        assert_eq!(u32::from_le_bytes(word(rec, 8..12)), 60);
        assert_eq!(u32::from_le_bytes(word(rec, 12..16)), 60);
        assert!(rec[16..].iter().all(|&b| b == 0xaa));
    }

    #[test]
    fn round_trip() {
        let a = [1u8; 60];
        let b = [2u8; 61];
        let recs = read_all(&written(&[&a, &b])).unwrap();
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0].data, a);
        assert_eq!(recs[1].data, b);
        assert_eq!(recs[1].orig_len, 61);
        assert_eq!(recs[1].ts_micros, 1_700_000_001_500_000);
    }

    #[test]
    fn empty_file_has_no_records() {
        assert!(read_all(&written(&[])).unwrap().is_empty());
    }

    #[test]
    fn big_endian_nanosecond_files_are_read() {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&MAGIC_NANOS.to_be_bytes());
        bytes.extend_from_slice(&2u16.to_be_bytes());
        bytes.extend_from_slice(&4u16.to_be_bytes());
        bytes.extend_from_slice(&[0; 8]);
        bytes.extend_from_slice(&96u32.to_be_bytes());
        bytes.extend_from_slice(&1u32.to_be_bytes());
        bytes.extend_from_slice(&3u32.to_be_bytes());
        bytes.extend_from_slice(&2_500u32.to_be_bytes());
        bytes.extend_from_slice(&4u32.to_be_bytes());
        bytes.extend_from_slice(&64u32.to_be_bytes());
        bytes.extend_from_slice(&[9, 8, 7, 6]);
        let mut r = PcapReader::new(&bytes[..]).unwrap();
        assert_eq!(r.snaplen(), 96);
        let rec = r.next_record().unwrap().unwrap();
        assert_eq!(rec.ts_micros, 3_000_002);
        assert_eq!(rec.orig_len, 64);
        assert_eq!(rec.data, [9, 8, 7, 6]);
        assert!(r.next_record().unwrap().is_none());
    }

    #[test]
    fn rejects_bad_magic_and_pcapng() {
        let mut bytes = written(&[]);
        bytes[..4].copy_from_slice(&0x0a0d_0d0au32.to_le_bytes());
        assert!(matches!(
            PcapReader::new(&bytes[..]),
            Err(PcapError::BadMagic(0x0a0d_0d0a))
        ));
    }

    #[test]
    fn rejects_other_versions_and_link_types() {
        let mut bytes = written(&[]);
        bytes[4] = 1;
        assert!(matches!(
            PcapReader::new(&bytes[..]),
            Err(PcapError::UnsupportedVersion(1, 4))
        ));
        let mut bytes = written(&[]);
        bytes[20] = 101;
        let err = PcapReader::new(&bytes[..]).err().unwrap();
        assert!(matches!(err, PcapError::UnsupportedLinkType(101)));
        assert_eq!(err.reason(), "unsupported_link_type");
    }

    #[test]
    fn truncated_header_and_records_are_errors() {
        let bytes = written(&[&[5; 60]]);
        for cut in 0..GLOBAL_HEADER_LEN {
            assert!(matches!(
                PcapReader::new(&bytes[..cut]),
                Err(PcapError::TruncatedHeader)
            ));
        }
        for cut in GLOBAL_HEADER_LEN + 1..bytes.len() {
            let err = read_all(&bytes[..cut]).unwrap_err();
            assert!(matches!(err, PcapError::TruncatedRecord), "cut at {cut}");
        }
    }

    #[test]
    fn absurd_record_length_is_refused_before_allocating() {
        let mut bytes = written(&[&[5; 60]]);
        let at = GLOBAL_HEADER_LEN + 8;
        bytes[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            read_all(&bytes),
            Err(PcapError::RecordTooLong { len: u32::MAX, .. })
        ));
    }

    #[test]
    fn writer_refuses_frames_beyond_snaplen() {
        let mut w = PcapWriter::new(Vec::new()).unwrap();
        let big = vec![0u8; SNAPLEN as usize + 1];
        assert!(matches!(
            w.write_frame(0, &big),
            Err(PcapError::RecordTooLong { .. })
        ));
        assert_eq!(w.records(), 0);
        assert_eq!(w.finish().unwrap().len(), GLOBAL_HEADER_LEN);
    }

    #[test]
    fn io_errors_surface() {
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::other("disk full"))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let err = PcapWriter::new(Broken).err().unwrap();
        assert_eq!(err.reason(), "io");
    }
}
