//! Configuration, read in one place: command-line flags, each with an environment variable and
//! an embedded default that runs the whole engine on one machine with no setup.

use std::net::SocketAddr;

use clap::{Args, ValueEnum};
use secrecy::{ExposeSecret, SecretString};
use winnerr_ingest::Dial;

/// The JWT secret used when none is configured: fine for a laptop, refused nowhere, warned about.
pub const DEV_JWT_SECRET: &str = "winnerr-dev-jwt-secret";
/// The Twilio auth token used when none is configured.
pub const DEV_TWILIO_AUTH_TOKEN: &str = "winnerr-dev-twilio-auth-token";

/// Continuously talking calls one core serves with finals' p95 within 1.5 s after the endpoint
/// (`benches/voice_load.rs`, RESULTS.md): what the default `WINNERR_MAX_CALLS` is made of. Eight
/// until every decode carried the call's keyterm prompt (about 1.3x the decoder's work): then
/// 16 calls on 2 cores reached a p95 of 5.6–6.2 s after the endpoint, 12 held 1.1–1.3 s.
pub const CALLS_PER_CORE: usize = 6;

/// The store when `DATABASE_URL` is not set: a SQLite file beside the engine's other local state.
pub const EMBEDDED_DATABASE: &str = "sqlite://.run/winnerr.db";

/// `DATABASE_URL=none`: store nothing (the REST API answers 503).
pub const NO_DATABASE: &str = "none";

fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// What one process does; a process runs any set of roles (all by default), so voice nodes,
/// gateway nodes and store writers scale apart behind Kafka.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NodeRole {
    /// Twilio ingest and the voice pipeline (audio stays in this process).
    Voice,
    /// Feeds and the REST API.
    Gateway,
    /// The store writer (needs DATABASE_URL).
    Store,
    /// Lead scoring: re-scores a call's lead as the call goes (reads the CRM when DATABASE_URL
    /// is set).
    Scoring,
}

