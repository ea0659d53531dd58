//! The Proxy Protocol header (HAProxy's specification, versions 1 and 2) that
//! tells a real server the client's address and port and the address the client
//! connected to, ahead of the client's first byte.

use std::io::Write;
use std::net::IpAddr;

/// The longest header ferrovs writes: version 1 over IPv6 is at most 104 bytes
/// (the specification's limit is 107).
pub const MAX_LEN: usize = 108;

/// The version 2 signature.
const V2_SIGNATURE: [u8; 12] = [
    0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
];

/// Writes the header for a TCP connection from `client` to `vip` into `out`:
/// version 2 (binary) when `v2`, else version 1 (text). Returns its length, or
/// None when the two addresses are of different families.
pub fn write(
    v2: bool,
    client: (IpAddr, u16),
    vip: (IpAddr, u16),
    out: &mut [u8; MAX_LEN],
) -> Option<usize> {
    if client.0.is_ipv4() != vip.0.is_ipv4() {
        return None;
    }
    if v2 {
        return Some(write_v2(client, vip, out));
    }
    let family = if client.0.is_ipv4() { "TCP4" } else { "TCP6" };
    let mut cursor = std::io::Cursor::new(&mut out[..]);
    write!(
        cursor,
        "PROXY {family} {} {} {} {}\r\n",
        client.0, vip.0, client.1, vip.1
    )
    .ok()?;
    Some(cursor.position() as usize)
}

fn write_v2(client: (IpAddr, u16), vip: (IpAddr, u16), out: &mut [u8; MAX_LEN]) -> usize {
    out[..12].copy_from_slice(&V2_SIGNATURE);
    // Version 2, command PROXY.
    out[12] = 0x21;
    let mut n = 16;
    let mut put = |bytes: &[u8]| {
        out[n..n + bytes.len()].copy_from_slice(bytes);
        n += bytes.len();
    };
    match (client.0, vip.0) {
        (IpAddr::V4(c), IpAddr::V4(v)) => {
            put(&c.octets());
            put(&v.octets());
        }
        (IpAddr::V6(c), IpAddr::V6(v)) => {
            put(&c.octets());
            put(&v.octets());
        }
        _ => {}
    }
    put(&client.1.to_be_bytes());
    put(&vip.1.to_be_bytes());
    // TCP over IPv4 (0x11) or IPv6 (0x21), then the length of what follows.
    out[13] = if client.0.is_ipv4() { 0x11 } else { 0x21 };
    out[14..16].copy_from_slice(&((n - 16) as u16).to_be_bytes());
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(s: &str) -> (IpAddr, u16) {
        let a: std::net::SocketAddr = s.parse().unwrap();
        (a.ip(), a.port())
    }

    #[test]
    fn version_1_is_the_text_line_of_the_specification() {
        let mut out = [0u8; MAX_LEN];
        let n = write(
            false,
            ep("198.18.0.10:40000"),
            ep("198.18.0.100:80"),
            &mut out,
        )
        .unwrap();
        assert_eq!(
            &out[..n],
            b"PROXY TCP4 198.18.0.10 198.18.0.100 40000 80\r\n"
        );
        // The longest IPv6 line fits.
        let long = "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe]:65535";
        let n = write(false, ep(long), ep(long), &mut out).unwrap();
        assert_eq!(n, 104);
        assert!(out[..n].starts_with(b"PROXY TCP6 ffff:"));
        assert!(write(false, ep("1.2.3.4:1"), ep("[::2]:2"), &mut out).is_none());
    }

    #[test]
    fn version_2_is_the_binary_header_of_the_specification() {
        let mut out = [0u8; MAX_LEN];
        let n = write(
            true,
            ep("198.18.0.10:40000"),
            ep("198.18.0.100:80"),
            &mut out,
        )
        .unwrap();
        assert_eq!(n, 28);
        assert_eq!(&out[..12], &V2_SIGNATURE);
        assert_eq!(&out[12..16], &[0x21, 0x11, 0, 12]);
        assert_eq!(&out[16..20], &[198, 18, 0, 10]);
        assert_eq!(&out[20..24], &[198, 18, 0, 100]);
        assert_eq!(&out[24..28], &[0x9c, 0x40, 0, 80]);
        let n = write(
            true,
            ep("[2001:2::10]:40000"),
            ep("[2001:2::100]:443"),
            &mut out,
        )
        .unwrap();
        assert_eq!(n, 52);
        assert_eq!(&out[12..16], &[0x21, 0x21, 0, 36]);
        assert_eq!(
            out[16..32],
            "2001:2::10".parse::<std::net::Ipv6Addr>().unwrap().octets()
        );
        assert_eq!(&out[48..52], &[0x9c, 0x40, 0x01, 0xbb]);
    }
}
