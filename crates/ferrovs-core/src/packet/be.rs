//! Big-endian (network byte order) field access: the one place that knows the byte
//! order of the header fields.
//!
//! Each header keeps its layout in its own `field` module (byte ranges, as in
//! smoltcp's `wire`); the views read and write those ranges through these functions
//! instead of each carrying its own `u16::from_be_bytes([b[0], b[1]])`.
//!
//! They are on the per-packet path, hence `#[inline(always)]` and no loops: the
//! value goes through a fixed-size array, which compiles to one load or store and a
//! byte swap. The slice index is the only bounds check, as in the hand-written
//! copies these replace; the views index ranges that `new_checked` validated once
//! (emitters, a buffer already sized for the header), so with the constant ranges
//! of a `field` module the compiler folds it into that validation.
//!
//! `at` must be exactly as wide as the value (2 bytes for `u16`, 4 for `u32`): a
//! range of another width is a layout bug and panics, like a range out of bounds.
//!
//! The `_ne_` functions read and write a field as memory holds it, with no swap: for
//! the Internet checksum, which comes out the same from words taken in either byte
//! order (RFC 1071 section 2(B)), so a rewrite that only sums fields need not swap
//! them.

use std::ops::Range;

/// The `N` bytes of `bytes`, which must be exactly `N` long.
#[inline(always)]
fn array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    bytes.try_into().expect("field range as wide as the value")
}

/// The big-endian `u16` in `buf[at]`.
#[inline(always)]
pub fn read_u16(buf: &[u8], at: Range<usize>) -> u16 {
    u16::from_be_bytes(array(&buf[at]))
}

/// Stores `value` big-endian in `buf[at]`.
#[inline(always)]
pub fn write_u16(buf: &mut [u8], at: Range<usize>, value: u16) {
    buf[at].copy_from_slice(&value.to_be_bytes());
}

/// The big-endian `u32` in `buf[at]`.
#[inline(always)]
pub fn read_u32(buf: &[u8], at: Range<usize>) -> u32 {
    u32::from_be_bytes(array(&buf[at]))
}

/// Stores `value` big-endian in `buf[at]`.
#[inline(always)]
pub fn write_u32(buf: &mut [u8], at: Range<usize>, value: u32) {
    buf[at].copy_from_slice(&value.to_be_bytes());
}

/// The `u16` in `buf[at]` as memory holds it.
#[inline(always)]
pub fn read_ne_u16(buf: &[u8], at: Range<usize>) -> u16 {
    u16::from_ne_bytes(array(&buf[at]))
}

/// Stores `value` in `buf[at]` as memory holds it.
#[inline(always)]
pub fn write_ne_u16(buf: &mut [u8], at: Range<usize>, value: u16) {
    buf[at].copy_from_slice(&value.to_ne_bytes());
}

/// The `u32` in `buf[at]` as memory holds it.
#[inline(always)]
pub fn read_ne_u32(buf: &[u8], at: Range<usize>) -> u32 {
    u32::from_ne_bytes(array(&buf[at]))
}

/// Stores `value` in `buf[at]` as memory holds it.
#[inline(always)]
pub fn write_ne_u32(buf: &mut [u8], at: Range<usize>, value: u32) {
    buf[at].copy_from_slice(&value.to_ne_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_order_is_the_bytes_as_they_are() {
        let mut buf = [0xee; 8];
        write_ne_u16(&mut buf, 1..3, u16::from_ne_bytes([0x12, 0x34]));
        write_ne_u32(&mut buf, 3..7, u32::from_ne_bytes([0x56, 0x78, 0x9a, 0xbc]));
        assert_eq!(buf, [0xee, 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xee]);
        // The big-endian value, stored to memory the way a register holds it.
        assert_eq!(read_ne_u16(&buf, 1..3), read_u16(&buf, 1..3).to_be());
        assert_eq!(read_ne_u32(&buf, 3..7), read_u32(&buf, 3..7).to_be());
    }

    #[test]
    fn reads_the_most_significant_byte_first() {
        let buf = [0xaa, 0x12, 0x34, 0x56, 0x78, 0xbb];
        assert_eq!(read_u16(&buf, 0..2), 0xaa12);
        assert_eq!(read_u16(&buf, 1..3), 0x1234);
        assert_eq!(read_u16(&buf, 4..6), 0x78bb);
        assert_eq!(read_u32(&buf, 1..5), 0x1234_5678);
        assert_eq!(read_u32(&buf, 2..6), 0x3456_78bb);
    }

    #[test]
    fn writes_the_most_significant_byte_first_and_only_the_range() {
        let mut buf = [0xee; 8];
        write_u16(&mut buf, 1..3, 0x1234);
        assert_eq!(buf, [0xee, 0x12, 0x34, 0xee, 0xee, 0xee, 0xee, 0xee]);
        write_u32(&mut buf, 3..7, 0x5678_9abc);
        assert_eq!(buf, [0xee, 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xee]);
    }

    #[test]
    fn agrees_with_the_standard_conversions() {
        let mut buf = [0u8; 7];
        for v in [0u32, 1, 0x00ff, 0xff00, 0x8000_0001, 0xdead_beef, u32::MAX] {
            write_u32(&mut buf, 3..7, v);
            assert_eq!(buf[3..7], v.to_be_bytes());
            assert_eq!(read_u32(&buf, 3..7), v);
            let v = v as u16;
            write_u16(&mut buf, 1..3, v);
            assert_eq!(buf[1..3], v.to_be_bytes());
            assert_eq!(read_u16(&buf, 1..3), v);
        }
    }

    #[test]
    #[should_panic(expected = "as wide as the value")]
    fn a_read_range_of_the_wrong_width_panics() {
        read_u16(&[1, 2, 3, 4], 0..4);
    }

    #[test]
    #[should_panic]
    fn a_write_range_of_the_wrong_width_panics() {
        write_u32(&mut [0; 4], 0..2, 1);
    }

    #[test]
    #[should_panic]
    fn a_range_past_the_buffer_panics() {
        read_u32(&[1, 2, 3], 0..4);
    }
}
