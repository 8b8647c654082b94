//! Twilio Media Streams wire format: the JSON messages Twilio sends (parse) and the ones the
//! server sends back (serialize). Both directions also work the other way round, which is what
//! the simulator needs. Nothing here does I/O.
//!
//! Counters (`sequenceNumber`, `chunk`, `timestamp`) are JSON strings on the wire; unknown fields
//! are ignored; an unknown `event` parses as [`TwilioMessage::Unknown`]. Media payloads are
//! borrowed from the input, so a `media` frame is parsed without copying its audio.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use winnerr_events::Track;

/// A message from Twilio to the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "event",
    rename_all = "lowercase",
    rename_all_fields = "camelCase"
)]
pub enum TwilioMessage<'a> {
    /// First message on a new connection.
    Connected { protocol: String, version: String },
    /// Stream metadata; exactly one per stream, before any media.
    Start {
        #[serde(with = "counter")]
        sequence_number: u64,
        start: StartMeta,
        stream_sid: String,
    },
    /// 20 ms (by default) of one track's audio.
    Media {
        #[serde(with = "counter")]
        sequence_number: u64,
        #[serde(borrow)]
        media: MediaChunk<'a>,
        #[serde(borrow)]
        stream_sid: Cow<'a, str>,
    },
    /// A keypad digit.
    Dtmf {
        #[serde(with = "counter")]
        sequence_number: u64,
        stream_sid: String,
        dtmf: DtmfDigit,
    },
    /// Echo of a mark the server sent, once the audio before it has played.
    Mark {
        #[serde(with = "counter")]
        sequence_number: u64,
        stream_sid: String,
        mark: MarkLabel,
    },
    /// The stream ended (call hung up or stream stopped).
    Stop {
        #[serde(with = "counter")]
        sequence_number: u64,
        stream_sid: String,
        stop: StopMeta,
    },
    /// An event this build does not know: counted and ignored.
    #[serde(other)]
    Unknown,
}

impl TwilioMessage<'_> {
    /// The `event` name, for logs and metric labels.
    pub fn kind(&self) -> &'static str {
        match self {
            TwilioMessage::Connected { .. } => "connected",
            TwilioMessage::Start { .. } => "start",
            TwilioMessage::Media { .. } => "media",
            TwilioMessage::Dtmf { .. } => "dtmf",
            TwilioMessage::Mark { .. } => "mark",
            TwilioMessage::Stop { .. } => "stop",
            TwilioMessage::Unknown => "unknown",
        }
    }

    /// The message's `sequenceNumber`, where it has one.
    pub fn sequence_number(&self) -> Option<u64> {
        match self {
            TwilioMessage::Start {
                sequence_number, ..
            }
            | TwilioMessage::Media {
                sequence_number, ..
            }
            | TwilioMessage::Dtmf {
                sequence_number, ..
            }
            | TwilioMessage::Mark {
                sequence_number, ..
            }
            | TwilioMessage::Stop {
                sequence_number, ..
            } => Some(*sequence_number),
            TwilioMessage::Connected { .. } | TwilioMessage::Unknown => None,
        }
    }
}

/// Parses one text frame from Twilio.
pub fn parse(text: &str) -> Result<TwilioMessage<'_>, serde_json::Error> {
    serde_json::from_str(text)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartMeta {
    pub account_sid: String,
    pub stream_sid: String,
    pub call_sid: String,
    pub tracks: Vec<Track>,
    #[serde(default)]
    pub custom_parameters: BTreeMap<String, String>,
    pub media_format: MediaFormat,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MediaFormat {
    pub encoding: String,
    pub sample_rate: u32,
    pub channels: u16,
}

/// The only encoding Twilio streams carry.
pub const MULAW_ENCODING: &str = "audio/x-mulaw";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MediaChunk<'a> {
    pub track: Track,
    /// Per-track chunk counter, starting at 1.
    #[serde(with = "counter")]
    pub chunk: u64,
    /// Presentation time in ms from the start of the stream.
    #[serde(with = "counter")]
    pub timestamp: u64,
    /// Base64 of raw mu-law bytes.
    #[serde(borrow)]
    pub payload: Cow<'a, str>,
}

