//! The error every header view and emitter returns.

use std::fmt;

/// Why a header view refused a buffer, or an emitter refused to write.
///
/// Each variant has a snake_case [`reason`](WireError::reason) usable as a metrics
/// label; [`WireError::ALL`] lists them all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WireError {
    /// The buffer ends before a fixed header, or before a length the header declares
    /// for its own header part (IPv4 IHL).
    Truncated,
    /// The IP version nibble is not the one of the view.
    BadVersion,
    /// A header-length field is below its minimum or runs past the data it describes
    /// (IPv4 IHL < 5, TCP data offset < 5 or beyond the segment).
    BadHeaderLength,
    /// A length field disagrees with the buffer (IPv4 total length, IPv6 payload
    /// length, UDP length, an emitted payload too long for the length field).
    BadLength,
    /// A header describes a variant this view does not handle (ARP for other than
    /// Ethernet/IPv4).
    Unsupported,
    /// The message is not of the type the operation needs (an echo reply asked to
    /// become a reply, an ARP reply asked to be answered).
    WrongType,
    /// A checksum does not verify.
    BadChecksum,
    /// A TCP or Neighbor Discovery option whose length is zero, too short for its
    /// kind, or runs past the option area.
    BadOption,
    /// An IPv6 extension header that is truncated, repeated or out of place.
    BadExtensionHeader,
    /// More IPv6 extension headers than the bounded walk follows.
    TooManyExtensionHeaders,
    /// A Neighbor Discovery message that RFC 4861 section 7.1 says to discard (hop
    /// limit not 255, code not 0, multicast target, option not allowed).
    InvalidNeighborDiscovery,
    /// The output buffer is too small for what the emitter writes.
    BufferTooSmall,
    /// RFC 1812 section 4.3.2.7 forbids an ICMP error about this packet (it is an
    /// ICMP error, a non-first fragment, or has a non-unicast source or destination).
    IcmpErrorSuppressed,
}

impl WireError {
    /// Every variant, in declaration order, for pre-registering metric labels.
    pub const ALL: [WireError; 13] = [
        WireError::Truncated,
        WireError::BadVersion,
        WireError::BadHeaderLength,
        WireError::BadLength,
        WireError::Unsupported,
        WireError::WrongType,
        WireError::BadChecksum,
        WireError::BadOption,
        WireError::BadExtensionHeader,
        WireError::TooManyExtensionHeaders,
        WireError::InvalidNeighborDiscovery,
        WireError::BufferTooSmall,
        WireError::IcmpErrorSuppressed,
    ];

    /// The snake_case label of this error.
    pub const fn reason(&self) -> &'static str {
        match self {
            WireError::Truncated => "truncated",
            WireError::BadVersion => "bad_version",
            WireError::BadHeaderLength => "bad_header_length",
            WireError::BadLength => "bad_length",
            WireError::Unsupported => "unsupported",
            WireError::WrongType => "wrong_type",
            WireError::BadChecksum => "bad_checksum",
            WireError::BadOption => "bad_option",
            WireError::BadExtensionHeader => "bad_extension_header",
            WireError::TooManyExtensionHeaders => "too_many_extension_headers",
            WireError::InvalidNeighborDiscovery => "invalid_neighbor_discovery",
            WireError::BufferTooSmall => "buffer_too_small",
            WireError::IcmpErrorSuppressed => "icmp_error_suppressed",
        }
    }
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for WireError {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn reasons_are_unique_snake_case() {
        let mut seen = HashSet::new();
        for e in WireError::ALL {
            let r = e.reason();
            assert!(seen.insert(r), "duplicate reason {r}");
            assert!(
                r.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{r}"
            );
            assert_eq!(e.to_string(), r);
        }
    }
}
