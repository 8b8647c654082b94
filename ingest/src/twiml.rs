//! TwiML answers for the voice webhook: start a bidirectional-capable media stream of both
//! tracks carrying the call's signed identity, then connect the call.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::str::FromStr;

use quick_xml::escape::escape;

/// Where the webhook connects a call after starting its stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dial {
    /// The agent's Twilio Client (softphone) identity, from the webhook's `agent` parameter.
    Agent,
    /// A fixed phone number (E.164).
    Number(String),
    /// Do not connect; the stream runs while the caller stays on the line.
    Nothing,
}

impl FromStr for Dial {
    type Err = String;
    fn from_str(value: &str) -> Result<Self, String> {
        match value {
            "agent" => Ok(Dial::Agent),
            "none" => Ok(Dial::Nothing),
            number
                if number.starts_with('+')
                    && number.len() > 4
                    && number[1..].bytes().all(|b| b.is_ascii_digit()) =>
            {
                Ok(Dial::Number(number.to_owned()))
            }
            other => Err(format!(
                "dial target {other:?} is not `agent`, `none` or an E.164 number"
            )),
        }
    }
}

/// `say` if any (a disclosure the caller hears before anything is streamed), `<Start><Stream>`
/// of both tracks with `parameters`, then the dial.
pub fn stream_then_dial(
    say: Option<&str>,
    stream_url: &str,
    parameters: &BTreeMap<String, String>,
    dial: &Dial,
    agent: Option<&str>,
) -> String {
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response>\n");
    if let Some(say) = say {
        let _ = writeln!(xml, "  <Say>{}</Say>", escape(say));
    }
    xml.push_str("  <Start>\n");
    let _ = writeln!(
        xml,
        "    <Stream url=\"{}\" track=\"both_tracks\">",
        escape(stream_url)
    );
    for (name, value) in parameters {
        let _ = writeln!(
            xml,
            "      <Parameter name=\"{}\" value=\"{}\"/>",
            escape(name.as_str()),
            escape(value.as_str())
        );
    }
    xml.push_str("    </Stream>\n  </Start>\n");
    push_dial(&mut xml, dial, agent);
    xml.push_str("</Response>\n");
    xml
}

/// Asks the caller (`ask`) to press one key, which Twilio posts with the call to `action` (the
/// webhook again, with `Digits`); where the caller presses nothing, the call is connected
/// without a stream.
pub fn ask_then_dial(ask: &str, action: &str, dial: &Dial, agent: Option<&str>) -> String {
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response>\n");
    let _ = writeln!(
        xml,
        "  <Gather input=\"dtmf\" numDigits=\"1\" timeout=\"8\" method=\"POST\" action=\"{}\">",
        escape(action)
    );
    let _ = writeln!(xml, "    <Say>{}</Say>", escape(ask));
    xml.push_str("  </Gather>\n");
    push_dial(&mut xml, dial, agent);
    xml.push_str("</Response>\n");
    xml
}

/// The dial alone, after `say` if any: a call connected without a stream (the node is full).
pub fn dial_without_stream(say: Option<&str>, dial: &Dial, agent: Option<&str>) -> String {
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response>\n");
    if let Some(say) = say {
        let _ = writeln!(xml, "  <Say>{}</Say>", escape(say));
    }
    match (dial, agent) {
        // Nobody to connect and nothing to stream: end the call after the words.
        (Dial::Nothing, _) | (Dial::Agent, None) => xml.push_str("  <Hangup/>\n"),
        _ => push_dial(&mut xml, dial, agent),
    }
    xml.push_str("</Response>\n");
    xml
}

/// The call is not placed: `say` why, then hang up.
pub fn refuse(say: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response>\n  <Say>{}</Say>\n  <Hangup/>\n</Response>\n",
        escape(say)
    )
}

fn push_dial(xml: &mut String, dial: &Dial, agent: Option<&str>) {
    match (dial, agent) {
        (Dial::Agent, Some(agent)) => {
            let _ = writeln!(xml, "  <Dial><Client>{}</Client></Dial>", escape(agent));
        }
        (Dial::Number(number), _) => {
            let _ = writeln!(xml, "  <Dial>{}</Dial>", escape(number.as_str()));
        }
        // No agent to ring, or no dialing: keep the caller on the line for the stream.
        (Dial::Agent, None) | (Dial::Nothing, _) => xml.push_str("  <Pause length=\"3600\"/>\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asks_for_one_key_posted_back_then_connects_without_a_stream() {
        let xml = ask_then_dial(
            "Press 1 & agree.",
            "/twilio/voice?org=a&agent=u1",
            &Dial::Agent,
            Some("u1"),
        );
        assert!(xml.contains(
            "<Gather input=\"dtmf\" numDigits=\"1\" timeout=\"8\" method=\"POST\" action=\"/twilio/voice?org=a&amp;agent=u1\">"
        ));
        assert!(xml.contains("<Say>Press 1 &amp; agree.</Say>"));
        assert!(!xml.contains("<Stream"));
        assert!(xml.find("</Gather>") < xml.find("<Dial><Client>u1</Client></Dial>"));
    }

    #[test]
    fn starts_a_stream_of_both_tracks_with_escaped_parameters() {
        let params = BTreeMap::from([("org".to_string(), "a&b".to_string())]);
        let xml = stream_then_dial(
            None,
            "wss://h/twilio/stream",
            &params,
            &Dial::Agent,
            Some("u1"),
        );
        assert!(xml.contains("<Stream url=\"wss://h/twilio/stream\" track=\"both_tracks\">"));
        assert!(xml.contains("<Parameter name=\"org\" value=\"a&amp;b\"/>"));
        assert!(xml.contains("<Dial><Client>u1</Client></Dial>"));
        let xml = stream_then_dial(
            None,
            "wss://h/s",
            &params,
            &Dial::Number("+15551234567".into()),
            None,
        );
        assert!(xml.contains("<Dial>+15551234567</Dial>"));
        assert!(
            stream_then_dial(None, "wss://h/s", &params, &Dial::Agent, None).contains("<Pause")
        );
    }

    #[test]
    fn dial_targets_parse() {
        assert_eq!("agent".parse::<Dial>(), Ok(Dial::Agent));
        assert_eq!("none".parse::<Dial>(), Ok(Dial::Nothing));
        assert_eq!(
            "+15551234567".parse::<Dial>(),
            Ok(Dial::Number("+15551234567".into()))
        );
        assert!("5551234".parse::<Dial>().is_err());
    }
}
