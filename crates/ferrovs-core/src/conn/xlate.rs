//! Sequence-number translation of a TCP connection: what a SYN proxy and the
//! Proxy Protocol change between what the client and the real server see.
//!
//! The client and the server each number their bytes from their own initial
//! sequence number. When ferrovs answers a client's SYN itself (SYN proxy), the
//! client gets ferrovs's number, not the server's, so the server's numbers are
//! shifted by `out_delta` towards the client (and the client's acknowledgements of
//! them back); timestamps likewise by `ts_delta`, and window sizes from the
//! server's window scale to the one the client was told. When ferrovs sends a
//! Proxy Protocol header ahead of the client's data, the client's numbers after
//! its first byte are shifted by the header's length, `in_delta`, towards the
//! server (and the server's acknowledgements back).
//!
//! The record lives beside the connection table's entry (indexed by the same
//! slot, allocated only when a service can need it); the entry itself carries a
//! flag byte, read on the line the packet path reads anyway, so a connection
//! without translation costs one test.

/// Bits of [`crate::conn::Conn::xlate`].
pub mod flag {
    /// The connection's segments are translated by its [`super::SeqAdj`].
    pub const ON: u8 = 1;
    /// Packets need the ordinary path: a SYN proxy handshake with the server is
    /// under way, or a Proxy Protocol header may have to be (re)sent.
    pub const SLOW: u8 = 2;
    /// NAT64: the connection is in the IPv6 table with an IPv4 (mapped) local
    /// address and real server; its packets change family (`forward::nat64`).
    /// Set at insertion; a NAT64 connection has no [`super::SeqAdj`].
    pub const NAT64: u8 = 4;
}

/// Bits of [`SeqAdj::flags`].
pub mod adj_flag {
    /// A Proxy Protocol header goes ahead of the client's first byte: version 2
    /// (binary) when set with [`PROXY_V2`], else version 1 (text).
    pub const PROXY: u8 = 1;
    /// The Proxy Protocol header is version 2.
    pub const PROXY_V2: u8 = 2;
    /// The server has not yet acknowledged the header: a segment of the client
    /// starting at `first_seq` carries it (again).
    pub const PROXY_PENDING: u8 = 4;
    /// Segments carry timestamps that `ts_delta` shifts.
    pub const TIMESTAMPS: u8 = 8;
    /// SYN proxy: the connection was opened by ferrovs on the client's behalf.
    pub const SYN_PROXY: u8 = 16;
    /// SYN proxy: ferrovs's SYN to the real server is not answered yet. Until it
    /// is, `out_delta` is the cookie (ferrovs's initial sequence number towards
    /// the client), `ts_delta` the TSval the client echoes, and `wscale` the
    /// client's options as the cookie keeps them (low nibble its window scale or
    /// 0xf for none, bit 4 SACK permitted).
    pub const SYN_PENDING: u8 = 32;
}

/// Marks a window scale that needs no translation.
pub const SAME_WSCALE: u8 = 0xff;

/// How a connection's segments are translated (16 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeqAdj {
    /// Added to the server's sequence numbers towards the client, taken from the
    /// client's acknowledgement numbers (and SACK edges) towards the server.
    /// While a SYN proxy waits for the server: the initial sequence number
    /// ferrovs gave the client.
    pub out_delta: u32,
    /// Added to the server's TSval towards the client, taken from the client's
    /// TSecr. While a SYN proxy waits for the server: the TSval the client echoes.
    pub ts_delta: u32,
    /// The client's first data sequence number (its initial one plus one).
    pub first_seq: u32,
    /// Bytes inserted at `first_seq` (a Proxy Protocol header): added to the
    /// client's sequence numbers after it, taken from the server's
    /// acknowledgements.
    pub in_delta: u8,
    /// Window scales when the server's differs from the one the client was
    /// told: server's in the high nibble, client-announced in the low; else
    /// [`SAME_WSCALE`].
    pub wscale: u8,
    /// [`adj_flag`] bits.
    pub flags: u8,
    /// With a SYN proxy: the client's MSS as the cookie encoded it (an index
    /// into the cookie's table), for a SYN sent again.
    pub mss_index: u8,
}

