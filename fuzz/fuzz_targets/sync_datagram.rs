//! Connection sync's wire formats: datagrams, records and the replay window.
//!
//! A member takes sync datagrams from the network (from configured peers only,
//! but a peer's address can be spoofed), so `message::open` must refuse anything
//! malformed or unauthenticated without panicking, and what it accepts must be
//! exactly what a peer sealed.
//!
//! The first input byte picks a mode; the rest is its input:
//! - 0, raw: arbitrary bytes to `open` with a fixed key. Only a valid tag opens
//!   (the fuzzer cannot forge one); nothing panics.
//! - 1, signed: arbitrary bytes as a datagram body with a valid tag appended
//!   here, so the record decoding behind the tag check is reached. What opens
//!   holds the body's header fields and records, each record re-encodes to its
//!   bytes, and sealing them again gives the same datagram (when the reserved
//!   header bytes are zero: `open` does not check them).
//! - 2, round trip: a header and records (those of the input's 80-byte chunks
//!   that decode) are sealed and opened: the same header and records come back;
//!   another key, or any changed byte, is refused.
//! - 3, records: every 80-byte chunk through `SyncConn::decode`; what decodes
//!   re-encodes to the same bytes (every byte of the format is a field or must be
//!   zero) and survives the worker ring's word form.
//! - 4, replay window: a sequence of (epoch, sequence number) pairs against a
//!   model of `ReplayWindow::accept`: a newer epoch starts afresh, an older one is
//!   refused, and within an epoch each number is taken once if it is within 64 of
//!   the highest. No pair is ever accepted twice.

#![no_main]

use ferrovs_core::sync::message::{self, Header, Kind, ReplayWindow, HEADER_LEN, TAG_LEN};
use ferrovs_core::sync::{DatagramError, SyncConn, RECORD_LEN};
use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use sha2::Sha256;
use std::collections::{BTreeSet, HashSet};

const KEY: &[u8] = b"fuzzing key, at least 16 bytes";
const OTHER_KEY: &[u8] = b"another key, at least 16 bytes";

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 5 {
        0 => raw(rest),
        1 => signed(rest),
        2 => round_trip(rest),
        3 => records(rest),
        _ => replay(rest),
    }
});

fn raw(datagram: &[u8]) {
    if let Ok((header, records)) = message::open(KEY, datagram) {
        check_opened(datagram, &header, &records);
    }
    let _ = message::open(b"", datagram);
}

/// The HMAC-SHA256 tag, truncated, as a peer computes it.
fn tag(key: &[u8], body: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(body);
    mac.finalize().into_bytes()[..TAG_LEN].to_vec()
}

fn signed(body: &[u8]) {
    let mut datagram = body.to_vec();
    datagram.extend(tag(KEY, body));
    match message::open(KEY, &datagram) {
        Ok((header, records)) => check_opened(&datagram, &header, &records),
        Err(DatagramError::BadTag) => panic!("a valid tag refused"),
        Err(DatagramError::Replay) => panic!("open does not judge replays"),
        Err(_) => {}
    }
    assert!(message::open(OTHER_KEY, &datagram).is_err());
}

/// What `open` accepted is what the datagram says, and seals back to it.
fn check_opened(datagram: &[u8], header: &Header, records: &[SyncConn]) {
    assert!(datagram.len() <= message::MAX_DATAGRAM);
    let body = &datagram[..datagram.len() - TAG_LEN];
    assert_eq!(body.len(), HEADER_LEN + records.len() * RECORD_LEN);
    assert!(records.len() <= message::MAX_RECORDS);
    assert_eq!(&body[0..4], b"FVSY");
    assert_eq!(u16::from_be_bytes([body[6], body[7]]), header.flags);
    assert_eq!(
        u64::from_be_bytes(body[8..16].try_into().unwrap()),
        header.epoch
    );
    assert_eq!(
        u64::from_be_bytes(body[16..24].try_into().unwrap()),
        header.seq
    );
    assert_eq!(
        usize::from(u16::from_be_bytes([body[24], body[25]])),
        records.len()
    );
    for (r, chunk) in records
        .iter()
        .zip(body[HEADER_LEN..].chunks_exact(RECORD_LEN))
    {
        let mut again = [0u8; RECORD_LEN];
        r.encode(&mut again);
        assert_eq!(&again[..], chunk, "an opened record re-encodes differently");
    }
    let mut sealed = Vec::new();
    message::seal(KEY, header, records, &mut sealed);
    if body[26..32].iter().all(|&b| b == 0) {
        assert_eq!(
            sealed, datagram,
            "sealing what opened gives another datagram"
        );
    } else {
        assert_eq!(sealed[..26], datagram[..26]);
        assert_eq!(
            sealed[32..HEADER_LEN + records.len() * RECORD_LEN],
            body[32..]
        );
    }
}