/// Settings of `winnerr serve`.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Roles of this process, comma-separated (voice, gateway, store, scoring); anything less than all of
    /// them needs KAFKA_BROKERS, so the other roles can run elsewhere.
    #[arg(
        long,
        env = "WINNERR_ROLES",
        value_enum,
        value_delimiter = ',',
        default_value = "voice,gateway,store,scoring"
    )]
    pub roles: Vec<NodeRole>,

    /// Address the HTTP/WebSocket server listens on.
    #[arg(long, env = "WINNERR_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// HS256 secret that signs and checks the bearer tokens of feeds and APIs. Left unset with
    /// an identity provider (`WINNERR_JWKS_FILE`), HS256 tokens are refused.
    #[arg(long, env = "WINNERR_JWT_SECRET", default_value = DEV_JWT_SECRET, hide_default_value = true)]
    pub jwt_secret: SecretString,

    /// A development server: the published development secrets are accepted even where the
    /// configuration looks like production (an identity provider, a public URL, TLS, or a
    /// listener beyond loopback), which otherwise refuses to start with them.
    #[arg(long, env = "WINNERR_DEVELOPMENT")]
    pub development: bool,

    /// Certificate chain (PEM) to serve HTTPS and WSS directly, for deployments without a
    /// terminating proxy (Twilio connects only over wss on 443); needs `WINNERR_TLS_KEY`.
    #[arg(long, env = "WINNERR_TLS_CERT")]
    pub tls_cert: Option<std::path::PathBuf>,

    /// The certificate's private key (PEM).
    #[arg(long, env = "WINNERR_TLS_KEY")]
    pub tls_key: Option<std::path::PathBuf>,

    /// The CRM identity provider's signing keys (a JWKS file): its RS256 tokens are accepted
    /// beside the HS256 ones.
    #[arg(long, env = "WINNERR_JWKS_FILE")]
    pub jwks_file: Option<std::path::PathBuf>,

    /// The `iss` that identity-provider tokens must carry.
    #[arg(long, env = "WINNERR_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// The `aud` that identity-provider tokens must carry.
    #[arg(long, env = "WINNERR_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,

    /// Twilio account auth token: checks X-Twilio-Signature and signs stream identities.
    #[arg(long, env = "TWILIO_AUTH_TOKEN", default_value = DEV_TWILIO_AUTH_TOKEN, hide_default_value = true)]
    pub twilio_auth_token: SecretString,

    /// Skip X-Twilio-Signature checks (local development only).
    #[arg(long, env = "TWILIO_INSECURE_SKIP_SIGNATURE")]
    pub twilio_insecure_skip_signature: bool,

    /// Mailgun's webhook signing key: authenticates inbound email (`POST /email/inbound`).
    /// Without it inbound email is off (503).
    #[arg(long, env = "WINNERR_MAILGUN_SIGNING_KEY", hide_env_values = true)]
    pub mailgun_signing_key: Option<SecretString>,

    /// Public URL Twilio reaches this server at, e.g. https://voice.example.com (for signatures
    /// behind a proxy and the stream URL in TwiML). Default: the request's Host header.
    #[arg(long, env = "WINNERR_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// What the voice webhook connects a call to: `agent` (the agent's Twilio Client), `none`,
    /// or an E.164 number.
    #[arg(long, env = "TWILIO_DIAL", default_value = "agent", value_parser = parse_dial)]
    pub twilio_dial: Dial,

    /// Largest Twilio WebSocket message accepted, in bytes (bigger ones close the stream, 1009).
    #[arg(long, env = "WINNERR_MAX_MESSAGE_BYTES", default_value_t = 64 * 1024)]
    pub max_message_bytes: usize,

    /// Frames a call may queue towards the voice stage before the newest are dropped.
    #[arg(long, env = "WINNERR_CALL_QUEUE", default_value_t = 500)]
    pub call_queue: usize,

    /// Messages a feed client may fall behind its organization's room before it loses the
    /// oldest (and is told, to recover them).
    #[arg(long, env = "WINNERR_FEED_BUFFER", default_value_t = 1024)]
    pub feed_buffer: usize,

    /// Events each organization's room keeps for feed clients that reconnect.
    #[arg(long, env = "WINNERR_FEED_HISTORY", default_value_t = 2048)]
    pub feed_history: usize,

    /// Messages queued for one feed client before it is closed as too slow (4008); interim
    /// transcripts are skipped for it once half of this is queued.
    #[arg(long, env = "WINNERR_FEED_SEND_QUEUE", default_value_t = 512)]
    pub feed_send_queue: usize,

    /// Channels one feed connection may follow at once; a `subscribe` past it gets an `error`
    /// (`too_many_subscriptions`).
    #[arg(long, env = "WINNERR_FEED_MAX_SUBSCRIPTIONS", default_value_t = 64)]
    pub feed_max_subscriptions: usize,

    /// TCP connections the server holds at once (lowered at start to fit the process's
    /// descriptor limit); one more is answered 503 and closed.
    #[arg(long, env = "WINNERR_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,

    /// TCP connections the server holds at once from one source address.
    #[arg(
        long,
        env = "WINNERR_MAX_CONNECTIONS_PER_ADDRESS",
        default_value_t = 1_000
    )]
    pub max_connections_per_address: usize,

    /// Seconds a client has to send a request's headers (the first on a connection, and each
    /// next one on a kept-alive connection, which is closed after this long idle).
    #[arg(long, env = "WINNERR_HTTP_HEADER_TIMEOUT", default_value_t = 10.0)]
    pub http_header_timeout: f64,

    /// Seconds between the gateway's pings to feed clients; a client silent for twice this
    /// is closed (4002) and leaves presence.
    #[arg(long, env = "WINNERR_FEED_HEARTBEAT", default_value_t = 20.0)]
    pub feed_heartbeat: f64,

    /// Events the in-process bus buffers for its slowest subscriber.
    #[arg(long, env = "WINNERR_BUS_CAPACITY", default_value_t = 8192)]
    pub bus_capacity: usize,

    /// Kafka bootstrap servers (`host:port,…`); without them the bus is in-process.
    #[arg(long, env = "KAFKA_BROKERS")]
    pub kafka_brokers: Option<String>,

    /// Kafka topic of call events.
    #[arg(
        long,
        env = "KAFKA_EVENTS_TOPIC",
        default_value = "winnerr.call-events.v1"
    )]
    pub kafka_events_topic: String,

    /// Kafka topic where undecodable messages go.
    #[arg(
        long,
        env = "KAFKA_DEAD_LETTER_TOPIC",
        default_value = "winnerr.dead-letter.v1"
    )]
    pub kafka_dead_letter_topic: String,

    /// Partitions of the topics the engine creates (calls spread over them by call id).
    #[arg(long, env = "KAFKA_PARTITIONS", default_value_t = 6)]
    pub kafka_partitions: i32,

    /// Replication factor of the topics the engine creates.
    #[arg(long, env = "KAFKA_REPLICATION", default_value_t = 1)]
    pub kafka_replication: i32,

    /// Where the CRM's records are stored: Postgres as the service role
    /// (`postgres://winnerr_service@host/db`) or a SQLite file (`sqlite://path/winnerr.db`,
    /// `sqlite::memory:`); `none` stores nothing. Default: the embedded SQLite file
    /// `.run/winnerr.db` when one process runs every role, none otherwise.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,

    /// Postgres URL of a role that owns the schema: when set, migrations run at start (a SQLite
    /// database migrates itself when it opens).
    #[arg(long, env = "DATABASE_MIGRATION_URL")]
    pub database_migration_url: Option<String>,

    /// Connections in the service pool.
    #[arg(long, env = "DATABASE_MAX_CONNECTIONS", default_value_t = 8)]
    pub database_max_connections: u32,

    /// How long each organization keeps its calls' words (transcript lines, events set aside,
    /// DTMF digits) and its lead scores' history: `acme=90d;*=keep` (`keep` or a number of
    /// days). Default: keep. The store role purges what is older every WINNERR_RETENTION_EVERY.
    #[arg(long, env = "WINNERR_RETENTION")]
    pub retention: Option<String>,

    /// Seconds between the store role's retention purges (the first runs at start).
    #[arg(long, env = "WINNERR_RETENTION_EVERY", default_value_t = 3600.0)]
    pub retention_every: f64,

    /// Keys of encrypted fields, `id:base64-of-32-bytes,…`, the current key first (older ones
    /// still decrypt). Default: public development keys (warned about).
    #[arg(long, env = "WINNERR_ENCRYPTION_KEYS", default_value = winnerr_store::crypto::DEV_KEYS, hide_default_value = true)]
    pub encryption_keys: SecretString,

    /// Key of the keyed hashes that find a person by phone, base64 of 32 bytes.
    #[arg(long, env = "WINNERR_LOOKUP_KEY", default_value = winnerr_store::crypto::DEV_LOOKUP_KEY, hide_default_value = true)]
    pub lookup_key: SecretString,

    /// Log format.
    #[arg(long, env = "WINNERR_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,

    /// Transcribe calls and score their sentiment (needs `make models`); `false` keeps speech
    /// activity, DTMF and the call's start and end only.
    #[arg(long, env = "WINNERR_ASR", default_value_t = true, action = clap::ArgAction::Set)]
    pub asr: bool,

    /// Score each call's lead as the call goes (in a process with the scoring role).
    #[arg(long, env = "WINNERR_SCORING", default_value_t = true, action = clap::ArgAction::Set)]
    pub scoring: bool,

    /// Whisper model: tiny.en, or base (`winnerr models fetch --base`).
    #[arg(long, env = "WINNERR_ASR_MODEL", default_value = "tiny.en")]
    pub asr_model: String,

    /// Speech workers: utterances transcribed at once. Default: one per core, single-threaded,
    /// the layout that served the most calls (`benches/voice_load.rs` compares layouts).
    #[arg(long, env = "WINNERR_ASR_WORKERS")]
    pub asr_workers: Option<usize>,

    /// Calls this node serves at once; one more is refused (Twilio stream 4007, softphone 503,
    /// the webhook connects it untranscribed). Default: the cores times the calls one core
    /// served in continuous talk (`CALLS_PER_CORE`, from `benches/voice_load.rs`).
    #[arg(long, env = "WINNERR_MAX_CALLS")]
    pub max_calls: Option<usize>,

    /// Calls one organization may have on this node at once (4009, 429); default: no limit of
    /// its own.
    #[arg(long, env = "WINNERR_MAX_CALLS_PER_ORG")]
    pub max_calls_per_org: Option<usize>,

    /// What transcripts have masked before they leave the voice stage, per organization:
    /// `org=card:redact,ssn:mask_last4,phone:off;*=card,ssn` (kinds card, ssn, phone, email, bank;
    /// actions redact, mask_last4, off). Default: cards and social security numbers redacted.
    #[arg(long, env = "WINNERR_REDACT")]
    pub redact: Option<String>,

    /// Consent to record and transcribe, per organization: `org=disclose;other=opt_in:5;*=none`
    /// (`disclose`: the caller hears WINNERR_CONSENT_SAY before the stream starts; `opt_in`: the
    /// caller is asked to press a key, 1 unless named, and only then is the call streamed).
    /// Default: none.
    #[arg(long, env = "WINNERR_CONSENT")]
    pub consent: Option<String>,

    /// Consent callers from all-party-consent states need at least, placed by their number's
    /// area code: `CA=opt_in;all_party=disclose` (`all_party`: CA, CT, DE, FL, IL, MD, MA, MI,
    /// MT, NV, NH, OR, PA, WA). A call asks the stricter of this and its organization's policy.
    #[arg(long, env = "WINNERR_CONSENT_STATES")]
    pub consent_states: Option<String>,

    /// The disclosure callers hear where the consent policy is `disclose` (and, with the key to
    /// press, where it is `opt_in`).
    #[arg(long, env = "WINNERR_CONSENT_SAY")]
    pub consent_say: Option<String>,

    /// What the voice webhook says to a caller when the node is full, before connecting the
    /// call untranscribed.
    #[arg(long, env = "WINNERR_FULL_SAY")]
    pub full_say: Option<String>,

    /// Threads each speech worker runs the model on (its own pool; Candle's kernels run there).
    /// Default: the cores over the workers.
    #[arg(long, env = "WINNERR_ASR_THREADS")]
    pub asr_threads: Option<usize>,

    /// Interim hypotheses that may wait for the speech worker before the oldest is dropped.
    #[arg(long, env = "WINNERR_ASR_MAX_INTERIMS", default_value_t = 8)]
    pub asr_max_interims: usize,

    /// Silence that ends an utterance, in ms.
    #[arg(long, env = "WINNERR_END_OF_UTTERANCE_MS", default_value_t = 600)]
    pub end_of_utterance_ms: u64,

    /// Non-speech (ms) after which an utterance's final starts decoding, while a speech worker is
    /// free, so that it is ready if the utterance ends in that pause (with `WINNERR_TURN=smart`,
    /// its pause); 0: finals are decoded once the utterance has ended. Shorter than
    /// `WINNERR_END_OF_UTTERANCE_MS`.
    #[arg(long, env = "WINNERR_SPECULATE_AFTER_MS", default_value_t = 200)]
    pub speculate_after_ms: u64,

    /// What finds speech in a track: `silero` (the neural detector; its weights come with
    /// `make models`) or `energy` (a level gate: fails in background noise). Without the weights
    /// and with `WINNERR_ASR=false`, `silero` falls back to `energy` with a warning.
    #[arg(long, env = "WINNERR_VAD", default_value = "silero", value_parser = ["silero", "energy"])]
    pub vad: String,

    /// Speech probability (0–1) at which the neural detector starts speech; it ends 0.15 lower.
    #[arg(long, env = "WINNERR_VAD_THRESHOLD", default_value_t = 0.5)]
    pub vad_threshold: f32,

    /// What ends an utterance at a pause: `off` (the default) the end-of-utterance silence
    /// alone; `smart` (Smart Turn, the end-of-turn model; its weights come with `make models`)
    /// asks at each pause whether the turn is over, with `WINNERR_TURN_FALLBACK_MS` as the
    /// silence that ends it otherwise. Off by default: on a 2-core node each answer costs about
    /// 250 ms of a core and made finals later, not sooner (benches/RESULTS.md, voice_noise).
    #[arg(long, env = "WINNERR_TURN", default_value = "off", value_parser = ["smart", "off"])]
    pub turn: String,

    /// Non-speech (ms) after which the turn model is asked whether the turn is over.
    #[arg(long, env = "WINNERR_TURN_PAUSE_MS", default_value_t = winnerr_voice::TurnConfig::default().pause_ms)]
    pub turn_pause_ms: u64,

    /// Probability of a complete turn (0–1) at which the utterance ends at the pause.
    #[arg(long, env = "WINNERR_TURN_THRESHOLD", default_value_t = winnerr_voice::TurnConfig::default().threshold)]
    pub turn_threshold: f32,

    /// Silence (ms) that ends an utterance the turn model did not end (with `WINNERR_TURN=smart`;
    /// without it `WINNERR_END_OF_UTTERANCE_MS` does).
    #[arg(long, env = "WINNERR_TURN_FALLBACK_MS", default_value_t = winnerr_voice::TurnConfig::default().fallback_ms)]
    pub turn_fallback_ms: u64,

    /// Watch lists for keyword alerts: `org=phrase|phrase;org2=…`, `*=` for everyone else
    /// (default: cancel, lawyer, attorney, too expensive, complaint, refund).
    #[arg(long, env = "WINNERR_ALERT_KEYWORDS")]
    pub alert_keywords: Option<String>,

    /// Coaching alerts from calls' talk signals, per organization:
    /// `acme=monologue:60,talk_ratio:0.7/120,silence:20,interruptions:3;*=off` (seconds; a rule
    /// not named keeps its default, shown here; `rule:off` or `off` turns rules off).
    #[arg(long, env = "WINNERR_COACHING")]
    pub coaching: Option<String>,
}

