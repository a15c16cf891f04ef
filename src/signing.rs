//! HMAC-SHA256 signing shared by the Socket.IO `join` and the signed REST calls.
//!
//! CoinDCX signs two things with the API secret: the constant join message
//! `{"channel":"coindcx"}` and the exact bytes of every private REST body. Both produce lowercase
//! hex. The values are credentials: never log them.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The 21 bytes the `join` signature covers (key `channel`, not `channelName`).
pub const JOIN_MESSAGE: &[u8] = br#"{"channel":"coindcx"}"#;

/// Lowercase hex HMAC-SHA256 of `message` keyed with `secret`.
pub fn sign(secret: &str, message: &[u8]) -> String {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail here.
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(message);
    hex::encode(mac.finalize().into_bytes())
}

/// The `authSignature` of the `join` payload for `secret`.
pub fn join_signature(secret: &str) -> String {
    sign(secret, JOIN_MESSAGE)
}

/// Constant-time comparison of two signatures or tokens.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_vectors_match_fixtures() {
        assert_eq!(
            join_signature("YYYY"),
            "c8f94ab0ff0372da5b20dfa616c8a1abd06341fa2c0ea19559decc4c8485b989"
        );
        assert_eq!(
            join_signature("secret"),
            "a26225db835786cf45692290ab96c7abc51046ebafc49307cf04f325a22d56ca"
        );
    }

    #[test]
    fn rest_vectors_match_fixtures() {
        let cancel = r#"{"timestamp":1741605301500,"id":"9b2e4f70-1c3d-4e8a-a6b5-2f0d9c8e7a13"}"#;
        assert_eq!(
            sign("secret", cancel.as_bytes()),
            "01843081ef29bcb8137504ac5798f19b6c495bd02029a20fc958190b1cfd3752"
        );
        assert_eq!(
            sign("secret", br#"{"timestamp":1741605000000}"#),
            "7f5cedce18e1e00e44eba2e37d33f655154a2cf8cffc0a0402a4d1a4643bbad6"
        );
    }
}