impl Default for SeqAdj {
    fn default() -> Self {
        SeqAdj {
            out_delta: 0,
            ts_delta: 0,
            first_seq: 0,
            in_delta: 0,
            wscale: SAME_WSCALE,
            flags: 0,
            mss_index: 0,
        }
    }
}

impl SeqAdj {
    /// Whether `flag` (an [`adj_flag`] bit) is set.
    #[inline]
    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    /// Whether `seq` (client's numbering) lies after the inserted bytes' place:
    /// beyond `first_seq`, or at it when the segment carries data or a FIN
    /// (a bare acknowledgement at `first_seq` comes before the header).
    #[inline]
    fn after_insert(&self, seq: u32, occupies: bool) -> bool {
        let d = seq.wrapping_sub(self.first_seq) as i32;
        d > 0 || (d == 0 && occupies)
    }

    /// A client's sequence number as the server sees it.
    #[inline]
    pub fn client_seq_to_server(&self, seq: u32, occupies: bool) -> u32 {
        if self.in_delta != 0 && self.after_insert(seq, occupies) {
            seq.wrapping_add(u32::from(self.in_delta))
        } else {
            seq
        }
    }

    /// A number in the client's sequence space as the server numbers it (its
    /// acknowledgements, SACK edges) back in the client's: past the inserted
    /// bytes it moves back by their length; inside them, to their start.
    #[inline]
    pub fn server_ack_to_client(&self, ack: u32) -> u32 {
        if self.in_delta == 0 {
            return ack;
        }
        let d = ack.wrapping_sub(self.first_seq) as i32;
        if d <= 0 {
            ack
        } else if d < i32::from(self.in_delta) {
            self.first_seq
        } else {
            ack.wrapping_sub(u32::from(self.in_delta))
        }
    }

    /// Whether an acknowledgement from the server (its numbering) covers the
    /// inserted bytes.
    #[inline]
    pub fn acks_insert(&self, ack: u32) -> bool {
        let end = self.first_seq.wrapping_add(u32::from(self.in_delta));
        ack.wrapping_sub(end) as i32 >= 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_record_is_small() {
        assert_eq!(size_of::<SeqAdj>(), 16);
    }

    #[test]
    fn inserted_bytes_shift_what_follows_and_nothing_before() {
        let a = SeqAdj {
            first_seq: 1001,
            in_delta: 50,
            ..SeqAdj::default()
        };
        assert_eq!(a.client_seq_to_server(1000, true), 1000, "the SYN");
        assert_eq!(
            a.client_seq_to_server(1001, false),
            1001,
            "a bare ACK first"
        );
        assert_eq!(a.client_seq_to_server(1001, true), 1051, "the first data");
        assert_eq!(a.client_seq_to_server(2001, false), 2051);
        assert_eq!(a.server_ack_to_client(1001), 1001);
        assert_eq!(a.server_ack_to_client(1020), 1001, "inside the header");
        assert_eq!(a.server_ack_to_client(1051), 1001);
        assert_eq!(a.server_ack_to_client(1551), 1501);
        assert!(!a.acks_insert(1050) && a.acks_insert(1051) && a.acks_insert(9000));
        // Across the wrap of the sequence space.
        let w = SeqAdj {
            first_seq: u32::MAX - 9,
            in_delta: 20,
            ..SeqAdj::default()
        };
        assert_eq!(w.client_seq_to_server(5, false), 25);
        assert_eq!(w.server_ack_to_client(25), 5);
        assert!(w.acks_insert(10) && !w.acks_insert(9));
        let none = SeqAdj::default();
        assert_eq!(none.client_seq_to_server(7, true), 7);
        assert_eq!(none.server_ack_to_client(7), 7);
    }
}