impl Config {
    /// The voice stage's settings.
    pub fn voice(&self) -> Result<winnerr_voice::VoiceConfig, String> {
        let mut voice = winnerr_voice::VoiceConfig::default();
        if let Some(spec) = &self.redact {
            voice.redaction = winnerr_voice::RedactionConfig::parse(spec)
                .map_err(|e| format!("WINNERR_REDACT: {e}"))?;
        }
        voice.utterance.activity.hangover_ms = self.end_of_utterance_ms;
        if self.speculate_after_ms >= self.end_of_utterance_ms {
            return Err(format!(
                "WINNERR_SPECULATE_AFTER_MS ({}) must be shorter than WINNERR_END_OF_UTTERANCE_MS ({})",
                self.speculate_after_ms, self.end_of_utterance_ms
            ));
        }
        voice.speculate_after_ms = (self.speculate_after_ms > 0).then_some(self.speculate_after_ms);
        if self.turn_pause_ms >= self.turn_fallback_ms {
            return Err(format!(
                "WINNERR_TURN_PAUSE_MS ({}) must be shorter than WINNERR_TURN_FALLBACK_MS ({})",
                self.turn_pause_ms, self.turn_fallback_ms
            ));
        }
        if !(0.0..=1.0).contains(&self.turn_threshold) {
            return Err(format!(
                "WINNERR_TURN_THRESHOLD must lie in [0, 1], not {}",
                self.turn_threshold
            ));
        }
        if let Some(spec) = &self.coaching {
            voice.coaching = winnerr_events::PerOrg::parse(
                spec,
                winnerr_voice::Coaching::default(),
                winnerr_voice::Coaching::parse,
            )
            .map_err(|e| format!("WINNERR_COACHING: {e}"))?;
        }
        if let Some(spec) = &self.alert_keywords {
            voice
                .alerts
                .parse_keywords(spec)
                .map_err(|e| format!("WINNERR_ALERT_KEYWORDS: {e}"))?;
        }
        Ok(voice)
    }

