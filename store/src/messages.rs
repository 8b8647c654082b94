//! Messages (SMS, email) to and from an organization's people. An inbound message is recorded
//! when its webhook first arrives ([`Store::receive_message`]: its sender found by the phone
//! lookup hash, or created as a lead), so a redelivery of the same id is known; its analysed body
//! is sealed into the row when the store writer applies its `message` event.

use serde::Serialize;
use sqlx::FromRow;
use winnerr_events::{MessageChannel, OrgId, UserId};

use crate::audit::{self, AuditEntry};
use crate::calls::{CallFilter, CallSummary, Page, cursor_at, decode_cursor};
use crate::crypto::{FieldPlace, Keyring, Sealed, normalize_phone};
use crate::people::{Lookup, PersonFields, insert_person, normalize_email, people_with_lookup};
use crate::{Sql, Store, StoreError, on_tx};

/// Where a message's body lives, bound into its ciphertext.
pub(crate) fn body_place<'a>(org: &'a OrgId, id: &'a str) -> FieldPlace<'a> {
    FieldPlace {
        org: org.as_str(),
        table: "messages",
        column: "body",
        row: id,
    }
}

/// A message's body, sealed in its place.
pub(crate) fn seal_body(keys: &Keyring, org: &OrgId, id: &str, text: &str) -> Sealed {
    keys.encrypt(text, body_place(org, id))
}

/// An inbound message as its webhook brought it.
#[derive(Debug, Clone, Copy)]
pub struct Arrival<'a> {
    pub org: &'a OrgId,
    pub channel: MessageChannel,
    /// The provider's id.
    pub id: &'a str,
    /// The sender: an E.164 number (SMS) or an email address.
    pub from: &'a str,
    pub received_ms: u64,
}

/// Records `arrival` in `tx` (its organization set) unless recorded before, and finds or creates
/// its sender.
async fn receive_in(
    tx: &mut crate::Tx,
    keys: &Keyring,
    arrival: &Arrival<'_>,
) -> Result<Option<MessageSender>, StoreError> {
    let org = arrival.org;
    let claimed: Option<String> = on_tx!(tx, |conn, dialect| {
        sqlx::query_scalar(
            "INSERT INTO messages (organization_id, id, channel, direction, received_ms) \
             VALUES ($1, $2, $3, 'inbound', $4) ON CONFLICT DO NOTHING RETURNING id",
        )
        .bind(org.as_str())
        .bind(arrival.id)
        .bind(arrival.channel.as_str())
        .bind(crate::writer::ms(arrival.received_ms))
        .fetch_optional(conn)
        .await?
    });
    if claimed.is_none() {
        return Ok(None);
    }
    let (by, forms, fields) = match arrival.channel {
        MessageChannel::Sms => {
            let number = normalize_phone(arrival.from);
            let last4 = &number[number.len().saturating_sub(4)..];
            let fields = PersonFields {
                first_name: Some(format!("{NEW_SMS_LEAD} …{last4}")),
                phone: Some(number.clone()),
                ..Default::default()
            };
            (Lookup::Phone, stored_forms(&number), fields)
        }
        MessageChannel::Email => {
            let address = normalize_email(arrival.from);
            let domain = address.rsplit_once('@').map_or("", |(_, d)| d);
            let fields = PersonFields {
                first_name: Some(format!("{NEW_EMAIL_LEAD} …@{domain}")),
                email: Some(address.clone()),
                ..Default::default()
            };
            (Lookup::Email, vec![address], fields)
        }
    };
    let lookups: Vec<Vec<u8>> = forms
        .iter()
        .map(|form| keys.lookup_hash(org.as_str(), form))
        .collect();
    let known = people_with_lookup(tx, keys, org, by, &lookups).await?;
    let (person, created) = match known.into_iter().next() {
        Some(person) => (person, false),
        None => {
            let fields = PersonFields {
                source: Some(arrival.channel.as_str().to_owned()),
                ..fields
            };
            fields.validate(true)?;
            (insert_person(tx, keys, org, &fields).await?, true)
        }
    };
    on_tx!(tx, |conn, dialect| {
        sqlx::query(
            "UPDATE messages SET person_id = $3, agent_id = $4 WHERE organization_id = $1 AND id = $2",
        )
        .bind(org.as_str())
        .bind(arrival.id)
        .bind(&person.id)
        .bind(&person.owner_user_id)
        .execute(conn)
        .await
        .map(drop)?
    });
    Ok(Some(MessageSender {
        person_id: person.id,
        agent_id: person.owner_user_id,
        created,
    }))
}

