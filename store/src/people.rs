//! People (leads and clients). Email and phone are stored as AES-256-GCM ciphertext bound to the
//! person's row; a person is found by phone through a keyed hash of the normalized number.

use serde::{Deserialize, Serialize};
use sqlx::FromRow;
use winnerr_events::{OrgId, UserId};

use crate::crypto::{FieldPlace, Keyring, Sealed, normalize_phone};
use crate::{Sql, Store, StoreError, on_tx};

const TABLE: &str = "people";

/// A new person, or the fields of an update (absent fields are left as they are).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersonFields {
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub source: Option<String>,
    pub location: Option<String>,
    pub budget_min: Option<i64>,
    pub budget_max: Option<i64>,
    pub preferences: Option<serde_json::Value>,
    pub owner_user_id: Option<String>,
}

/// A person as the CRM shows them, contact details decrypted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Person {
    pub id: String,
    pub first_name: String,
    pub last_name: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub source: Option<String>,
    pub location: Option<String>,
    pub budget_min: Option<i64>,
    pub budget_max: Option<i64>,
    pub preferences: serde_json::Value,
    pub owner_user_id: Option<String>,
    /// Fields whose stored value did not decrypt (`email`, `phone`), shown as absent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unreadable: Vec<String>,
}

impl PersonFields {
    /// Checks the fields; `creating` requires a first name.
    pub fn validate(&self, creating: bool) -> Result<(), StoreError> {
        let invalid = |message: &str| Err(StoreError::Invalid(message.to_owned()));
        match &self.first_name {
            None if creating => return invalid("first_name is required"),
            Some(name) if name.trim().is_empty() || name.chars().count() > MAX_NAME_CHARS => {
                return invalid("first_name must be 1 to 200 characters");
            }
            _ => {}
        }
        for (name, value, max) in [
            ("last_name", &self.last_name, MAX_NAME_CHARS),
            ("source", &self.source, MAX_SOURCE_CHARS),
            ("location", &self.location, MAX_LOCATION_CHARS),
        ] {
            if value.as_ref().is_some_and(|v| v.chars().count() > max) {
                return Err(StoreError::Invalid(format!(
                    "{name} must be at most {max} characters"
                )));
            }
        }
        if let Some(owner) = &self.owner_user_id {
            if let Err(err) = UserId::parse(owner) {
                return Err(StoreError::Invalid(format!("owner_user_id: {err}")));
            }
        }
        if let Some(email) = &self.email {
            let at = email.find('@');
            if email.len() > 320 || at.is_none_or(|at| at == 0 || at == email.len() - 1) {
                return invalid("email is not an address");
            }
        }
        if let Some(phone) = &self.phone {
            let digits = normalize_phone(phone).trim_start_matches('+').len();
            if !(7..=15).contains(&digits) {
                return invalid("phone must have 7 to 15 digits");
            }
        }
        if let (Some(min), Some(max)) = (self.budget_min, self.budget_max) {
            if min > max {
                return invalid("budget_min is above budget_max");
            }
        }
        if self.budget_min.is_some_and(|b| b < 0) || self.budget_max.is_some_and(|b| b < 0) {
            return invalid("budgets cannot be negative");
        }
        if self.preferences.as_ref().is_some_and(|p| !p.is_object()) {
            return invalid("preferences must be an object");
        }
        if let Some(preferences) = &self.preferences {
            if serde_json::to_string(preferences)
                .map_or(true, |text| text.len() > MAX_PREFERENCES_BYTES)
            {
                return invalid("preferences must be at most 8 KiB of JSON");
            }
            if let Err(problem) = storable_json(preferences, 0) {
                return Err(StoreError::Invalid(format!("preferences: {problem}")));
            }
        }
        let texts = [
            &self.first_name,
            &self.last_name,
            &self.email,
            &self.phone,
            &self.source,
            &self.location,
            &self.owner_user_id,
        ];
        if texts.into_iter().flatten().any(|text| text.contains('\0')) {
            return invalid("text fields cannot contain NUL characters");
        }
        Ok(())
    }
}

/// Longest first or last name.
const MAX_NAME_CHARS: usize = 200;
/// Longest lead source ("zillow", "open house 2026-05-04").
const MAX_SOURCE_CHARS: usize = 100;
/// Longest location (a neighbourhood, an address).
const MAX_LOCATION_CHARS: usize = 300;

/// Largest `preferences` document, serialized.
const MAX_PREFERENCES_BYTES: usize = 8 * 1024;
/// Largest magnitude of a number in `preferences` that survives the database unchanged.
const MAX_PREFERENCE_NUMBER: f64 = 1e15;