    /// When the turn model is asked and how its answer is read.
    pub fn turn_config(&self) -> winnerr_voice::TurnConfig {
        winnerr_voice::TurnConfig {
            pause_ms: self.turn_pause_ms,
            threshold: self.turn_threshold,
            fallback_ms: self.turn_fallback_ms,
        }
    }

    /// The identity provider's keys, read and checked (none without `WINNERR_JWKS_FILE`).
    pub fn jwks(&self) -> Result<Option<winnerr_gateway::Jwks>, String> {
        let Some(path) = &self.jwks_file else {
            if self.jwt_issuer.is_some() || self.jwt_audience.is_some() {
                return Err(
                    "WINNERR_JWT_ISSUER and WINNERR_JWT_AUDIENCE need WINNERR_JWKS_FILE".into(),
                );
            }
            return Ok(None);
        };
        let json = std::fs::read_to_string(path)
            .map_err(|e| format!("WINNERR_JWKS_FILE {}: {e}", path.display()))?;
        winnerr_gateway::Jwks::parse(
            &json,
            self.jwt_issuer.as_deref(),
            self.jwt_audience.as_deref(),
        )
        .map(Some)
        .map_err(|e| format!("WINNERR_JWKS_FILE {}: {e}", path.display()))
    }

    /// The gateway's ping interval.
    pub fn feed_heartbeat(&self) -> std::time::Duration {
        std::time::Duration::from_secs_f64(self.feed_heartbeat)
    }

