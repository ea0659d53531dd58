//! One connection as sync carries it: a fixed 80-byte record, big-endian.
//!
//! ```text
//!  0      flags: bit 0 IPv6 (every address of the record is of one family)
//!  1      protocol (6 TCP, 17 UDP)
//!  2      state (`ConnState::code`)
//!  3      mode (`Mode::code`)
//!  4..8   remaining idle timeout, ms
//!  8..24  client address (IPv4: the first 4 bytes, the rest zero)
//! 24..26  client port       26..28 virtual port
//! 28..44  virtual address
//! 44..60  local address (the source the real server sees)
//! 60..62  local port        62..64 real-server port
//! 64..80  real-server address
//! ```

use crate::conn::{ConnState, Mode, Proto};
use crate::packet::be;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Bytes of one record.
pub const RECORD_LEN: usize = 80;
/// 64-bit words of one record (what the worker-to-management ring stores).
pub const RECORD_WORDS: usize = RECORD_LEN / 8;

/// A record in the ring's form.
pub type RecordWords = [u64; RECORD_WORDS];

/// Why a record was refused.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum RecordError {
    /// A flag bit ferrovs does not know.
    UnknownFlags,
    /// Neither TCP nor UDP.
    BadProtocol,
    /// A state code that is no state, or a TCP state on UDP (and back).
    BadState,
    /// A mode code that is no mode.
    BadMode,
    /// An IPv4 record with bytes set past its 4-byte addresses.
    BadAddress,
}

/// One connection: what another member needs to carry it on.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct SyncConn {
    /// TCP or UDP.
    pub proto: Proto,
    /// How its packets are forwarded.
    pub mode: Mode,
    /// The state its last packet left it in.
    pub state: ConnState,
    /// Milliseconds until it expires if no packet comes.
    pub timeout_ms: u32,
    /// The client as it reaches the balancer.
    pub client: (IpAddr, u16),
    /// The virtual service it addressed.
    pub vip: (IpAddr, u16),
    /// The source the real server sees (the client, or LIP:lport in FULLNAT).
    pub local: (IpAddr, u16),
    /// The real server.
    pub real: (IpAddr, u16),
}

const IPV6: u8 = 1;

fn put_addr(out: &mut [u8], addr: IpAddr) {
    match addr {
        IpAddr::V4(a) => {
            out[..4].copy_from_slice(&a.octets());
            out[4..16].fill(0);
        }
        IpAddr::V6(a) => out.copy_from_slice(&a.octets()),
    }
}

fn get_addr(bytes: &[u8], v6: bool) -> Result<IpAddr, RecordError> {
    let octets: [u8; 16] = bytes.try_into().map_err(|_| RecordError::BadAddress)?;
    if v6 {
        return Ok(IpAddr::V6(Ipv6Addr::from(octets)));
    }
    if octets[4..].iter().any(|&b| b != 0) {
        return Err(RecordError::BadAddress);
    }
    Ok(IpAddr::V4(Ipv4Addr::new(
        octets[0], octets[1], octets[2], octets[3],
    )))
}

impl SyncConn {
    /// Writes the record into `out`. Every address must be of the client's family
    /// (a connection's are).
    pub fn encode(&self, out: &mut [u8; RECORD_LEN]) {
        out[0] = if self.client.0.is_ipv6() { IPV6 } else { 0 };
        out[1] = self.proto.number();
        out[2] = self.state.code();
        out[3] = self.mode.code();
        be::write_u32(out, 4..8, self.timeout_ms);
        put_addr(&mut out[8..24], self.client.0);
        be::write_u16(out, 24..26, self.client.1);
        be::write_u16(out, 26..28, self.vip.1);
        put_addr(&mut out[28..44], self.vip.0);
        put_addr(&mut out[44..60], self.local.0);
        be::write_u16(out, 60..62, self.local.1);
        be::write_u16(out, 62..64, self.real.1);
        put_addr(&mut out[64..80], self.real.0);
    }

