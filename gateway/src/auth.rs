//! Bearer JWTs: who is asking, for which organization, in which role. Every request that can see
//! data carries one, in `Authorization: Bearer …` or, for browsers that cannot set headers on a
//! WebSocket, the `access_token` query parameter. Tokens are HS256 with the engine's secret
//! (`winnerr token`, development), or RS256 from the CRM's identity provider, checked against its
//! published keys (a JWKS file) and, if configured, its issuer and audience.

use std::fmt;
use std::time::Duration;

use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Deserializer, Serialize};
use winnerr_events::{OrgId, Role, UserId};

use crate::metrics;

/// What a token says about its bearer. Identity providers' names are read too: `org_id` for
/// `org`, and `org_role` for `role`, with or without an `org:` prefix (`org:admin`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user.
    pub sub: UserId,
    /// The user's organization; the only one whose data they see.
    #[serde(alias = "org_id")]
    pub org: OrgId,
    #[serde(alias = "org_role", deserialize_with = "role_claim")]
    pub role: Role,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
}

/// A role as the engine or an identity provider writes it: `agent` (or `member`), `manager`,
/// `admin` (or `owner`), each optionally prefixed `org:`.
fn role_claim<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Role, D::Error> {
    let raw = String::deserialize(deserializer)?;
    match raw.strip_prefix("org:").unwrap_or(&raw) {
        "agent" | "member" => Ok(Role::Agent),
        "manager" => Ok(Role::Manager),
        "admin" | "owner" => Ok(Role::Admin),
        _ => Err(serde::de::Error::custom(format!("unknown role {raw:?}"))),
    }
}

/// The identity provider's signing keys (RS256), with the issuer and audience its tokens must
/// name when those are configured.
#[derive(Clone)]
pub struct Jwks {
    keys: Vec<(Option<String>, DecodingKey)>,
    validation: Validation,
}

impl fmt::Debug for Jwks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kids: Vec<_> = self.keys.iter().map(|(kid, _)| kid).collect();
        f.debug_struct("Jwks").field("kids", &kids).finish()
    }
}

/// A JWKS document that cannot verify tokens.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("not a JWKS document: {0}")]
    NotJwks(#[source] serde_json::Error),
    #[error("key {kid:?}: {source}")]
    BadKey {
        kid: Option<String>,
        #[source]
        source: jsonwebtoken::errors::Error,
    },
    #[error("the JWKS document has no RSA key")]
    NoRsaKey,
}

impl Jwks {
    /// Reads a JWKS document (`{"keys":[…]}`); its RSA keys are used, others skipped.
    pub fn parse(
        json: &str,
        issuer: Option<&str>,
        audience: Option<&str>,
    ) -> Result<Self, JwksError> {
        let set: JwkSet = serde_json::from_str(json).map_err(JwksError::NotJwks)?;
        let keys: Vec<_> = set
            .keys
            .iter()
            .filter(|jwk| {
                matches!(
                    jwk.algorithm,
                    jsonwebtoken::jwk::AlgorithmParameters::RSA(_)
                )
            })
            .map(|jwk| {
                DecodingKey::from_jwk(jwk)
                    .map(|key| (jwk.common.key_id.clone(), key))
                    .map_err(|source| JwksError::BadKey {
                        kid: jwk.common.key_id.clone(),
                        source,
                    })
            })
            .collect::<Result<_, _>>()?;
        if keys.is_empty() {
            return Err(JwksError::NoRsaKey);
        }
        let mut validation = Validation::new(Algorithm::RS256);
        validation.leeway = LEEWAY_S;
        validation.set_required_spec_claims(&["exp", "sub"]);
        if let Some(issuer) = issuer {
            validation.set_issuer(&[issuer]);
            validation.required_spec_claims.insert("iss".into());
        }
        match audience {
            Some(audience) => {
                validation.set_audience(&[audience]);
                validation.required_spec_claims.insert("aud".into());
            }
            None => validation.validate_aud = false,
        }
        Ok(Self { keys, validation })
    }

    /// The key a token's header names (`kid`), or the only key when it names none.
    fn key(&self, kid: Option<&str>) -> Option<&DecodingKey> {
        match kid {
            Some(kid) => self
                .keys
                .iter()
                .find(|(id, _)| id.as_deref() == Some(kid))
                .map(|(_, key)| key),
            None if self.keys.len() == 1 => Some(&self.keys[0].1),
            None => None,
        }
    }
}

