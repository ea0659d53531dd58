//! The sync datagram: a header, up to [`MAX_RECORDS`] connection records, and an
//! HMAC-SHA256 tag (truncated to 16 bytes) over both with the members' shared key.
//!
//! ```text
//!  0..4   magic "FVSY"
//!  4      version (1)
//!  5      kind: 1 heartbeat, 2 connections, 3 end of a bulk transfer
//!  6..8   flags: bit 0 ready (the sender carries its shared addresses), bit 1 the
//!         sender asks for a bulk transfer
//!  8..16  epoch: the sender's start time, ns since the Unix epoch
//! 16..24  sequence number, from 1, per epoch
//! 24..26  record count
//! 26..32  zero
//! 32..    count records of `RECORD_LEN` bytes
//! last 16 the tag
//! ```
//!
//! A receiver takes a datagram only from a configured peer, with a valid tag, an
//! epoch not older than the peer's last, and a sequence number it has not seen
//! ([`ReplayWindow`]).

use super::record::{SyncConn, RECORD_LEN};
use crate::packet::be;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Bytes before the records.
pub const HEADER_LEN: usize = 32;
/// Bytes of the tag at the end.
pub const TAG_LEN: usize = 16;
/// Records in one datagram at most: it stays within a 1500-byte MTU.
pub const MAX_RECORDS: usize = 16;
/// The largest datagram.
pub const MAX_DATAGRAM: usize = HEADER_LEN + MAX_RECORDS * RECORD_LEN + TAG_LEN;
/// The shortest key accepted.
pub const MIN_KEY_LEN: usize = 16;

const MAGIC: &[u8; 4] = b"FVSY";
const VERSION: u8 = 1;

/// What a datagram is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    /// I am alive (sent every `sync.heartbeat`); carries no records.
    Heartbeat,
    /// Connections opened or changed, or a transfer's share of the table.
    Connections,
    /// The bulk transfer the receiver asked for is complete.
    BulkEnd,
}

impl Kind {
    fn code(self) -> u8 {
        match self {
            Kind::Heartbeat => 1,
            Kind::Connections => 2,
            Kind::BulkEnd => 3,
        }
    }

    fn from_code(code: u8) -> Option<Kind> {
        match code {
            1 => Some(Kind::Heartbeat),
            2 => Some(Kind::Connections),
            3 => Some(Kind::BulkEnd),
            _ => None,
        }
    }
}

/// The sender carries the shared addresses it owns.
pub const FLAG_READY: u16 = 1;
/// The sender asks for a bulk transfer of the receiver's connections.
pub const FLAG_NEED_BULK: u16 = 2;

/// A datagram's header fields.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Header {
    /// What the datagram is.
    pub kind: Kind,
    /// [`FLAG_READY`], [`FLAG_NEED_BULK`].
    pub flags: u16,
    /// The sender's start time, ns since the Unix epoch: a restarted sender's is
    /// larger, so its sequence numbers start afresh without replays passing.
    pub epoch: u64,
    /// Sequence number within the epoch.
    pub seq: u64,
}

/// Why a datagram was dropped; [`DatagramError::reason`] is the metrics label.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum DatagramError {
    /// Shorter than a header and a tag, or not as long as its count says.
    Truncated,
    /// Longer than [`MAX_DATAGRAM`], or a count above [`MAX_RECORDS`].
    TooLarge,
    /// Not a sync datagram, or another version or kind.
    NotSync,
    /// The tag does not match: a wrong key, or a forged or changed datagram.
    BadTag,
    /// An epoch older than the peer's, or a sequence number already seen.
    Replay,
    /// A record that does not decode.
    BadRecord,
}

impl DatagramError {
    /// The reason as a snake_case label.
    pub const fn reason(self) -> &'static str {
        match self {
            DatagramError::Truncated => "truncated",
            DatagramError::TooLarge => "too_large",
            DatagramError::NotSync => "not_sync",
            DatagramError::BadTag => "bad_tag",
            DatagramError::Replay => "replay",
            DatagramError::BadRecord => "bad_record",
        }
    }
}

type HmacSha256 = Hmac<Sha256>;