    /// The retention policy of WINNERR_RETENTION.
    pub fn retention(&self) -> Result<winnerr_store::RetentionPolicy, String> {
        winnerr_store::Retention::policy(self.retention.as_deref().unwrap_or(""))
            .map_err(|e| format!("WINNERR_RETENTION: {e}"))
    }

    /// The consent policy of WINNERR_CONSENT and WINNERR_CONSENT_SAY.
    pub fn consent(&self) -> Result<winnerr_ingest::ConsentPolicy, String> {
        winnerr_ingest::ConsentPolicy::parse(
            self.consent.as_deref().unwrap_or(""),
            self.consent_states.as_deref().unwrap_or(""),
            self.consent_say.as_deref(),
        )
        .map_err(|e| format!("WINNERR_CONSENT or WINNERR_CONSENT_STATES: {e}"))
    }

    /// Calls served at once, in all and per organization.
    pub fn call_limits(&self) -> winnerr_ingest::CallLimits {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        winnerr_ingest::CallLimits {
            max_calls: self.max_calls.unwrap_or(CALLS_PER_CORE * cores),
            max_calls_per_org: self.max_calls_per_org,
        }
    }

    /// How the speech workers are laid out: the settings, else one single-threaded worker per
    /// core.
    pub fn asr_layout(&self) -> winnerr_voice::AsrConfig {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let mut layout = winnerr_voice::AsrConfig::for_cores(cores);
        if let Some(workers) = self.asr_workers {
            layout.workers = workers;
            layout.threads = (cores / workers.max(1)).max(1);
        }
        if let Some(threads) = self.asr_threads {
            layout.threads = threads;
        }
        layout.max_interims_waiting = self.asr_max_interims;
        layout
    }

    pub fn http_header_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs_f64(self.http_header_timeout)
    }
}

fn parse_dial(value: &str) -> Result<Dial, String> {
    value.parse()
}

impl Config {
    /// The embedded defaults, listening on `listen` (port 0 picks a free port).
    /// The URL of the store, if there is one: `DATABASE_URL`, or the embedded SQLite file when
    /// one process runs every role (a process of some roles has a store only when told where).
    pub fn database(&self) -> Option<&str> {
        match self.database_url.as_deref() {
            None if self.runs_every_role() => Some(EMBEDDED_DATABASE),
            None | Some(NO_DATABASE) => None,
            Some(url) => Some(url),
        }
    }

    /// Whether this process runs the whole engine (the default) rather than some of its roles.
    pub fn runs_every_role(&self) -> bool {
        [
            NodeRole::Voice,
            NodeRole::Gateway,
            NodeRole::Store,
            NodeRole::Scoring,
        ]
        .iter()
        .all(|r| self.roles.contains(r))
    }

    pub fn local(listen: SocketAddr) -> Self {
        use clap::Parser;
        #[derive(Parser)]
        struct Defaults {
            #[command(flatten)]
            config: Config,
        }
        let mut config = Defaults::parse_from(["winnerr"]).config;
        config.listen = listen;
        config
    }