/// Records from the input's 80-byte chunks that decode.
fn decoded(bytes: &[u8]) -> Vec<SyncConn> {
    bytes
        .chunks_exact(RECORD_LEN)
        .filter_map(|c| SyncConn::decode(c.try_into().unwrap()).ok())
        .collect()
}

fn round_trip(input: &[u8]) {
    let mut h = [0u8; 20];
    let n = input.len().min(20);
    h[..n].copy_from_slice(&input[..n]);
    let header = Header {
        kind: [Kind::Heartbeat, Kind::Connections, Kind::BulkEnd][usize::from(h[0] % 3)],
        flags: u16::from_be_bytes([h[1], h[2]]),
        epoch: u64::from_be_bytes(h[3..11].try_into().unwrap()),
        seq: u64::from_be_bytes(h[11..19].try_into().unwrap()),
    };
    let flip = usize::from(h[19]);
    let records = decoded(&input[n..]);
    let mut datagram = Vec::new();
    message::seal(KEY, &header, &records, &mut datagram);
    let kept = records.len().min(message::MAX_RECORDS);
    assert_eq!(datagram.len(), HEADER_LEN + kept * RECORD_LEN + TAG_LEN);
    assert!(datagram.len() <= message::MAX_DATAGRAM);
    let (h2, r2) = message::open(KEY, &datagram).expect("a sealed datagram opens");
    assert_eq!(h2, header);
    assert_eq!(r2, records[..kept]);
    assert_eq!(
        message::open(OTHER_KEY, &datagram),
        Err(DatagramError::BadTag)
    );
    let at = flip * 7 % datagram.len();
    let mut bad = datagram.clone();
    bad[at] ^= 1 << (flip % 8);
    assert!(
        message::open(KEY, &bad).is_err(),
        "byte {at} changed, still opens"
    );
    assert!(message::open(KEY, &datagram[..datagram.len() - 1]).is_err());
}

fn records(bytes: &[u8]) {
    for chunk in bytes.chunks_exact(RECORD_LEN) {
        let chunk: &[u8; RECORD_LEN] = chunk.try_into().unwrap();
        let Ok(r) = SyncConn::decode(chunk) else {
            continue;
        };
        let mut again = [0u8; RECORD_LEN];
        r.encode(&mut again);
        assert_eq!(&again, chunk, "decode then encode changed the record");
        assert_eq!(SyncConn::from_words(&r.to_words()), Ok(r));
        let family = r.client.0.is_ipv4();
        for (addr, _) in [r.vip, r.local, r.real] {
            assert_eq!(addr.is_ipv4(), family, "one record, two families");
        }
    }
}

/// `ReplayWindow::accept` as its documentation states it.
#[derive(Default)]
struct Model {
    /// The current epoch, its highest number and the numbers taken in it.
    current: Option<(u64, u64, BTreeSet<u64>)>,
}

impl Model {
    fn accept(&mut self, epoch: u64, seq: u64) -> bool {
        if seq == 0 {
            return false;
        }
        match &mut self.current {
            Some((e, _, _)) if epoch < *e => false,
            Some((e, highest, seen)) if epoch == *e => {
                if seq > *highest {
                    *highest = seq;
                } else if *highest - seq >= 64 || seen.contains(&seq) {
                    return false;
                }
                seen.insert(seq);
                true
            }
            // A newer epoch (or the first datagram): afresh.
            _ => {
                self.current = Some((epoch, seq, BTreeSet::from([seq])));
                true
            }
        }
    }
}

fn replay(mut input: &[u8]) {
    let mut window = ReplayWindow::default();
    let mut model = Model::default();
    let mut taken = HashSet::new();
    let mut epoch = 0u64;
    let next = |n: usize, input: &mut &[u8]| -> u64 {
        let mut b = [0u8; 8];
        let k = n.min(input.len());
        b[8 - n..8 - n + k].copy_from_slice(&input[..k]);
        *input = &input[k..];
        u64::from_be_bytes(b)
    };
    while !input.is_empty() {
        let c = next(1, &mut input);
        epoch = match c & 3 {
            0 => epoch,
            1 => epoch.wrapping_add(1),
            2 => epoch.saturating_sub(1),
            _ => next(8, &mut input),
        };
        let seq = if c & 4 != 0 {
            next(8, &mut input)
        } else {
            next(1, &mut input)
        };
        let accepted = window.accept(epoch, seq);
        assert_eq!(
            accepted.is_ok(),
            model.accept(epoch, seq),
            "({epoch}, {seq}): window {accepted:?}"
        );
        if let Err(e) = accepted {
            assert_eq!(e, DatagramError::Replay);
        } else {
            assert!(
                taken.insert((epoch, seq)),
                "({epoch}, {seq}) accepted twice"
            );
            assert_eq!(window.epoch(), epoch);
        }
    }
}
