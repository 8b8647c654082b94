//! Key rotation: every encrypted value not under the current key is decrypted with its old key
//! and encrypted again with the current one, in place; the rotation is audited.

use winnerr_events::OrgId;

use crate::audit::{self, AuditEntry};
use crate::crypto::FieldPlace;
use crate::{Dialect, Store, StoreError, on_tx};

/// Encrypted columns: (table, column, the row's place, as SQL). An utterance's id is unique only
/// within its call, so its place is `call/id`.
const ENCRYPTED: &[(&str, &str, &str)] = &[
    ("people", "email", "id"),
    ("people", "phone", "id"),
    ("users", "email", "id"),
    ("utterances", "text", "call_id || '/' || id"),
    ("dead_letters", "payload", "event_id"),
];

impl Store {
    /// Re-encrypts `org`'s values that are under an older key; returns how many changed.
    pub async fn rotate_keys(&self, org: &OrgId, actor: &str) -> Result<u64, StoreError> {
        let current = self.keys().current_key_id().to_owned();
        let mut tx = self.begin(org).await?;
        // SQLite's one connection holds the rows anyway; Postgres locks them.
        let lock = match tx.dialect() {
            Dialect::Postgres => " FOR UPDATE",
            Dialect::Sqlite => "",
        };
        crate::ensure_organization(&mut tx, org).await?;
        let mut changed = 0u64;
        for &(table, column, key) in ENCRYPTED {
            let select = format!(
                "SELECT {key} AS row_key, {column}_ciphertext AS bytes, {column}_key_id AS key_id \
                 FROM {table} WHERE organization_id = $1 AND {column}_ciphertext IS NOT NULL \
                 AND {column}_key_id <> $2{lock}"
            );
            let rows: Vec<(String, Vec<u8>, String)> = on_tx!(&mut tx, |conn, dialect| {
                sqlx::query_as(&select)
                    .bind(org.as_str())
                    .bind(&current)
                    .fetch_all(conn)
                    .await?
            });
            for (row_key, bytes, key_id) in rows {
                let place = FieldPlace {
                    org: org.as_str(),
                    table,
                    column,
                    row: &row_key,
                };
                let plaintext = self.keys().decrypt(&key_id, &bytes, place)?;
                let sealed = self.keys().encrypt(&plaintext, place);
                let update = format!(
                    "UPDATE {table} SET {column}_ciphertext = $2, {column}_key_id = $3 \
                     WHERE organization_id = $1 AND {key} = $4"
                );
                on_tx!(&mut tx, |conn, dialect| {
                    sqlx::query(&update)
                        .bind(org.as_str())
                        .bind(sealed.bytes)
                        .bind(&sealed.key_id)
                        .bind(&row_key)
                        .execute(conn)
                        .await
                        .map(drop)?
                });
                changed += 1;
            }
        }
        let entry = AuditEntry {
            actor,
            action: "keys.rotate",
            subject: &current,
            detail: serde_json::json!({ "values": changed }).to_string(),
        };
        audit::append(&mut tx, org, &entry).await?;
        tx.commit().await?;
        Ok(changed)
    }
}