/// The sender of a message recorded for the first time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageSender {
    pub person_id: String,
    /// The person's owner.
    pub agent_id: Option<String>,
    /// No person had the number: this one was created for the message.
    pub created: bool,
}

/// A stored message, its body decrypted.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredMessage {
    pub id: String,
    pub channel: String,
    pub direction: String,
    pub person_id: Option<String>,
    pub agent_id: Option<String>,
    pub received_ms: i64,
    /// Absent until the message is analysed (or where it did not decrypt).
    pub text: Option<String>,
    pub sentiment: Option<String>,
    pub sentiment_score: Option<f32>,
}

#[derive(FromRow)]
struct MessageRow {
    id: String,
    channel: String,
    direction: String,
    person_id: Option<String>,
    agent_id: Option<String>,
    received_ms: i64,
    body_ciphertext: Option<Vec<u8>>,
    body_key_id: Option<String>,
    sentiment: Option<String>,
    sentiment_score: Option<f32>,
}

/// A page of a person's messages after a cursor, newest first.
const PERSON_MESSAGES: Sql = Sql {
    postgres: "SELECT id, channel, direction, person_id, agent_id, received_ms, body_ciphertext, \
         body_key_id, sentiment, sentiment_score FROM messages \
         WHERE organization_id = $1 AND person_id = $2 \
           AND ($3::bigint IS NULL OR (received_ms, id) < ($3::bigint, $4::text)) \
         ORDER BY received_ms DESC, id DESC LIMIT $5",
    sqlite: "SELECT id, channel, direction, person_id, agent_id, received_ms, body_ciphertext, \
         body_key_id, sentiment, sentiment_score FROM messages \
         WHERE organization_id = $1 AND person_id = $2 \
           AND ($3 IS NULL OR (received_ms, id) < ($3, $4)) \
         ORDER BY received_ms DESC, id DESC LIMIT $5",
};

/// The forms an E.164 `number` may have been stored in: itself and, for a North American
/// number (`+1` and ten digits), the ten digits and `1` with them, as people's numbers are often
/// written without the country code (the CRM keeps the digits as written).
fn stored_forms(number: &str) -> Vec<String> {
    let mut forms = vec![number.to_owned()];
    if let Some(national) = number.strip_prefix("+1")
        && national.len() == 10
    {
        forms.push(national.to_owned());
        forms.push(format!("1{national}"));
    }
    forms
}

/// How a lead created for an SMS is named, before their number's last four digits; for an
/// email, before their address's domain.
const NEW_SMS_LEAD: &str = "Texted from";
const NEW_EMAIL_LEAD: &str = "Emailed from";

impl Store {
    /// Records inbound message `id` of `org` from the number `from`, once: `None` if it was
    /// recorded before. See [`Store::receive_messages`].
    pub async fn receive_message(
        &self,
        org: &OrgId,
        channel: MessageChannel,
        id: &str,
        from: &str,
        received_ms: u64,
    ) -> Result<Option<MessageSender>, StoreError> {
        let arrival = Arrival {
            org,
            channel,
            id,
            from,
            received_ms,
        };
        let mut senders = self.receive_messages(&[arrival]).await?;
        Ok(senders.pop().flatten())
    }