    /// Reads and checks one record.
    pub fn decode(bytes: &[u8; RECORD_LEN]) -> Result<SyncConn, RecordError> {
        if bytes[0] & !IPV6 != 0 {
            return Err(RecordError::UnknownFlags);
        }
        let v6 = bytes[0] & IPV6 != 0;
        let proto = match bytes[1] {
            6 => Proto::Tcp,
            17 => Proto::Udp,
            _ => return Err(RecordError::BadProtocol),
        };
        let state = ConnState::from_code(bytes[2]).ok_or(RecordError::BadState)?;
        if matches!(state, ConnState::Udp) != (proto == Proto::Udp) {
            return Err(RecordError::BadState);
        }
        let mode = Mode::from_code(bytes[3]).ok_or(RecordError::BadMode)?;
        Ok(SyncConn {
            proto,
            mode,
            state,
            timeout_ms: be::read_u32(bytes, 4..8),
            client: (get_addr(&bytes[8..24], v6)?, be::read_u16(bytes, 24..26)),
            vip: (get_addr(&bytes[28..44], v6)?, be::read_u16(bytes, 26..28)),
            local: (get_addr(&bytes[44..60], v6)?, be::read_u16(bytes, 60..62)),
            real: (get_addr(&bytes[64..80], v6)?, be::read_u16(bytes, 62..64)),
        })
    }

    /// The record as ring words.
    pub fn to_words(&self) -> RecordWords {
        let mut bytes = [0u8; RECORD_LEN];
        self.encode(&mut bytes);
        std::array::from_fn(|i| {
            u64::from_ne_bytes(bytes[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]))
        })
    }

    /// The record of ring words.
    pub fn from_words(words: &RecordWords) -> Result<SyncConn, RecordError> {
        let mut bytes = [0u8; RECORD_LEN];
        for (chunk, w) in bytes.chunks_exact_mut(8).zip(words) {
            chunk.copy_from_slice(&w.to_ne_bytes());
        }
        SyncConn::decode(&bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::TcpState;

    fn v4() -> SyncConn {
        SyncConn {
            proto: Proto::Tcp,
            mode: Mode::FullNat,
            state: ConnState::Tcp(TcpState::Established),
            timeout_ms: 899_500,
            client: ("198.18.0.10".parse().unwrap(), 40000),
            vip: ("198.18.0.100".parse().unwrap(), 80),
            local: ("198.19.0.2".parse().unwrap(), 1026),
            real: ("198.19.0.10".parse().unwrap(), 8080),
        }
    }

    #[test]
    fn records_round_trip_through_bytes_and_words() {
        let six = SyncConn {
            proto: Proto::Udp,
            mode: Mode::Nat,
            state: ConnState::Udp,
            timeout_ms: 1,
            client: ("2001:2::10".parse().unwrap(), 5353),
            vip: ("2001:2::100".parse().unwrap(), 53),
            local: ("2001:2::10".parse().unwrap(), 5353),
            real: ("2001:2:0:19::10".parse().unwrap(), 53),
        };
        for c in [v4(), six] {
            let mut b = [0u8; RECORD_LEN];
            c.encode(&mut b);
            assert_eq!(SyncConn::decode(&b), Ok(c));
            assert_eq!(SyncConn::from_words(&c.to_words()), Ok(c));
        }
        let mut b = [0u8; RECORD_LEN];
        v4().encode(&mut b);
        // Field positions and byte order.
        assert_eq!(b[..8], [0, 6, 1, 1, 0x00, 0x0d, 0xb9, 0xac]);
        assert_eq!(b[8..12], [198, 18, 0, 10]);
        assert_eq!(b[24..28], [0x9c, 0x40, 0, 80]);
        assert_eq!(b[60..64], [0x04, 0x02, 0x1f, 0x90]);
    }

    #[test]
    fn malformed_records_are_refused() {
        let mut good = [0u8; RECORD_LEN];
        v4().encode(&mut good);
        let bad = |i: usize, v: u8| {
            let mut b = good;
            b[i] = v;
            SyncConn::decode(&b)
        };
        assert_eq!(bad(0, 0x80), Err(RecordError::UnknownFlags));
        assert_eq!(bad(1, 1), Err(RecordError::BadProtocol));
        assert_eq!(bad(2, 99), Err(RecordError::BadState));
        assert_eq!(bad(2, ConnState::Udp.code()), Err(RecordError::BadState));
        assert_eq!(bad(3, 4), Err(RecordError::BadMode));
        assert_eq!(bad(20, 1), Err(RecordError::BadAddress));
    }
}
