//! SYN cookies (`forward::syncookie`): what a SYN proxy's SYN-ACK carries and
//! what the client's ACK must give back.
//!
//! Input: a family byte (bit 0 IPv6 client, bit 1 IPv6 VIP), two 16-byte keys,
//! the client's and the VIP's address and port, the client's ISN, the minute
//! counter, the MSS the client offered (0: none), an age byte, the timestamp
//! clock, a window-scale byte (bit 7: none offered), SACK and ECN bits, then an
//! arbitrary TSecr and an arbitrary cookie (zeros past the end of the input).
//!
//! Checked: the MSS index is Linux's (the largest table value not above the
//! offer); a cookie made now validates, with the same index, for `MAX_AGE`
//! minutes and never after (the age counts modulo the 8-bit minute field, as
//! Linux's); after one key rotation it still validates with the previous key,
//! and one made with the new key validates too; the SYN-ACK's TSval is never
//! ahead of the clock by the 6 option bits and decodes back to the options
//! offered (window scale at most 14); an arbitrary TSecr decodes to a window
//! scale of at most 14 or is refused; an arbitrary cookie validates only to an
//! index within the MSS table. Refusals under an unrelated key are not asserted:
//! a random cookie passes a key with a probability of about 2^-29 (2 minutes of
//! 256, 4 indexes of 2^24), which a long enough campaign meets (one did, with an
//! old key's cookie passing the new key after a rotation:
//! `corpus/syn_cookie/crash-old-cookie-passes-new-key`).

#![no_main]

use ferrovs_core::forward::syncookie::{
    check, decode_timestamp, encode_timestamp, make, mss_index, CookieFlow, CookieKeys,
    CookieOptions, CookieSecret, MAX_AGE, MSS_TABLE,
};
use libfuzzer_sys::fuzz_target;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// `N` bytes from the front of `input` (zeros past its end).
fn take<const N: usize>(input: &mut &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    let k = N.min(input.len());
    out[..k].copy_from_slice(&input[..k]);
    *input = &input[k..];
    out
}

fn u32_of(input: &mut &[u8]) -> u32 {
    u32::from_be_bytes(take::<4>(input))
}

fn key(input: &mut &[u8]) -> CookieSecret {
    let b = take::<16>(input);
    let (k0, k1) = b.split_at(8);
    CookieSecret::from_words(
        u64::from_le_bytes(k0.try_into().unwrap()),
        u64::from_le_bytes(k1.try_into().unwrap()),
    )
}

fn endpoint(v6: bool, input: &mut &[u8]) -> (IpAddr, u16) {
    let ip = if v6 {
        IpAddr::V6(Ipv6Addr::from(take::<16>(input)))
    } else {
        IpAddr::V4(Ipv4Addr::from(take::<4>(input)))
    };
    (ip, u16::from_be_bytes(take::<2>(input)))
}

fuzz_target!(|data: &[u8]| {
    let mut input = data;
    let [family] = take::<1>(&mut input);
    let k = key(&mut input);
    let fresh = key(&mut input);
    let client = endpoint(family & 1 != 0, &mut input);
    let vip = endpoint(family & 2 != 0, &mut input);
    let flow = CookieFlow::new(client, vip);
    let isn = u32_of(&mut input);
    let count = u32_of(&mut input);
    let mss = u16::from_be_bytes(take::<2>(&mut input));
    let [age, wscale_byte, bits] = take::<3>(&mut input);
    let ts_now = u32_of(&mut input);
    let tsecr = u32_of(&mut input);
    let arbitrary_cookie = u32_of(&mut input);

    // The MSS index, as Linux picks it.
    let offered = (mss != 0).then_some(mss);
    let idx = mss_index(offered);
    assert!(usize::from(idx) < MSS_TABLE.len());
    let m = offered.unwrap_or(536);
    assert!(idx == 0 || MSS_TABLE[usize::from(idx)] <= m, "{m}: index {idx}");
    assert!(
        usize::from(idx) + 1 == MSS_TABLE.len() || MSS_TABLE[usize::from(idx) + 1] > m,
        "{m}: index {idx} is not the largest that fits"
    );

    // Made now, valid for MAX_AGE minutes, never after.
    let cookie = make(&k, &flow, isn, count, idx);
    let same = CookieKeys {
        current: k,
        previous: k,
    };
    let age = u32::from(age);
    let got = check(&same, &flow, isn, cookie, count.wrapping_add(age));
    if age % 256 < MAX_AGE {
        assert_eq!(got, Some(idx), "a cookie {age} minutes old");
    } else {
        assert_eq!(got, None, "a cookie {age} minutes old");
    }

    // One rotation: the old key's cookie and the new key's both pass. The new
    // key is tried first, so an old cookie that also passes it by chance (about
    // 2^-29, as any unrelated cookie) gets the index the new key reads.
    let rotated = same.rotated(fresh);
    let fresh_only = CookieKeys {
        current: fresh,
        previous: fresh,
    };
    let by_chance = check(&fresh_only, &flow, isn, cookie, count);
    assert_eq!(
        check(&rotated, &flow, isn, cookie, count),
        by_chance.or(Some(idx))
    );
    let new_cookie = make(&fresh, &flow, isn, count, idx);
    assert_eq!(check(&rotated, &flow, isn, new_cookie, count), Some(idx));

    // The SYN-ACK's TSval: at most 63 behind the clock, and the options back.
    let wscale = (wscale_byte & 0x80 == 0).then_some(wscale_byte & 0x7f);
    let (sack, ecn) = (bits & 1 != 0, bits & 2 != 0);
    let ts = encode_timestamp(ts_now, wscale, sack, ecn);
    assert!(ts_now.wrapping_sub(ts) < 64, "TSval {ts} for a clock at {ts_now}");
    assert_eq!(
        decode_timestamp(idx, Some(ts)),
        Some(CookieOptions {
            mss_index: idx,
            wscale: wscale.map(|w| w.min(14)),
            sack,
            ecn,
        })
    );

    // Whatever a client sends back.
    if let Some(o) = decode_timestamp(idx, Some(tsecr)) {
        assert!(o.wscale.is_none_or(|w| w <= 14));
        assert_eq!(o.mss_index, idx);
    }
    if let Some(i) = check(&rotated, &flow, isn, arbitrary_cookie, count) {
        assert!(usize::from(i) < MSS_TABLE.len());
    }
});
