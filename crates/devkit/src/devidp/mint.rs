//! Minting of ID tokens, access tokens and logout tokens, including the
//! deliberate ID token defects that [`super::Faults`] asks for.

use std::io;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::store::{Authorization, FamilyId};
use super::web::random_token;
use super::{DevUser, Shared};

/// Tokens issued by one successful token request.
#[derive(Debug)]
pub(super) struct Issued {
    pub(super) access_token: String,
    pub(super) id_token: String,
    pub(super) expires_in: u64,
}

/// The stable `sub` of a user: derived from the username so it survives restarts.
pub(super) fn subject(user: &DevUser) -> String {
    let digest = Sha256::digest(format!("portcullis-devidp:{}", user.username).as_bytes());
    let hex: String = digest.iter().take(16).map(|byte| format!("{byte:02x}")).collect();
    format!("dev-{hex}")
}

/// The profile claims of a user, shared by the ID token and userinfo.
pub(super) fn profile_claims(user: &DevUser) -> serde_json::Map<String, serde_json::Value> {
    let claims = json!({
        "sub": subject(user),
        "email": user.email,
        "email_verified": user.email_verified,
        "name": user.name,
        "preferred_username": user.username,
        "groups": user.groups,
    });
    match claims {
        serde_json::Value::Object(map) => map,
        _ => serde_json::Map::new(),
    }
}

fn seconds(duration: std::time::Duration) -> i64 {
    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)
}

/// Issues an access token and an ID token for `authorization`; `nonce` goes into
/// the ID token (absent on refresh, per OpenID Connect Core §12.2).
pub(super) fn issue(
    shared: &Shared,
    family: FamilyId,
    authorization: &Authorization,
    nonce: Option<&str>,
) -> io::Result<Issued> {
    let config = &shared.config;
    let user =
        config.users.get(authorization.user).ok_or_else(|| io::Error::other("the grant names an unknown user"))?;
    let now = config.clock.now();
    let access_lifetime = shared.faults.access_token_lifetime.get().unwrap_or(config.access_token_ttl);
    let access_ttl = seconds(access_lifetime);
    let jti = random_token(16);
    let access_claims = json!({
        "iss": shared.issuer,
        "sub": subject(user),
        "aud": config.client_id,
        "client_id": config.client_id,
        "exp": now.saturating_add(access_ttl),
        "iat": now,
        "scope": authorization.scope,
        "jti": jti,
    });
    let id_token = id_token(shared, user, authorization, nonce, now)?;
    let access_token = {
        let keys = shared.keys();
        let key = keys.current();
        key.sign("at+jwt", key.kid(), &access_claims)?
    };
    shared.store().record_access_token(jti, family);
    Ok(Issued { access_token, id_token, expires_in: access_lifetime.as_secs() })
}

fn id_token(
    shared: &Shared,
    user: &DevUser,
    authorization: &Authorization,
    nonce: Option<&str>,
    now: i64,
) -> io::Result<String> {
    let faults = &shared.faults;
    let client_id = &shared.config.client_id;
    let mut claims = profile_claims(user);
    let issuer = if faults.id_token_wrong_issuer.get() {
        format!("{}/not-the-issuer", shared.issuer)
    } else {
        shared.issuer.clone()
    };
    let audience = if faults.id_token_wrong_audience.get() { format!("not-{client_id}") } else { client_id.clone() };
    let (iat, exp) = if faults.id_token_expired.get() {
        (now.saturating_sub(900), now.saturating_sub(300))
    } else {
        (now, now.saturating_add(seconds(shared.config.id_token_ttl)))
    };
    if faults.id_token_other_subject.get() {
        claims.insert("sub".into(), json!("dev-someone-else"));
    }
    claims.insert("iss".into(), json!(issuer));
    claims.insert("aud".into(), json!(audience));
    claims.insert("azp".into(), json!(client_id));
    claims.insert("iat".into(), json!(iat));
    claims.insert("exp".into(), json!(exp));
    claims.insert("auth_time".into(), json!(authorization.auth_time));
    claims.insert("sid".into(), json!(authorization.sid));
    if let Some(groups) = faults.id_token_groups.get() {
        claims.insert("groups".into(), json!(groups.split(',').collect::<Vec<_>>()));
    }
    if let Some(padding) = faults.id_token_padding.get() {
        claims.insert("padding".into(), json!(padding));
    }
    if faults.id_token_wrong_nonce.get() {
        claims.insert("nonce".into(), json!(format!("wrong-{}", random_token(16))));
    } else if let Some(nonce) = nonce {
        claims.insert("nonce".into(), json!(nonce));
    }
    if let Some(omitted) = faults.id_token_omit_claim.get() {
        claims.remove(&omitted);
    }
    if let Some(overrides) = faults.id_token_claims.get() {
        claims.extend(overrides);
    }
    let claims = serde_json::Value::Object(claims);

    if faults.id_token_alg_none.get() {
        let header = json!({ "alg": "none", "typ": "JWT" });
        return Ok(format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        ));
    }
    let keys = shared.keys();
    let published_kid = keys.current().kid();
    if faults.id_token_hmac_with_public_key.get() {
        // The classic confusion: a verifier that takes `alg` from the token
        // would check this MAC with the public key as the secret.
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        header.kid = Some(published_kid.to_owned());
        let secret = keys.current().jwk().to_string();
        return jsonwebtoken::encode(&header, &claims, &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()))
            .map_err(io::Error::other);
    }
    if let Some(kid) = faults.id_token_kid.get() {
        return keys.current().sign("JWT", &kid, &claims);
    }
    if let Some(extension) = faults.id_token_critical.get() {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some(published_kid.to_owned());
        header.crit = Some(vec![extension.clone()]);
        header.extras.insert(extension, true);
        return keys.current().sign_with_header(&header, &claims);
    }
    if faults.id_token_bad_signature.get() {
        keys.rogue().sign("JWT", published_kid, &claims)
    } else {
        keys.current().sign("JWT", published_kid, &claims)
    }
}

/// A back-channel logout token for `username` (and `sid`, if given); `None` if
/// the user is unknown or signing fails.
pub(super) fn logout_token(shared: &Shared, username: &str, sid: Option<&str>) -> Option<String> {
    let user = shared.config.users.iter().find(|user| user.username == username)?;
    let now = shared.config.clock.now();
    let mut claims = json!({
        "iss": shared.issuer,
        "sub": subject(user),
        "aud": shared.config.client_id,
        "iat": now,
        "exp": now.saturating_add(120),
        "jti": random_token(16),
        "events": { "http://schemas.openid.net/event/backchannel-logout": {} },
    });
    if let Some(object) = claims.as_object_mut() {
        if let Some(sid) = sid {
            object.insert("sid".into(), json!(sid));
        }
        if shared.faults.logout_token_without_jti.get() {
            object.remove("jti");
        }
    }
    let keys = shared.keys();
    let key = keys.current();
    key.sign("logout+jwt", key.kid(), &claims).ok()
}