/// Seconds of clock difference tolerated on expiry.
const LEEWAY_S: u64 = 5;

/// Why a request was not authenticated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no bearer token")]
    Missing,
    #[error("token expired")]
    Expired,
    #[error("invalid token")]
    Invalid,
}

impl AuthError {
    fn label(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::Expired => "expired",
            AuthError::Invalid => "invalid",
        }
    }
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        (
            StatusCode::UNAUTHORIZED,
            [(WWW_AUTHENTICATE, "Bearer")],
            format!("{self}\n"),
        )
            .into_response()
    }
}

/// Issues and checks HS256 tokens with the engine's secret; checks RS256 tokens against the
/// identity provider's keys when it has them.
#[derive(Clone)]
pub struct Auth {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    /// Whether HS256 tokens are accepted.
    hs256: bool,
    jwks: Option<Jwks>,
}

impl Auth {
    pub fn new(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = LEEWAY_S;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            hs256: true,
            jwks: None,
        }
    }

    /// Refuses every HS256 token (an identity provider's tokens are the only ones).
    pub fn without_hs256(mut self) -> Self {
        self.hs256 = false;
        self
    }

    /// Also accepts RS256 tokens signed with one of `jwks`'s keys.
    pub fn with_jwks(mut self, jwks: Jwks) -> Self {
        self.jwks = Some(jwks);
        self
    }

    /// A token for `user` of `org` valid for `ttl`.
    pub fn issue(&self, user: &UserId, org: &OrgId, role: Role, ttl: Duration) -> String {
        let claims = Claims {
            sub: user.clone(),
            org: org.clone(),
            role,
            exp: winnerr_events::event::now_ms() / 1000 + ttl.as_secs(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing cannot fail")
    }

    /// Checks a token's signature, expiry and claims. Each algorithm is checked only with its
    /// own keys: an RS256 header never gets the HMAC secret, nor the reverse.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Invalid)?;
        let (key, validation) = match (header.alg, &self.jwks) {
            (Algorithm::HS256, _) if self.hs256 => (&self.decoding, &self.validation),
            (Algorithm::RS256, Some(jwks)) => (
                jwks.key(header.kid.as_deref()).ok_or(AuthError::Invalid)?,
                &jwks.validation,
            ),
            _ => return Err(AuthError::Invalid),
        };
        jsonwebtoken::decode::<Claims>(token, key, validation)
            .map(|data| data.claims)
            .map_err(|err| match err.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => AuthError::Expired,
                _ => AuthError::Invalid,
            })
    }

    /// Authenticates a request from its `Authorization` header or `access_token` query value.
    pub fn authenticate(
        &self,
        headers: &HeaderMap,
        query_token: Option<&str>,
    ) -> Result<Claims, AuthError> {
        let header_token = headers
            .get(AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "));
        let result = match header_token.or(query_token) {
            Some(token) => self.verify(token.trim()),
            None => Err(AuthError::Missing),
        };
        if let Err(err) = &result {
            metrics::auth_failed(err.label());
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_tokens_verify_and_others_do_not() {
        let auth = Auth::new(b"secret");
        let user = UserId::parse("u1").unwrap();
        let org = OrgId::parse("acme").unwrap();
        let token = auth.issue(&user, &org, Role::Manager, Duration::from_secs(60));
        let claims = auth.verify(&token).unwrap();
        assert_eq!(
            (claims.sub, claims.org, claims.role),
            (user.clone(), org.clone(), Role::Manager)
        );
        assert_eq!(Auth::new(b"other").verify(&token), Err(AuthError::Invalid));
        assert_eq!(auth.verify("garbage"), Err(AuthError::Invalid));
        let mut tampered = token.clone();
        tampered.insert(tampered.len() / 2, 'x');
        assert_eq!(auth.verify(&tampered), Err(AuthError::Invalid));
    }

    #[test]
    fn without_hs256_no_hs256_token_verifies() {
        let auth = Auth::new(b"secret");
        let token = auth.issue(
            &UserId::parse("u1").unwrap(),
            &OrgId::parse("acme").unwrap(),
            Role::Admin,
            Duration::from_secs(60),
        );
        assert!(auth.verify(&token).is_ok());
        assert_eq!(auth.without_hs256().verify(&token), Err(AuthError::Invalid));
    }

    #[test]
    fn expired_tokens_are_refused() {
        let auth = Auth::new(b"secret");
        let claims = Claims {
            sub: UserId::parse("u1").unwrap(),
            org: OrgId::parse("acme").unwrap(),
            role: Role::Agent,
            exp: winnerr_events::event::now_ms() / 1000 - 120,
        };
        let token =
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &auth.encoding).unwrap();
        assert_eq!(auth.verify(&token), Err(AuthError::Expired));
    }

    const TEST_KEY: &[u8] = include_bytes!("../tests/fixtures/idp-test-key.der");
    const TEST_JWKS: &str = include_str!("../tests/fixtures/idp-test-jwks.json");

    fn idp_token(kid: Option<&str>, claims: serde_json::Value) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&header, &claims, &EncodingKey::from_rsa_der(TEST_KEY)).unwrap()
    }

    #[test]
    fn identity_provider_tokens_verify_against_its_keys_with_its_claim_names() {
        let exp = winnerr_events::event::now_ms() / 1000 + 60;
        let jwks = Jwks::parse(TEST_JWKS, Some("https://idp.example"), Some("winnerr")).unwrap();
        let auth = Auth::new(b"secret").with_jwks(jwks);
        let good = serde_json::json!({
            "sub": "user_2x", "org_id": "org_acme", "org_role": "org:admin",
            "exp": exp, "iss": "https://idp.example", "aud": "winnerr",
        });
        let claims = auth
            .verify(&idp_token(Some("test-key-1"), good.clone()))
            .unwrap();
        assert_eq!(
            (claims.sub.as_str(), claims.org.as_str(), claims.role),
            ("user_2x", "org_acme", Role::Admin)
        );
        // The only key serves a token that names none; an unknown key id is refused.
        assert!(auth.verify(&idp_token(None, good.clone())).is_ok());
        assert_eq!(
            auth.verify(&idp_token(Some("other"), good.clone())),
            Err(AuthError::Invalid)
        );
        for (field, value) in [
            ("iss", serde_json::json!("https://elsewhere")),
            ("aud", serde_json::json!("someone-else")),
            ("org_role", serde_json::json!("org:superuser")),
        ] {
            let mut claims = good.clone();
            claims[field] = value;
            assert_eq!(
                auth.verify(&idp_token(Some("test-key-1"), claims)),
                Err(AuthError::Invalid),
                "{field}"
            );
        }
        let mut expired = good.clone();
        expired["exp"] = serde_json::json!(exp - 600);
        assert_eq!(
            auth.verify(&idp_token(Some("test-key-1"), expired)),
            Err(AuthError::Expired)
        );
        // Without the identity provider's keys, its tokens are refused.
        assert_eq!(
            Auth::new(b"secret").verify(&idp_token(Some("test-key-1"), good)),
            Err(AuthError::Invalid)
        );
    }

    #[test]
    fn a_token_cannot_pick_a_weaker_key_by_its_header() {
        // An HS256 token signed with the identity provider's public modulus as the secret.
        let jwks = Jwks::parse(TEST_JWKS, None, None).unwrap();
        let auth = Auth::new(b"secret").with_jwks(jwks);
        let claims = Claims {
            sub: UserId::parse("u1").unwrap(),
            org: OrgId::parse("acme").unwrap(),
            role: Role::Admin,
            exp: winnerr_events::event::now_ms() / 1000 + 60,
        };
        let forged = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(TEST_JWKS.as_bytes()),
        )
        .unwrap();
        assert_eq!(auth.verify(&forged), Err(AuthError::Invalid));
        let mut none = Header::new(Algorithm::HS384);
        none.kid = Some("test-key-1".into());
        let other_alg =
            jsonwebtoken::encode(&none, &claims, &EncodingKey::from_secret(b"secret")).unwrap();
        assert_eq!(auth.verify(&other_alg), Err(AuthError::Invalid));
        assert!(Jwks::parse("{\"keys\":[]}", None, None).is_err());
        assert!(Jwks::parse("not json", None, None).is_err());
    }

    #[test]
    fn reads_the_header_before_the_query() {
        let auth = Auth::new(b"secret");
        let token = auth.issue(
            &UserId::parse("u1").unwrap(),
            &OrgId::parse("o").unwrap(),
            Role::Agent,
            Duration::from_secs(60),
        );
        let mut headers = HeaderMap::new();
        assert_eq!(auth.authenticate(&headers, None), Err(AuthError::Missing));
        assert!(auth.authenticate(&headers, Some(&token)).is_ok());
        headers.insert(AUTHORIZATION, format!("Bearer {token}").parse().unwrap());
        assert!(auth.authenticate(&headers, Some("bad")).is_ok());
    }
}