fn tag(key: &[u8], data: &[u8]) -> [u8; 32] {
    // Any key length is valid for HMAC.
    let mut mac = HmacSha256::new_from_slice(key).unwrap_or_else(|_| {
        HmacSha256::new_from_slice(&[0]).expect("a one-byte HMAC key is valid")
    });
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// Writes a datagram of `records` (at most [`MAX_RECORDS`]) into `out`, replacing
/// its contents.
pub fn seal(key: &[u8], header: &Header, records: &[SyncConn], out: &mut Vec<u8>) {
    let records = &records[..records.len().min(MAX_RECORDS)];
    out.clear();
    out.resize(HEADER_LEN + records.len() * RECORD_LEN, 0);
    out[0..4].copy_from_slice(MAGIC);
    out[4] = VERSION;
    out[5] = header.kind.code();
    be::write_u16(out, 6..8, header.flags);
    out[8..16].copy_from_slice(&header.epoch.to_be_bytes());
    out[16..24].copy_from_slice(&header.seq.to_be_bytes());
    be::write_u16(out, 24..26, records.len() as u16);
    for (r, chunk) in records
        .iter()
        .zip(out[HEADER_LEN..].chunks_exact_mut(RECORD_LEN))
    {
        let chunk: &mut [u8; RECORD_LEN] = chunk.try_into().expect("chunks are RECORD_LEN");
        r.encode(chunk);
    }
    let t = tag(key, out);
    out.extend_from_slice(&t[..TAG_LEN]);
}

/// Checks a received datagram's form and tag (not its sequence: that is the
/// peer's [`ReplayWindow`]) and returns its header and records.
pub fn open(key: &[u8], datagram: &[u8]) -> Result<(Header, Vec<SyncConn>), DatagramError> {
    if datagram.len() > MAX_DATAGRAM {
        return Err(DatagramError::TooLarge);
    }
    if datagram.len() < HEADER_LEN + TAG_LEN {
        return Err(DatagramError::Truncated);
    }
    if &datagram[0..4] != MAGIC || datagram[4] != VERSION {
        return Err(DatagramError::NotSync);
    }
    let kind = Kind::from_code(datagram[5]).ok_or(DatagramError::NotSync)?;
    let count = usize::from(be::read_u16(datagram, 24..26));
    if count > MAX_RECORDS {
        return Err(DatagramError::TooLarge);
    }
    let body = datagram.len() - TAG_LEN;
    if body != HEADER_LEN + count * RECORD_LEN {
        return Err(DatagramError::Truncated);
    }
    let mut mac = HmacSha256::new_from_slice(key).map_err(|_| DatagramError::BadTag)?;
    mac.update(&datagram[..body]);
    mac.verify_truncated_left(&datagram[body..])
        .map_err(|_| DatagramError::BadTag)?;
    let header = Header {
        kind,
        flags: be::read_u16(datagram, 6..8),
        epoch: u64::from_be_bytes(datagram[8..16].try_into().unwrap_or_default()),
        seq: u64::from_be_bytes(datagram[16..24].try_into().unwrap_or_default()),
    };
    let records = datagram[HEADER_LEN..body]
        .chunks_exact(RECORD_LEN)
        .map(|c| {
            let c: &[u8; RECORD_LEN] = c.try_into().expect("chunks are RECORD_LEN");
            SyncConn::decode(c).map_err(|_| DatagramError::BadRecord)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((header, records))
}

/// Which sequence numbers of a peer were seen: the newest epoch, its highest
/// number and the 64 below it (datagrams may arrive out of order).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplayWindow {
    epoch: u64,
    highest: u64,
    seen: u64,
}

impl ReplayWindow {
    /// Accepts `(epoch, seq)` once: a newer epoch starts afresh, an older one or a
    /// number seen (or too old to tell) is a replay.
    pub fn accept(&mut self, epoch: u64, seq: u64) -> Result<(), DatagramError> {
        if epoch < self.epoch || seq == 0 {
            return Err(DatagramError::Replay);
        }
        if epoch > self.epoch {
            *self = ReplayWindow {
                epoch,
                highest: seq,
                seen: 1,
            };
            return Ok(());
        }
        if seq > self.highest {
            let shift = seq - self.highest;
            self.seen = if shift >= 64 { 0 } else { self.seen << shift };
            self.seen |= 1;
            self.highest = seq;
            return Ok(());
        }
        let back = self.highest - seq;
        if back >= 64 || self.seen & (1 << back) != 0 {
            return Err(DatagramError::Replay);
        }
        self.seen |= 1 << back;
        Ok(())
    }

    /// The epoch of the last accepted datagram (0 before any).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::{ConnState, Mode, Proto, TcpState};

    const KEY: &[u8] = b"0123456789abcdef-sync-key";

    fn conn(port: u16) -> SyncConn {
        SyncConn {
            proto: Proto::Tcp,
            mode: Mode::Nat,
            state: ConnState::Tcp(TcpState::SynRecv),
            timeout_ms: 60_000,
            client: ("198.18.0.10".parse().unwrap(), port),
            vip: ("198.18.0.100".parse().unwrap(), 80),
            local: ("198.18.0.10".parse().unwrap(), port),
            real: ("198.19.0.10".parse().unwrap(), 8080),
        }
    }

    fn header(seq: u64) -> Header {
        Header {
            kind: Kind::Connections,
            flags: FLAG_READY,
            epoch: 1_700_000_000_000_000_000,
            seq,
        }
    }

    #[test]
    fn a_sealed_datagram_opens_with_its_key_only() {
        let records: Vec<SyncConn> = (0..MAX_RECORDS as u16).map(|p| conn(40000 + p)).collect();
        let mut d = Vec::new();
        seal(KEY, &header(7), &records, &mut d);
        assert_eq!(d.len(), MAX_DATAGRAM);
        assert!(d.len() <= 1472, "one UDP datagram in a 1500-byte MTU");
        let (h, r) = open(KEY, &d).unwrap();
        assert_eq!((h, r), (header(7), records));
        assert_eq!(
            open(b"another key, same length..", &d),
            Err(DatagramError::BadTag)
        );
        // Any changed bit breaks the tag.
        for i in [0, 5, 9, 20, 40, d.len() - 1] {
            let mut bad = d.clone();
            bad[i] ^= 0x10;
            assert!(open(KEY, &bad).is_err(), "byte {i}");
        }
        let mut hb = Vec::new();
        seal(
            KEY,
            &Header {
                kind: Kind::Heartbeat,
                ..header(1)
            },
            &[],
            &mut hb,
        );
        assert_eq!(hb.len(), HEADER_LEN + TAG_LEN);
        assert_eq!(open(KEY, &hb).unwrap().1, vec![]);
    }

    #[test]
    fn malformed_datagrams_are_refused_before_the_tag() {
        let mut d = Vec::new();
        seal(KEY, &header(1), &[conn(1), conn(2)], &mut d);
        assert_eq!(open(KEY, &d[..40]), Err(DatagramError::Truncated));
        assert_eq!(open(KEY, &d[..d.len() - 1]), Err(DatagramError::Truncated));
        assert_eq!(
            open(KEY, &[0u8; MAX_DATAGRAM + 1]),
            Err(DatagramError::TooLarge)
        );
        let mut count = d.clone();
        count[24..26].copy_from_slice(&1000u16.to_be_bytes());
        assert_eq!(open(KEY, &count), Err(DatagramError::TooLarge));
        let mut magic = d.clone();
        magic[0] = b'X';
        assert_eq!(open(KEY, &magic), Err(DatagramError::NotSync));
    }

    #[test]
    fn the_window_takes_each_sequence_number_once() {
        let mut w = ReplayWindow::default();
        assert_eq!(w.accept(5, 1), Ok(()));
        assert_eq!(w.accept(5, 1), Err(DatagramError::Replay));
        assert_eq!(w.accept(5, 3), Ok(()));
        assert_eq!(w.accept(5, 2), Ok(()), "late but unseen");
        assert_eq!(w.accept(5, 2), Err(DatagramError::Replay));
        assert_eq!(w.accept(5, 100), Ok(()));
        assert_eq!(
            w.accept(5, 36),
            Err(DatagramError::Replay),
            "too old to tell"
        );
        assert_eq!(w.accept(5, 37), Ok(()));
        // A restarted peer: newer epoch, numbers from 1 again; the old epoch is dead.
        assert_eq!(w.accept(6, 1), Ok(()));
        assert_eq!(w.accept(5, 101), Err(DatagramError::Replay));
        assert_eq!(w.accept(6, 0), Err(DatagramError::Replay));
        assert_eq!(w.epoch(), 6);
    }
}
