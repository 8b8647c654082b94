//! `X-Twilio-Signature`: HMAC-SHA1, keyed with the account's auth token, over the full request URL
//! followed by the POST parameters sorted by name (each name then value, no separators), base64.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha1::Sha1;

type HmacSha1 = Hmac<Sha1>;

fn mac_over(auth_token: &str, url: &str, params: &[(String, String)]) -> HmacSha1 {
    let mut mac =
        HmacSha1::new_from_slice(auth_token.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(url.as_bytes());
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    mac
}

/// The signature Twilio sends for a request to `url` with form `params` (empty for GET).
pub fn sign(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    STANDARD.encode(mac_over(auth_token, url, params).finalize().into_bytes())
}

/// Whether `signature` is Twilio's for this request; compared in constant time.
pub fn verify(auth_token: &str, url: &str, params: &[(String, String)], signature: &str) -> bool {
    let Ok(expected) = STANDARD.decode(signature.trim()) else {
        return false;
    };
    mac_over(auth_token, url, params)
        .verify_slice(&expected)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> Vec<(String, String)> {
        [
            ("To", "+18005551212"),
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+12349013030"),
            ("Digits", "1234"),
            ("From", "+12349013030"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    #[test]
    fn matches_twilios_documented_example() {
        // Twilio's security documentation: this token, URL and these parameters sign to this value.
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        assert_eq!(
            sign("12345", url, &params()),
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        );
        assert!(verify(
            "12345",
            url,
            &params(),
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        ));
    }

    #[test]
    fn refuses_a_wrong_token_url_parameter_or_garbage() {
        let url = "wss://example.com/twilio/stream";
        let good = sign("token", url, &[]);
        assert!(verify("token", url, &[], &good));
        assert!(!verify("other", url, &[], &good));
        assert!(!verify(
            "token",
            "wss://example.com/twilio/stream?x=1",
            &[],
            &good
        ));
        assert!(!verify("token", url, &params(), &good));
        assert!(!verify("token", url, &[], "not base64!"));
        assert!(!verify("token", url, &[], ""));
    }
}
