//! The ids of FIFO queues: the characters SQS allows in them, receive request attempt
//! ids, and the deduplication id a continuation is sent with.
//!
//! `MessageGroupId`, `MessageDeduplicationId` and `ReceiveRequestAttemptId` share one
//! rule: 1 to 128 characters, each an ASCII letter, digit or punctuation mark
//! (``!"#$%&'()*+,-./:;<=>?@[\]^_`{|}~``).

use std::fmt;

use sha2::{Digest, Sha256};

/// The longest `MessageGroupId`, `MessageDeduplicationId` or `ReceiveRequestAttemptId`.
pub const MAX_FIFO_ID_LEN: usize = 128;

/// Characters in a [`ReceiveAttemptId`]: letters and digits draw 190 random bits.
const ATTEMPT_ID_LEN: usize = 32;

/// Whether `id` is a valid `MessageGroupId`, `MessageDeduplicationId` or
/// `ReceiveRequestAttemptId`.
pub(crate) fn is_valid_fifo_id(id: &str) -> bool {
    (1..=MAX_FIFO_ID_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte.is_ascii_punctuation())
}

/// The lowercase hex SHA-256 of `data`, as SQS derives a content-based deduplication id
/// from a body.
pub(crate) fn sha256_hex(data: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(data);
    let mut hex = String::with_capacity(2 * digest.len());
    for byte in digest.iter() {
        hex.push(char::from(HEX[usize::from(byte >> 4)]));
        hex.push(char::from(HEX[usize::from(byte & 0xf)]));
    }
    hex
}

/// The `MessageDeduplicationId` of the continuation of the message `message_id`, on
/// every FIFO queue (with content-based deduplication too, which it overrides): the
/// message id itself (an SQS
/// message id is a UUID, a valid id), or its SHA-256 when it is not a valid id.
///
/// It names the message, not the receive: when a message's continuation was sent but
/// its delete failed, the message comes back, its handler hands on again, and SQS drops
/// the second continuation as a duplicate (within its 5-minute window), so the next
/// step runs once.
pub(crate) fn continuation_deduplication_id(message_id: &str) -> String {
    if is_valid_fifo_id(message_id) {
        message_id.to_owned()
    } else {
        sha256_hex(message_id.as_bytes())
    }
}

/// A `ReceiveRequestAttemptId`: a receive of a FIFO queue sent again with the same id
/// within 5 minutes returns the messages the first one took (with the same receipt
/// handles, their visibility timeout started again) instead of leaving them invisible
/// until their timeout, as long as none of them was deleted or had its visibility
/// changed. Standard queues ignore it.
///
/// Thirty-two random letters and digits; cheap to copy.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReceiveAttemptId([u8; ATTEMPT_ID_LEN]);

impl ReceiveAttemptId {
    /// A fresh random id.
    pub fn random() -> Self {
        let mut id = [0_u8; ATTEMPT_ID_LEN];
        for byte in &mut id {
            // `alphanumeric` draws ASCII only, so the fallback is never taken.
            *byte = u8::try_from(fastrand::alphanumeric()).unwrap_or(b'a');
        }
        Self(id)
    }

    /// The id as sent to the queue.
    pub fn as_str(&self) -> &str {
        // Only ASCII letters and digits are ever stored.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl fmt::Debug for ReceiveAttemptId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ReceiveAttemptId({})", self.as_str())
    }
}

impl fmt::Display for ReceiveAttemptId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_ids_are_ascii_letters_digits_and_punctuation_up_to_128() {
        assert!(is_valid_fifo_id("tenant-7"));
        assert!(is_valid_fifo_id(r##"!"#$%&'()*+,-./:;<=>?@[\]^_`{|}~"##));
        assert!(is_valid_fifo_id(&"a".repeat(MAX_FIFO_ID_LEN)));
        assert!(!is_valid_fifo_id(""));
        assert!(!is_valid_fifo_id(&"a".repeat(MAX_FIFO_ID_LEN + 1)));
        assert!(!is_valid_fifo_id("with space"));
        assert!(!is_valid_fifo_id("é"));
    }

    #[test]
    fn sha256_is_the_lowercase_hex_digest() {
        assert_eq!(
            sha256_hex(b"hello"),
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
    }

    #[test]
    fn a_continuation_is_deduplicated_by_the_message_it_continues() {
        let id = "0e9c9b7e-2d4a-4f57-9a35-1d9c5a1e8f30";
        assert_eq!(continuation_deduplication_id(id), id);
        // Not a valid id (a space; too long): hashed into one.
        for odd in ["message 1".to_owned(), "m".repeat(200)] {
            let derived = continuation_deduplication_id(&odd);
            assert_eq!(derived, sha256_hex(odd.as_bytes()));
            assert!(is_valid_fifo_id(&derived), "{derived}");
        }
        assert_ne!(
            continuation_deduplication_id("message 1"),
            continuation_deduplication_id("message 2")
        );
    }

    #[test]
    fn attempt_ids_are_valid_and_distinct() {
        let (first, second) = (ReceiveAttemptId::random(), ReceiveAttemptId::random());
        assert!(is_valid_fifo_id(first.as_str()), "{first}");
        assert_eq!(first.as_str().len(), ATTEMPT_ID_LEN);
        assert_ne!(first, second);
    }
}