    /// Problems that should stop the server from starting.
    pub fn validate(&self) -> Result<(), String> {
        self.consent()?;
        self.retention()?;
        if !(self.retention_every.is_finite()
            && (0.05..=86_400.0 * 7.0).contains(&self.retention_every))
        {
            return Err("WINNERR_RETENTION_EVERY must be between 0.05 seconds and 7 days".into());
        }
        if !(self.feed_heartbeat.is_finite() && (0.05..=3600.0).contains(&self.feed_heartbeat)) {
            return Err("WINNERR_FEED_HEARTBEAT must be between 0.05 and 3600 seconds".into());
        }
        if !(self.http_header_timeout.is_finite()
            && (0.1..=3600.0).contains(&self.http_header_timeout))
        {
            return Err("WINNERR_HTTP_HEADER_TIMEOUT must be between 0.1 and 3600 seconds".into());
        }
        if self.max_connections == 0 || self.max_connections_per_address == 0 {
            return Err(
                "WINNERR_MAX_CONNECTIONS and WINNERR_MAX_CONNECTIONS_PER_ADDRESS must be at least 1"
                    .into(),
            );
        }
        self.jwks()?;
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err("WINNERR_TLS_CERT and WINNERR_TLS_KEY go together".into());
        }
        for path in [&self.tls_cert, &self.tls_key].into_iter().flatten() {
            if !path.is_file() {
                return Err(format!("TLS file {} does not exist", path.display()));
            }
        }
        if self.jwt_secret.expose_secret().len() < 16 {
            return Err("WINNERR_JWT_SECRET must be at least 16 bytes".into());
        }
        if let Some(signal) = self.production_signal() {
            let dev = self.dev_secrets();
            if !dev.is_empty() && !self.development {
                return Err(format!(
                    "{signal} looks like production, but {} still hold the published development values: \
                     anyone could sign tokens, streams or read the data. Set them, or WINNERR_DEVELOPMENT=true \
                     for a development server",
                    dev.join(", ")
                ));
            }
        }
        if self.twilio_auth_token.expose_secret().is_empty() {
            return Err("TWILIO_AUTH_TOKEN must not be empty".into());
        }
        if let Some(url) = &self.public_url {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(format!(
                    "WINNERR_PUBLIC_URL {url:?} must start with https:// or http://"
                ));
            }
        }
        if let Some(url) = &self.database_url {
            if !is_postgres_url(url) && !winnerr_store::is_sqlite_url(url) && url != NO_DATABASE {
                return Err(format!(
                    "DATABASE_URL must be a postgres:// or sqlite:// URL, or `{NO_DATABASE}`"
                ));
            }
        }
        if let Some(url) = &self.database_migration_url {
            if !is_postgres_url(url) {
                return Err(
                    "DATABASE_MIGRATION_URL must be a postgres:// URL (SQLite migrates itself)"
                        .into(),
                );
            }
        }
        self.keyring()?;
        if self.roles.is_empty() {
            return Err("WINNERR_ROLES names no role".into());
        }
        let all = self.runs_every_role();
        if !all && self.kafka_brokers.is_none() {
            return Err("running only some roles (WINNERR_ROLES) needs KAFKA_BROKERS: the in-process bus cannot reach the others".into());
        }
        if !all
            && self.has_role(NodeRole::Store)
            && matches!(self.database_url.as_deref(), None | Some(NO_DATABASE))
        {
            return Err("the store role on its own needs DATABASE_URL: a database the other roles can reach too".into());
        }
        self.voice()?;
        if self.max_calls == Some(0) || self.max_calls_per_org == Some(0) {
            return Err(
                "WINNERR_MAX_CALLS and WINNERR_MAX_CALLS_PER_ORG must be at least 1".into(),
            );
        }
        if self.asr_threads == Some(0) || self.asr_workers == Some(0) {
            return Err("WINNERR_ASR_WORKERS and WINNERR_ASR_THREADS must be at least 1".into());
        }
        if self.kafka_partitions < 1 || self.kafka_replication < 1 {
            return Err("KAFKA_PARTITIONS and KAFKA_REPLICATION must be at least 1".into());
        }
        if self.max_message_bytes < 1024
            || self.call_queue == 0
            || self.feed_buffer == 0
            || self.feed_history == 0
            || self.feed_send_queue < 2
            || self.bus_capacity == 0
        {
            return Err(
                "buffer sizes must be positive (and the message limit at least 1024)".into(),
            );
        }
        Ok(())
    }

    /// The Kafka bus settings, when Kafka is configured.
    pub fn kafka(&self) -> Option<winnerr_bus::KafkaConfig> {
        let brokers = self.kafka_brokers.as_ref()?;
        let mut kafka = winnerr_bus::KafkaConfig::new(brokers.clone());
        kafka.events_topic = self.kafka_events_topic.clone();
        kafka.dead_letter_topic = self.kafka_dead_letter_topic.clone();
        kafka.partitions = self.kafka_partitions;
        kafka.replication = self.kafka_replication;
        Some(kafka)
    }

    /// Whether secrets are still the development defaults.
    pub fn uses_dev_secrets(&self) -> bool {
        !self.dev_secrets().is_empty()
    }

    /// The settings still at their published development values (an HS256 secret that is off
    /// does not count).
    pub fn dev_secrets(&self) -> Vec<&'static str> {
        [
            (
                "WINNERR_JWT_SECRET",
                self.hs256() && self.jwt_secret.expose_secret() == DEV_JWT_SECRET,
            ),
            (
                "TWILIO_AUTH_TOKEN",
                self.twilio_auth_token.expose_secret() == DEV_TWILIO_AUTH_TOKEN,
            ),
            (
                "WINNERR_ENCRYPTION_KEYS",
                self.encryption_keys.expose_secret() == winnerr_store::crypto::DEV_KEYS,
            ),
            (
                "WINNERR_LOOKUP_KEY",
                self.lookup_key.expose_secret() == winnerr_store::crypto::DEV_LOOKUP_KEY,
            ),
        ]
        .into_iter()
        .filter_map(|(name, dev)| dev.then_some(name))
        .collect()
    }

    /// Whether HS256 tokens are accepted: always, except with an identity provider and no
    /// secret of the engine's own (its tokens are the only ones then).
    pub fn hs256(&self) -> bool {
        !(self.jwks_file.is_some() && self.jwt_secret.expose_secret() == DEV_JWT_SECRET)
    }

    /// What makes this configuration look like production, if anything does.
    pub fn production_signal(&self) -> Option<&'static str> {
        if self.jwks_file.is_some() {
            Some("an identity provider (WINNERR_JWKS_FILE)")
        } else if self.public_url.is_some() {
            Some("a public URL (WINNERR_PUBLIC_URL)")
        } else if self.tls_cert.is_some() {
            Some("TLS (WINNERR_TLS_CERT)")
        } else if !self.listen.ip().is_loopback() {
            Some("a listener beyond loopback (WINNERR_LISTEN)")
        } else {
            None
        }
    }

    /// Whether this process runs `role`.
    pub fn has_role(&self, role: NodeRole) -> bool {
        self.roles.contains(&role)
    }

    /// The key ring of encrypted fields.
    pub fn keyring(&self) -> Result<winnerr_store::Keyring, String> {
        winnerr_store::Keyring::parse(
            self.encryption_keys.expose_secret(),
            self.lookup_key.expose_secret(),
        )
        .map_err(|e| format!("WINNERR_ENCRYPTION_KEYS / WINNERR_LOOKUP_KEY: {e}"))
    }
}