    /// Records each inbound message once (`None` for one recorded before, in order), in one
    /// transaction: a burst of webhooks costs one commit, not one each. A message's sender is
    /// its organization's person with that number or address (the first created, if several),
    /// or a new lead (`source` the channel, named by the number's last digits or the address's
    /// domain); no message is recorded without its sender.
    pub async fn receive_messages(
        &self,
        arrivals: &[Arrival<'_>],
    ) -> Result<Vec<Option<MessageSender>>, StoreError> {
        let keys = self.keys();
        let mut tx = self.begin_any().await?;
        let mut senders = Vec::with_capacity(arrivals.len());
        let mut current: Option<&OrgId> = None;
        for arrival in arrivals {
            if current != Some(arrival.org) {
                crate::set_organization(&mut tx, arrival.org).await?;
                crate::ensure_organization(&mut tx, arrival.org).await?;
                current = Some(arrival.org);
            }
            senders.push(receive_in(&mut tx, keys, arrival).await?);
        }
        tx.commit().await?;
        Ok(senders)
    }

    /// Forgets inbound message `id` if it was recorded but never analysed (its body not yet
    /// written), so that its redelivery is taken as new.
    pub async fn forget_message(&self, org: &OrgId, id: &str) -> Result<(), StoreError> {
        let mut tx = self.begin(org).await?;
        on_tx!(&mut tx, |conn, dialect| {
            sqlx::query(
                "DELETE FROM messages WHERE organization_id = $1 AND id = $2 AND body_ciphertext IS NULL",
            )
            .bind(org.as_str())
            .bind(id)
            .execute(conn)
            .await
            .map(drop)?
        });
        tx.commit().await?;
        Ok(())
    }

    /// A page of person `person_id`'s timeline: their calls (of `only_agent`, where given) and
    /// messages, newest first, keyset-paged by time and id. The messages' bodies are decrypted
    /// for `reader`, and the read is audited (`messages.read`, with the count).
    pub async fn person_timeline(
        &self,
        org: &OrgId,
        person_id: &str,
        only_agent: Option<&UserId>,
        limit: i64,
        cursor: Option<&str>,
        reader: &str,
    ) -> Result<Page<TimelineItem>, StoreError> {
        let filter = CallFilter {
            lead_id: Some(person_id.to_owned()),
            ..Default::default()
        };
        let calls = self
            .list_calls(org, &filter, only_agent, limit, cursor)
            .await?;
        let after = cursor.map(decode_cursor).transpose()?;
        let mut tx = self.begin(org).await?;
        let rows: Vec<MessageRow> = on_tx!(&mut tx, |conn, dialect| {
            sqlx::query_as(PERSON_MESSAGES.of(dialect))
                .bind(org.as_str())
                .bind(person_id)
                .bind(after.as_ref().map(|(at, _)| *at))
                .bind(after.as_ref().map(|(_, id)| id.as_str()))
                .bind(limit + 1)
                .fetch_all(conn)
                .await?
        });
        let calls_more = calls.next_cursor.is_some();
        let mut items: Vec<TimelineItem> = rows
            .into_iter()
            .map(|row| TimelineItem::Message(self.open_message(org, row)))
            .chain(
                calls
                    .items
                    .into_iter()
                    .map(|c| TimelineItem::Call(Box::new(c))),
            )
            .collect();
        items.sort_by(|a, b| b.key().cmp(&a.key()));
        // Each source gave up to `limit` + 1 past the cursor: the first `limit` merged are the page.
        let more = items.len() as i64 > limit || calls_more;
        items.truncate(limit as usize);
        let read = items
            .iter()
            .filter(|item| matches!(item, TimelineItem::Message(m) if m.text.is_some()))
            .count();
        if read > 0 {
            let entry = AuditEntry {
                actor: reader,
                action: "messages.read",
                subject: person_id,
                detail: serde_json::json!({ "messages": read }).to_string(),
            };
            audit::append(&mut tx, org, &entry).await?;
        }
        tx.commit().await?;
        let next_cursor = more
            .then(|| {
                items
                    .last()
                    .map(|item| cursor_at(item.key().0, item.key().1))
            })
            .flatten();
        Ok(Page { items, next_cursor })
    }

    /// A stored message with its body decrypted (absent where it does not decrypt, or before
    /// the message is analysed).
    fn open_message(&self, org: &OrgId, row: MessageRow) -> StoredMessage {
        let text = match (&row.body_ciphertext, &row.body_key_id) {
            (Some(bytes), Some(key_id)) => self
                .keys()
                .decrypt(key_id, bytes, body_place(org, &row.id))
                .ok(),
            _ => None,
        };
        StoredMessage {
            text,
            id: row.id,
            channel: row.channel,
            direction: row.direction,
            person_id: row.person_id,
            agent_id: row.agent_id,
            received_ms: row.received_ms,
            sentiment: row.sentiment,
            sentiment_score: row.sentiment_score,
        }
    }
}

/// One entry of a person's timeline.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TimelineItem {
    Call(Box<CallSummary>),
    Message(StoredMessage),
}

impl TimelineItem {
    /// Where it sorts: its time (a call's start, a message's arrival) and id.
    fn key(&self) -> (i64, &str) {
        match self {
            TimelineItem::Call(call) => (call.started_at_ms.unwrap_or(0), &call.id),
            TimelineItem::Message(message) => (message.received_ms, &message.id),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_north_american_number_is_also_looked_up_without_its_country_code() {
        assert_eq!(
            super::stored_forms("+15550100142"),
            ["+15550100142", "5550100142", "15550100142"]
        );
        assert_eq!(super::stored_forms("+442071838750"), ["+442071838750"]);
    }
}