/// Whether `value` round-trips through Postgres `jsonb` exactly: no NUL characters, numbers of
/// ordinary size, bounded nesting.
fn storable_json(value: &serde_json::Value, depth: usize) -> Result<(), &'static str> {
    use serde_json::Value;
    if depth > 8 {
        return Err("nested more than 8 levels");
    }
    match value {
        Value::String(text) if text.contains('\0') => Err("strings cannot contain NUL characters"),
        Value::Number(number)
            if number
                .as_f64()
                .is_none_or(|n| !n.is_finite() || n.abs() > MAX_PREFERENCE_NUMBER) =>
        {
            Err("numbers must be within ±1e15")
        }
        Value::Number(number) if number.as_f64().is_some_and(|n| n != 0.0 && n.abs() < 1e-9) => {
            Err("numbers must be within ±1e15")
        }
        Value::Array(items) => items
            .iter()
            .try_for_each(|item| storable_json(item, depth + 1)),
        Value::Object(fields) => fields.iter().try_for_each(|(key, item)| {
            if key.contains('\0') {
                return Err("keys cannot contain NUL characters");
            }
            storable_json(item, depth + 1)
        }),
        _ => Ok(()),
    }
}

fn place<'a>(org: &'a OrgId, column: &'static str, id: &'a str) -> FieldPlace<'a> {
    FieldPlace {
        org: org.as_str(),
        table: TABLE,
        column,
        row: id,
    }
}

/// A person's row as stored: contact details still sealed.
#[derive(FromRow)]
struct PersonRow {
    id: String,
    first_name: String,
    last_name: String,
    email_ciphertext: Option<Vec<u8>>,
    email_key_id: Option<String>,
    phone_ciphertext: Option<Vec<u8>>,
    phone_key_id: Option<String>,
    source: Option<String>,
    location: Option<String>,
    budget_min: Option<i64>,
    budget_max: Option<i64>,
    preferences: serde_json::Value,
    owner_user_id: Option<String>,
}

const PERSON_COLUMNS: &str = "id, first_name, last_name, email_ciphertext, email_key_id, \
    phone_ciphertext, phone_key_id, source, location, budget_min, budget_max, preferences, owner_user_id";

/// A sealed column's value: `Ok(None)` where it has none, `Err(())` where it does not decrypt.
fn open(
    keys: &Keyring,
    org: &OrgId,
    column: &'static str,
    id: &str,
    sealed: (Option<Vec<u8>>, Option<String>),
) -> Result<Option<String>, ()> {
    match sealed {
        (Some(bytes), Some(key_id)) => {
            let opened = keys.decrypt(&key_id, &bytes, place(org, column, id));
            crate::crypto::readable(opened, column, org, id)
                .map(Some)
                .ok_or(())
        }
        _ => Ok(None),
    }
}

fn person_from(keys: &Keyring, org: &OrgId, row: PersonRow) -> Result<Person, StoreError> {
    let mut unreadable = Vec::new();
    let mut sealed = |column: &'static str, value| {
        open(keys, org, column, &row.id, value).unwrap_or_else(|()| {
            unreadable.push(column.to_owned());
            None
        })
    };
    let email = sealed("email", (row.email_ciphertext, row.email_key_id));
    let phone = sealed("phone", (row.phone_ciphertext, row.phone_key_id));
    Ok(Person {
        email,
        phone,
        unreadable,
        first_name: row.first_name,
        last_name: row.last_name,
        source: row.source,
        location: row.location,
        budget_min: row.budget_min,
        budget_max: row.budget_max,
        preferences: row.preferences,
        owner_user_id: row.owner_user_id,
        id: row.id,
    })
}

fn seal(
    keys: &Keyring,
    org: &OrgId,
    column: &'static str,
    id: &str,
    value: &Option<String>,
) -> (Option<Vec<u8>>, Option<String>) {
    match value {
        Some(value) => {
            let Sealed { key_id, bytes } = keys.encrypt(value, place(org, column, id));
            (Some(bytes), Some(key_id))
        }
        None => (None, None),
    }
}

impl Store {
    /// Creates a person; returns them as stored.
    pub async fn create_person(
        &self,
        org: &OrgId,
        fields: &PersonFields,
    ) -> Result<Person, StoreError> {
        fields.validate(true)?;
        let mut tx = self.begin(org).await?;
        crate::ensure_organization(&mut tx, org).await?;
        let person = insert_person(&mut tx, self.keys(), org, fields).await?;
        tx.commit().await?;
        Ok(person)
    }