/// The value that follows `--config` (or `--config=`), removed from `args`; else `WINNERR_CONFIG`.
fn take_config_path(args: &mut Vec<std::ffi::OsString>) -> Option<std::path::PathBuf> {
    let position = args
        .iter()
        .position(|a| a == "--config" || a.to_str().is_some_and(|a| a.starts_with("--config=")));
    if let Some(i) = position {
        let flag = args.remove(i);
        return match flag.to_str().and_then(|f| f.strip_prefix("--config=")) {
            Some(path) => Some(path.into()),
            None if i < args.len() => Some(args.remove(i).into()),
            None => None,
        };
    }
    std::env::var_os("WINNERR_CONFIG").map(Into::into)
}

/// Applies a configuration file to the command line: `--config FILE` (or `WINNERR_CONFIG`) names
/// a TOML file of settings named as the fields of [`Config`] (`listen = "0.0.0.0:8080"`,
/// `roles = "gateway"`, `kafka_brokers = "kafka:9092"`, `asr = false`). A flag on the command
/// line beats the environment, which beats the file, which beats the defaults. An unknown
/// setting, or one of the wrong type, is an error that names it.
pub fn with_config_file(
    mut args: Vec<std::ffi::OsString>,
) -> Result<Vec<std::ffi::OsString>, String> {
    let Some(path) = take_config_path(&mut args) else {
        return Ok(args);
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("config file {}: {e}", path.display()))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e| format!("config file {}: {e}", path.display()))?;
    let settings = <Config as clap::Args>::augment_args(clap::Command::new("winnerr"));
    for (key, value) in table {
        let Some(arg) = settings
            .get_arguments()
            .find(|a| a.get_id() == key.as_str())
        else {
            let known: Vec<&str> = settings
                .get_arguments()
                .map(|a| a.get_id().as_str())
                .filter(|id| *id != "help")
                .collect();
            return Err(format!(
                "config file {}: unknown setting {key:?}; settings are: {}",
                path.display(),
                known.join(", ")
            ));
        };
        let long = arg.get_long().expect("every setting has a flag");
        let on_command_line = args.iter().any(|a| {
            a.to_str()
                .is_some_and(|a| a == format!("--{long}") || a.starts_with(&format!("--{long}=")))
        });
        let in_environment = arg
            .get_env()
            .is_some_and(|env| std::env::var_os(env).is_some());
        if on_command_line || in_environment {
            continue;
        }
        let value = match &value {
            toml::Value::Array(items) => items
                .iter()
                .map(scalar)
                .collect::<Option<Vec<_>>>()
                .map(|v| v.join(",")),
            other => scalar(other),
        }
        .ok_or_else(|| {
            format!(
                "config file {}: {key} cannot be a {}",
                path.display(),
                value.type_str()
            )
        })?;
        if matches!(arg.get_action(), clap::ArgAction::SetTrue) {
            match value.as_str() {
                "true" => args.push(format!("--{long}").into()),
                "false" => {}
                _ => {
                    return Err(format!(
                        "config file {}: {key} must be true or false",
                        path.display()
                    ));
                }
            }
        } else {
            args.push(format!("--{long}={value}").into());
        }
    }
    Ok(args)
}

