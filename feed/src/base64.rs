//! Standard base64 (RFC 4648 section 4, with padding) for `bytes` columns
//! in JSON, by the `base64` crate. Decoding is strict: padding is
//! required, non-canonical trailing bits and whitespace are refused, so
//! every byte string has exactly one accepted text.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

pub use base64::DecodeError;

pub fn encode(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

pub fn decode(text: &str) -> Result<Vec<u8>, DecodeError> {
    STANDARD.decode(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_4648_test_vectors() {
        for (plain, coded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(encode(plain.as_bytes()), coded);
            assert_eq!(decode(coded).unwrap(), plain.as_bytes());
        }
        for bad in [
            "Zg=", "Zh==", "Z===", "Zg==Zg==", "Zm9v!", "Zm 9", "Zg", "Zm8", "Zm9v\n", "Zm-_",
        ] {
            assert!(decode(bad).is_err(), "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn round_trips(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
            proptest::prop_assert_eq!(decode(&encode(&bytes)).unwrap(), bytes);
        }

        #[test]
        fn every_accepted_text_is_the_encoding_of_what_it_decodes_to(text in "[A-Za-z0-9+/=]{0,16}") {
            if let Ok(bytes) = decode(&text) {
                proptest::prop_assert_eq!(encode(&bytes), text);
            }
        }
    }
}