    pub async fn get_person(&self, org: &OrgId, id: &str) -> Result<Option<Person>, StoreError> {
        let sql =
            format!("SELECT {PERSON_COLUMNS} FROM people WHERE organization_id = $1 AND id = $2");
        let mut tx = self.begin(org).await?;
        let row: Option<PersonRow> = on_tx!(&mut tx, |conn, dialect| {
            sqlx::query_as(&sql)
                .bind(org.as_str())
                .bind(id)
                .fetch_optional(conn)
                .await?
        });
        tx.commit().await?;
        row.map(|row| person_from(self.keys(), org, row))
            .transpose()
    }

    /// Changes the given fields of a person; `None` when there is no such person.
    pub async fn update_person(
        &self,
        org: &OrgId,
        id: &str,
        fields: &PersonFields,
    ) -> Result<Option<Person>, StoreError> {
        fields.validate(false)?;
        let Some(current) = self.get_person(org, id).await? else {
            return Ok(None);
        };
        let keys = self.keys();
        let email = fields.email.clone().or(current.email);
        let phone = fields.phone.clone().or(current.phone);
        let (email_bytes, email_key) = seal(keys, org, "email", id, &email);
        let (phone_bytes, phone_key) = seal(keys, org, "phone", id, &phone);
        let lookup = phone
            .as_ref()
            .map(|p| keys.lookup_hash(org.as_str(), &normalize_phone(p)));
        let email_lookup = email
            .as_ref()
            .map(|e| keys.lookup_hash(org.as_str(), &normalize_email(e)));
        let budget_min = fields.budget_min.or(current.budget_min);
        let budget_max = fields.budget_max.or(current.budget_max);
        if let (Some(min), Some(max)) = (budget_min, budget_max) {
            if min > max {
                return Err(StoreError::Invalid("budget_min is above budget_max".into()));
            }
        }
        const UPDATE: Sql = Sql {
            postgres: "UPDATE people SET first_name = $3, last_name = $4, email_ciphertext = $5, email_key_id = $6, \
             phone_ciphertext = $7, phone_key_id = $8, phone_lookup = $9, source = $10, location = $11, \
             budget_min = $12, budget_max = $13, preferences = $14, owner_user_id = $15, email_lookup = $16, updated_at = now() \
             WHERE organization_id = $1 AND id = $2 RETURNING ",
            sqlite: "UPDATE people SET first_name = $3, last_name = $4, email_ciphertext = $5, email_key_id = $6, \
             phone_ciphertext = $7, phone_key_id = $8, phone_lookup = $9, source = $10, location = $11, \
             budget_min = $12, budget_max = $13, preferences = $14, owner_user_id = $15, email_lookup = $16, \
             updated_at = CAST(unixepoch('subsec') * 1000 AS INTEGER) \
             WHERE organization_id = $1 AND id = $2 RETURNING ",
        };
        let mut tx = self.begin(org).await?;
        let sql = format!("{}{PERSON_COLUMNS}", UPDATE.of(tx.dialect()));
        let row: Option<PersonRow> = on_tx!(&mut tx, |conn, dialect| {
            sqlx::query_as(&sql)
                .bind(org.as_str())
                .bind(id)
                .bind(
                    fields
                        .first_name
                        .as_deref()
                        .map(str::trim)
                        .unwrap_or(&current.first_name),
                )
                .bind(fields.last_name.as_deref().unwrap_or(&current.last_name))
                .bind(email_bytes)
                .bind(email_key)
                .bind(phone_bytes)
                .bind(phone_key)
                .bind(lookup)
                .bind(fields.source.clone().or(current.source))
                .bind(fields.location.clone().or(current.location))
                .bind(budget_min)
                .bind(budget_max)
                .bind(fields.preferences.clone().unwrap_or(current.preferences))
                .bind(fields.owner_user_id.clone().or(current.owner_user_id))
                .bind(email_lookup)
                .fetch_optional(conn)
                .await?
        });
        let person = row.map(|row| person_from(keys, org, row)).transpose()?;
        tx.commit().await?;
        Ok(person)
    }

    /// People of `org` with this phone number (in any formatting).
    pub async fn find_people_by_phone(
        &self,
        org: &OrgId,
        phone: &str,
    ) -> Result<Vec<Person>, StoreError> {
        let lookup = self
            .keys()
            .lookup_hash(org.as_str(), &normalize_phone(phone));
        let mut tx = self.begin(org).await?;
        let people =
            people_with_lookup(&mut tx, self.keys(), org, Lookup::Phone, &[lookup]).await?;
        tx.commit().await?;
        Ok(people)
    }
}