/// A setting's value as a flag takes it.
fn scalar(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod config_file_tests {
    use super::*;
    use clap::Parser;

    fn secret(value: &str) -> SecretString {
        SecretString::new(value.to_owned())
    }

    /// A configuration printed for debugging (a log line, a panic) shows no secret.
    #[test]
    fn debug_output_shows_no_secret() {
        let mut config = Config::local("127.0.0.1:0".parse().unwrap());
        config.jwt_secret = secret("jwt-secret-do-not-print-1");
        config.twilio_auth_token = secret("twilio-token-do-not-print");
        config.encryption_keys = secret("k9:a2V5LWRvLW5vdC1wcmludA==");
        config.lookup_key = secret("bG9va3VwLWRvLW5vdC1wcmludA==");
        let printed = format!("{config:?}");
        for value in [
            "jwt-secret-do-not-print",
            "twilio-token-do-not-print",
            "a2V5LWRvLW5vdC1wcmludA",
            "bG9va3VwLWRvLW5vdC1wcmludA",
        ] {
            assert!(!printed.contains(value), "{value} printed");
        }
        assert!(printed.contains("REDACTED"), "{printed}");
    }

    #[derive(Parser)]
    struct Serve {
        #[command(flatten)]
        config: Config,
    }

    fn parse(file: &str, flags: &[&str]) -> Result<Config, String> {
        let path = std::env::temp_dir().join(format!(
            "winnerr-config-{}.toml",
            winnerr_events::EventId::now_v7().simple()
        ));
        std::fs::write(&path, file).unwrap();
        let mut args: Vec<std::ffi::OsString> = vec!["winnerr".into()];
        args.extend(flags.iter().map(Into::into));
        args.push("--config".into());
        args.push(path.clone().into());
        let args = with_config_file(args);
        std::fs::remove_file(&path).unwrap();
        Serve::try_parse_from(args?)
            .map(|s| s.config)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn a_config_file_sets_what_flags_do_not() {
        let config = parse(
            "listen = \"0.0.0.0:9000\"\nasr = false\nfeed_history = 100\nroles = [\"gateway\", \"store\"]\n\
             twilio_insecure_skip_signature = true\n",
            &["--feed-history=7"],
        )
        .unwrap();
        assert_eq!(config.listen.to_string(), "0.0.0.0:9000");
        assert!(!config.asr);
        assert!(config.twilio_insecure_skip_signature);
        assert_eq!(config.feed_history, 7, "a flag beats the file");
        assert!(config.has_role(NodeRole::Gateway) && !config.has_role(NodeRole::Voice));
    }

    #[test]
    fn a_config_file_with_an_unknown_or_wrong_setting_is_refused_by_name() {
        let unknown = parse("lisen = \"0.0.0.0:9000\"\n", &[]).unwrap_err();
        assert!(unknown.contains("unknown setting \"lisen\""), "{unknown}");
        let wrong = parse("feed_history = \"lots\"\n", &[]).unwrap_err();
        assert!(wrong.contains("feed-history"), "{wrong}");
        let bad_toml = parse("listen = \n", &[]).unwrap_err();
        assert!(bad_toml.contains("config file"), "{bad_toml}");
    }

    #[test]
    fn the_store_is_the_embedded_sqlite_file_unless_told_otherwise() {
        let with = |url: Option<&str>| {
            let mut config = Config::local("127.0.0.1:0".parse().unwrap());
            config.database_url = url.map(str::to_owned);
            config
        };
        assert_eq!(with(None).database(), Some(EMBEDDED_DATABASE));
        assert_eq!(with(Some("none")).database(), None);
        let mut gateway_only = with(None);
        gateway_only.roles = vec![NodeRole::Gateway];
        assert_eq!(
            gateway_only.database(),
            None,
            "a file of its own is no one's store"
        );
        for url in [
            "postgres://winnerr_service@db/crm",
            "sqlite://data/crm.db",
            "sqlite::memory:",
            "none",
        ] {
            assert_eq!(with(Some(url)).validate(), Ok(()), "{url}");
        }
        let refused = with(Some("mysql://db/crm")).validate().unwrap_err();
        assert!(refused.contains("DATABASE_URL"), "{refused}");
        let mut config = with(None);
        config.database_migration_url = Some("sqlite://x.db".into());
        let refused = config.validate().unwrap_err();
        assert!(refused.contains("DATABASE_MIGRATION_URL"), "{refused}");
    }

    /// A configuration that looks like production refuses to start with any published
    /// development secret, unless it says it is a development server; with an identity provider
    /// and no secret of its own, HS256 is off rather than the development secret.
    #[test]
    fn production_refuses_the_development_secrets() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        /// A setting that says "production", and how a test sets it.
        type Signal = (&'static str, fn(&mut Config));
        let looks_like_production: [Signal; 4] = [
            ("WINNERR_JWKS_FILE", |c| {
                c.jwks_file = Some(
                    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                        .join("gateway/tests/fixtures/idp-test-jwks.json"),
                )
            }),
            ("WINNERR_PUBLIC_URL", |c| {
                c.public_url = Some("https://voice.example.test".into())
            }),
            ("WINNERR_TLS_CERT", |c| {
                let tls =
                    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls");
                c.tls_cert = Some(tls.join("cert.pem"));
                c.tls_key = Some(tls.join("key.pem"));
            }),
            ("WINNERR_LISTEN", |c| {
                c.listen = "0.0.0.0:8080".parse().unwrap()
            }),
        ];
        assert!(root.join("tests/fixtures/tls/cert.pem").is_file());
        let secrets = |c: &mut Config| {
            c.jwt_secret = secret("a-real-secret-of-32-bytes-000000");
            c.twilio_auth_token = secret("a-real-twilio-token");
            c.encryption_keys = secret("k2:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=");
            c.lookup_key = secret("ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=");
        };
        for (signal, production) in looks_like_production {
            let mut config = Config::local("127.0.0.1:0".parse().unwrap());
            production(&mut config);
            let refused = config.validate().unwrap_err();
            assert!(refused.contains(signal), "{signal}: {refused}");
            assert!(refused.contains("TWILIO_AUTH_TOKEN"), "{refused}");
            assert!(refused.contains("WINNERR_ENCRYPTION_KEYS"), "{refused}");
            config.development = true;
            assert_eq!(config.validate(), Ok(()), "{signal}, development");
            config.development = false;
            secrets(&mut config);
            assert_eq!(config.validate(), Ok(()), "{signal}, real secrets");
            assert!(config.hs256());
        }
        // An identity provider without an HS256 secret: HS256 is off, which is no dev secret.
        let mut config = Config::local("127.0.0.1:0".parse().unwrap());
        (looks_like_production[0].1)(&mut config);
        secrets(&mut config);
        config.jwt_secret = secret(DEV_JWT_SECRET);
        assert!(!config.hs256());
        assert_eq!(config.validate(), Ok(()));
        // Loopback with nothing of production: the development defaults still run the demo.
        assert_eq!(
            Config::local("127.0.0.1:0".parse().unwrap()).validate(),
            Ok(())
        );
    }
}
