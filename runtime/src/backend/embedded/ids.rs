//! Message ids and receipt handles of the embedded queue.
//!
//! Both are rendered from numbers the store already holds, so neither needs a lookup
//! table: a message id from the queue it was first sent to and a sequence number, a
//! receipt handle from the queue, the message's index in the store and the token of one
//! receive. Tokens are never reused within a queue, which is what makes an old handle
//! stale once the message is received again, deleted, or its index reused.

use std::sync::Arc;

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Hex digits in a receipt handle: queue id (8), index (16), receive token (16).
const HANDLE_LEN: usize = 8 + 16 + 16;

/// The id of a message, stable across receives and kept when the message is moved to
/// a dead-letter queue, as SQS keeps it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct MessageId {
    /// The queue the message was first sent to.
    pub(super) queue: u32,
    /// Cosmetic bits of that queue so ids of different queues do not look alike.
    pub(super) salt: u32,
    /// The message's sequence number in that queue.
    pub(super) seq: u64,
}

impl MessageId {
    /// Renders the id in the shape of a UUID (`8-4-4-4-12` hex digits), like SQS ids.
    ///
    /// Unique per (queue, seq): the queue id fills the first group and all 64 bits of
    /// the sequence number appear in the second and last groups.
    pub(super) fn render(self) -> String {
        let mut id = String::with_capacity(36);
        push_hex(&mut id, u64::from(self.queue), 8);
        id.push('-');
        push_hex(&mut id, self.seq >> 48, 4);
        id.push_str("-4");
        push_hex(&mut id, u64::from(self.salt >> 12), 3);
        id.push_str("-a");
        push_hex(&mut id, u64::from(self.salt), 3);
        id.push('-');
        push_hex(&mut id, self.seq, 12);
        id
    }
}

/// What a receipt handle names: one receive of the message in one index of one queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct HandleParts {
    /// The queue that handed out the handle.
    pub(super) queue: u32,
    /// The message's index in that queue's store.
    pub(super) index: usize,
    /// The token of the receive; the handle is current while the message holds it.
    pub(super) token: u64,
}

impl HandleParts {
    /// Renders the handle as fixed-width hex: one allocation, straight into the `Arc`.
    pub(super) fn render(self) -> Arc<str> {
        let mut buf = [0_u8; HANDLE_LEN];
        write_hex(&mut buf[..8], u64::from(self.queue));
        write_hex(&mut buf[8..24], self.index as u64);
        write_hex(&mut buf[24..], self.token);
        // Every byte is an ASCII hex digit, so the lossy branch is never taken; it only
        // spares a panic path. Going through `&str` makes this the one allocation.
        match std::str::from_utf8(&buf) {
            Ok(handle) => Arc::from(handle),
            Err(_) => Arc::from(String::from_utf8_lossy(&buf).as_ref()),
        }
    }

    /// Reads a handle back; `None` for anything this module did not render.
    pub(super) fn parse(handle: &str) -> Option<Self> {
        let bytes = handle.as_bytes();
        if bytes.len() != HANDLE_LEN {
            return None;
        }
        let queue = u32::try_from(read_hex(&bytes[..8])?).ok()?;
        let index = usize::try_from(read_hex(&bytes[8..24])?).ok()?;
        let token = read_hex(&bytes[24..])?;
        Some(Self {
            queue,
            index,
            token,
        })
    }
}

/// Appends the low `digits` nibbles of `value`, most significant first.
fn push_hex(out: &mut String, value: u64, digits: u32) {
    for shift in (0..digits).rev() {
        out.push(char::from(HEX[nibble(value, shift)]));
    }
}

/// Fills `out` with the low nibbles of `value`, most significant first.
fn write_hex(out: &mut [u8], value: u64) {
    let digits = out.len();
    for (i, byte) in out.iter_mut().enumerate() {
        // `digits - 1 - i` cannot underflow: `i < digits`.
        *byte = HEX[nibble(value, (digits - 1 - i) as u32)];
    }
}

fn nibble(value: u64, shift: u32) -> usize {
    // Shifts past 63 bits are zero digits, not an overflow.
    (value.checked_shr(shift * 4).unwrap_or(0) & 0xf) as usize
}

/// Parses lowercase or uppercase hex of at most 16 digits; no sign, no prefix.
fn read_hex(digits: &[u8]) -> Option<u64> {
    digits.iter().try_fold(0_u64, |acc, &digit| {
        let value = char::from(digit).to_digit(16)?;
        Some((acc << 4) | u64::from(value))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handle_round_trips() {
        let parts = HandleParts {
            queue: 7,
            index: 123_456,
            token: u64::MAX - 1,
        };
        let handle = parts.render();
        assert_eq!(handle.len(), HANDLE_LEN);
        assert_eq!(HandleParts::parse(&handle), Some(parts));
    }

    #[test]
    fn foreign_strings_are_not_handles() {
        let valid = HandleParts {
            queue: 1,
            index: 2,
            token: 3,
        }
        .render();
        assert_eq!(HandleParts::parse(""), None);
        assert_eq!(HandleParts::parse("not a handle"), None);
        assert_eq!(HandleParts::parse(&valid[1..]), None);
        let signed = format!("+{}", &valid[1..]);
        assert_eq!(HandleParts::parse(&signed), None);
        let multibyte = format!("é{}", &valid[2..]);
        assert_eq!(HandleParts::parse(&multibyte), None);
    }

    #[test]
    fn message_ids_are_uuid_shaped_and_distinct() {
        let id = |queue, seq| {
            MessageId {
                queue,
                salt: 0xabcdef,
                seq,
            }
            .render()
        };
        let first = id(1, 1);
        assert_eq!(first.len(), 36);
        assert_eq!(
            first.split('-').map(str::len).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert_ne!(first, id(1, 2));
        assert_ne!(first, id(2, 1));
        assert_ne!(id(1, 1 << 48), id(1, 0));
    }
}