/// Inserts a person of `org` (fields validated, organization ensured) in `tx`.
pub(crate) async fn insert_person(
    tx: &mut crate::Tx,
    keys: &Keyring,
    org: &OrgId,
    fields: &PersonFields,
) -> Result<Person, StoreError> {
    let id = format!("p_{}", uuid::Uuid::now_v7().simple());
    let (email, email_key) = seal(keys, org, "email", &id, &fields.email);
    let (phone, phone_key) = seal(keys, org, "phone", &id, &fields.phone);
    let lookup = fields
        .phone
        .as_ref()
        .map(|p| keys.lookup_hash(org.as_str(), &normalize_phone(p)));
    let email_lookup = fields
        .email
        .as_ref()
        .map(|e| keys.lookup_hash(org.as_str(), &normalize_email(e)));
    let sql = format!(
        "INSERT INTO people (organization_id, id, first_name, last_name, email_ciphertext, email_key_id, \
         phone_ciphertext, phone_key_id, phone_lookup, source, location, budget_min, budget_max, preferences, owner_user_id, \
         email_lookup) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) RETURNING {PERSON_COLUMNS}"
    );
    let row: PersonRow = on_tx!(tx, |conn, dialect| {
        sqlx::query_as(&sql)
            .bind(org.as_str())
            .bind(&id)
            .bind(fields.first_name.as_deref().unwrap_or_default().trim())
            .bind(fields.last_name.as_deref().unwrap_or_default())
            .bind(email)
            .bind(email_key)
            .bind(phone)
            .bind(phone_key)
            .bind(lookup)
            .bind(&fields.source)
            .bind(&fields.location)
            .bind(fields.budget_min)
            .bind(fields.budget_max)
            .bind(
                fields
                    .preferences
                    .clone()
                    .unwrap_or_else(|| serde_json::json!({})),
            )
            .bind(&fields.owner_user_id)
            .bind(email_lookup)
            .fetch_one(conn)
            .await?
    });
    person_from(keys, org, row)
}

/// How a person is looked up: by the keyed hash of their normalized phone number or email.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Lookup {
    Phone,
    Email,
}

impl Lookup {
    fn column(self) -> &'static str {
        match self {
            Lookup::Phone => "phone_lookup",
            Lookup::Email => "email_lookup",
        }
    }
}

/// An email address as its lookup hash is taken: trimmed, lower case.
pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// The people of `org` whose `by` lookup hash is one of `lookups`, first created first.
pub(crate) async fn people_with_lookup(
    tx: &mut crate::Tx,
    keys: &Keyring,
    org: &OrgId,
    by: Lookup,
    lookups: &[Vec<u8>],
) -> Result<Vec<Person>, StoreError> {
    if lookups.is_empty() {
        return Ok(Vec::new());
    }
    let placeholders: Vec<String> = (0..lookups.len()).map(|i| format!("${}", i + 2)).collect();
    let sql = format!(
        "SELECT {PERSON_COLUMNS} FROM people WHERE organization_id = $1 AND {} IN ({}) ORDER BY id",
        by.column(),
        placeholders.join(", ")
    );
    let rows: Vec<PersonRow> = on_tx!(tx, |conn, dialect| {
        let mut query = sqlx::query_as(&sql).bind(org.as_str());
        for lookup in lookups {
            query = query.bind(lookup);
        }
        query.fetch_all(conn).await?
    });
    rows.into_iter()
        .map(|row| person_from(keys, org, row))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn with_preferences(preferences: serde_json::Value) -> PersonFields {
        PersonFields {
            first_name: Some("A".into()),
            preferences: Some(preferences),
            ..Default::default()
        }
    }

    #[test]
    fn preferences_must_survive_the_database() {
        assert!(
            with_preferences(json!({"beds": 3, "areas": ["Austin"], "max_hoa": 450.5}))
                .validate(true)
                .is_ok()
        );
        for bad in [
            json!({"k": "nul\u{0}inside"}),
            json!({"nul\u{0}key": 1}),
            json!({"huge": 36893488147419103233_f64}),
            json!({"tiny": 5e-324}),
            json!([1, 2]),
            json!({"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {"i": {}}}}}}}}}}),
        ] {
            assert!(
                matches!(
                    with_preferences(bad.clone()).validate(true),
                    Err(StoreError::Invalid(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn text_fields_refuse_nul_characters() {
        let fields = PersonFields {
            first_name: Some("A".into()),
            location: Some("x\u{0}y".into()),
            ..Default::default()
        };
        assert!(matches!(fields.validate(true), Err(StoreError::Invalid(_))));
    }
}
