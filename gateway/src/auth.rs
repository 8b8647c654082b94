//! Bearer JWTs (HS256): who is asking, for which organization, in which role. Every request that
//! can see data carries one, in `Authorization: Bearer …` or, for browsers that cannot set headers
//! on a WebSocket, the `access_token` query parameter.

use std::time::Duration;

use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use winnerr_events::{OrgId, Role, UserId};

use crate::metrics;

/// What a token says about its bearer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user.
    pub sub: UserId,
    /// The user's organization; the only one whose data they see.
    pub org: OrgId,
    pub role: Role,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
}

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

/// Issues and checks tokens with one shared secret.
#[derive(Clone)]
pub struct Auth {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl Auth {
    pub fn new(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
        }
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

    /// Checks a token's signature, expiry and claims.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
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