/// DTMF tracks are spelled `inbound_track` / `outbound_track` on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DtmfTrack {
    #[serde(alias = "inbound")]
    InboundTrack,
    #[serde(alias = "outbound")]
    OutboundTrack,
}

impl From<DtmfTrack> for Track {
    fn from(track: DtmfTrack) -> Track {
        match track {
            DtmfTrack::InboundTrack => Track::Inbound,
            DtmfTrack::OutboundTrack => Track::Outbound,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DtmfDigit {
    pub track: DtmfTrack,
    pub digit: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarkLabel {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StopMeta {
    pub account_sid: String,
    pub call_sid: String,
}

/// A message from the server to Twilio on a bidirectional stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "event",
    rename_all = "lowercase",
    rename_all_fields = "camelCase"
)]
pub enum ServerMessage {
    /// Audio to play to the caller: base64 of 8 kHz mu-law.
    Media {
        stream_sid: String,
        media: OutboundMedia,
    },
    /// Ask Twilio to echo `name` once the audio sent before it has played.
    Mark { stream_sid: String, mark: MarkLabel },
    /// Drop audio that was sent but has not played yet.
    Clear { stream_sid: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboundMedia {
    pub payload: String,
}

/// Twilio's counters are decimal strings; numbers are accepted too.
mod counter {
    use serde::{Deserialize, Deserializer, Serializer, de};
    use std::borrow::Cow;

    pub fn serialize<S: Serializer>(value: &u64, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(value)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Counter<'a> {
            Text(#[serde(borrow)] Cow<'a, str>),
            Number(u64),
        }
        match Counter::deserialize(deserializer)? {
            Counter::Number(n) => Ok(n),
            Counter::Text(text) => text
                .parse()
                .map_err(|_| de::Error::custom(format!("counter {text:?} is not a whole number"))),
        }
    }
}

#[cfg(test)]
mod tests {
    //! The JSON examples below are Twilio's documented messages, verbatim but for the ids.
    use super::*;

    #[test]
    fn connected() {
        let msg = parse(r#"{"event": "connected","protocol": "Call","version": "1.0.0"}"#).unwrap();
        assert_eq!(
            msg,
            TwilioMessage::Connected {
                protocol: "Call".into(),
                version: "1.0.0".into()
            }
        );
    }

    #[test]
    fn start_with_custom_parameters() {
        let msg = parse(
            r#"{
  "event": "start",
  "sequenceNumber": "1",
  "start": {
    "accountSid": "ACXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
    "streamSid": "MZXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
    "callSid": "CAXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
    "tracks": [ "inbound", "outbound" ],
    "mediaFormat": { "encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1 },
    "customParameters": { "FirstName": "Jane", "LastName": "Doe", "RemoteParty": "Bob" }
  },
  "streamSid": "MZXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"
}"#,
        )
        .unwrap();
        let TwilioMessage::Start {
            sequence_number,
            start,
            stream_sid,
        } = msg
        else {
            panic!("not a start: {msg:?}")
        };
        assert_eq!(sequence_number, 1);
        assert_eq!(stream_sid, "MZXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX");
        assert_eq!(start.call_sid, "CAXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX");
        assert_eq!(start.tracks, vec![Track::Inbound, Track::Outbound]);
        assert_eq!(start.media_format.encoding, MULAW_ENCODING);
        assert_eq!(start.media_format.sample_rate, 8000);
        assert_eq!(start.custom_parameters["RemoteParty"], "Bob");
    }

    #[test]
    fn media_counters_are_strings_and_the_payload_is_borrowed() {
        let text = r#"{
  "event": "media",
  "sequenceNumber": "3",
  "media": {
    "track": "outbound",
    "chunk": "1",
    "timestamp": "5",
    "payload": "no+JhoaJjpzSHxAKBgYJDhtEopGKh4aIjZm7JhQMCAYIDRg1qZSLiIaHjJWsLxYNCQYHCxYqtZeMiQ=="
  },
  "streamSid": "MZXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"
}"#;
        let TwilioMessage::Media {
            sequence_number,
            media,
            ..
        } = parse(text).unwrap()
        else {
            panic!("not media")
        };
        assert_eq!(sequence_number, 3);
        assert_eq!(media.track, Track::Outbound);
        assert_eq!((media.chunk, media.timestamp), (1, 5));
        assert!(matches!(media.payload, Cow::Borrowed(_)));
    }

    #[test]
    fn dtmf_mark_and_stop() {
        let dtmf = parse(
            r#"{"event": "dtmf","streamSid":"MZXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX","sequenceNumber":"5",
                "dtmf": {"track":"inbound_track","digit": "1"}}"#,
        )
        .unwrap();
        assert_eq!(
            dtmf,
            TwilioMessage::Dtmf {
                sequence_number: 5,
                stream_sid: "MZXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX".into(),
                dtmf: DtmfDigit {
                    track: DtmfTrack::InboundTrack,
                    digit: "1".into()
                },
            }
        );
        let mark = parse(
            r#"{"event": "mark","sequenceNumber": "4","streamSid": "MZXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
                "mark": {"name": "my label"}}"#,
        )
        .unwrap();
        assert!(
            matches!(mark, TwilioMessage::Mark { sequence_number: 4, ref mark, .. } if mark.name == "my label")
        );
        let stop = parse(
            r#"{"event": "stop","sequenceNumber": "5",
                "stop": {"accountSid": "ACXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX","callSid": "CAXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"},
                "streamSid": "MZXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"}"#,
        )
        .unwrap();
        assert!(
            matches!(stop, TwilioMessage::Stop { sequence_number: 5, ref stop, .. } if stop.call_sid.starts_with("CA"))
        );
    }

    #[test]
    fn extra_fields_are_tolerated_and_unknown_events_recognised() {
        let msg = parse(
            r#"{"event":"media","sequenceNumber":"9","extra":{"a":1},
                "media":{"track":"inbound","chunk":"2","timestamp":"20","payload":"","future":true},
                "streamSid":"MZ1"}"#,
        )
        .unwrap();
        assert_eq!(msg.sequence_number(), Some(9));
        assert_eq!(
            parse(r#"{"event":"teleport","x":1}"#).unwrap(),
            TwilioMessage::Unknown
        );
    }

    #[test]
    fn bad_counters_and_missing_fields_are_errors() {
        assert!(parse(r#"{"event":"stop","sequenceNumber":"five","stop":{"accountSid":"A","callSid":"C"},"streamSid":"M"}"#).is_err());
        assert!(parse(r#"{"event":"media","sequenceNumber":"2","streamSid":"M"}"#).is_err());
        assert!(parse("not json").is_err());
    }

    #[test]
    fn server_messages_match_the_documented_shape() {
        let mark = ServerMessage::Mark {
            stream_sid: "MZ1".into(),
            mark: MarkLabel {
                name: "greeting".into(),
            },
        };
        assert_eq!(
            serde_json::to_value(&mark).unwrap(),
            serde_json::json!({"event":"mark","streamSid":"MZ1","mark":{"name":"greeting"}})
        );
        let clear = ServerMessage::Clear {
            stream_sid: "MZ1".into(),
        };
        assert_eq!(
            serde_json::to_value(&clear).unwrap(),
            serde_json::json!({"event":"clear","streamSid":"MZ1"})
        );
        let media = ServerMessage::Media {
            stream_sid: "MZ1".into(),
            media: OutboundMedia {
                payload: "AAAA".into(),
            },
        };
        assert_eq!(
            serde_json::to_value(&media).unwrap(),
            serde_json::json!({"event":"media","streamSid":"MZ1","media":{"payload":"AAAA"}})
        );
    }
}
