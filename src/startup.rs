//! Builds the whole engine from a [`Config`] and runs it until shutdown: the bus, the voice
//! stage, ingest and the gateway on one HTTP server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures_util::FutureExt;
use secrecy::ExposeSecret;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use winnerr_bus::{Bus, Group, InProcessBus, KafkaBus, run_group};
use winnerr_gateway::{Gateway, GatewayConfig, telemetry};
use winnerr_ingest::{Ingest, IngestConfig};
use winnerr_models::{DecodeOptions, ModelDir, SentimentModel, SileroVad, SmartTurn, Whisper};
use winnerr_scoring::{LeadSource, NoCrm, Scorer};
use winnerr_store::{Retention, Store, StoreWriter};
use winnerr_voice::{AsrConfig, AsrWorker, Models, SpeechDetector, SpeechModels, TurnDetector};

use crate::config::{Config, NodeRole};
use crate::leads::StoreLeads;

/// How long feeds keep going after the last events are published, for the rooms to hand them
/// to clients (a broker round trip on Kafka) before the feeds close.
const FEED_GRACE: Duration = Duration::from_millis(300);
/// How long shutdown waits for live calls to drain through the voice stage.
const DRAIN_DEADLINE: Duration = Duration::from_secs(10);

/// A running engine.
pub struct App {
    /// Where it listens (the real port when the config asked for port 0).
    pub addr: SocketAddr,
    pub gateway: Gateway,
    pub ingest: Ingest,
    pub bus: Arc<dyn Bus>,
    kafka: Option<KafkaBus>,
    /// Stops taking requests and ends live streams.
    shutdown: CancellationToken,
    /// Closes the feeds, once the last events have reached them.
    feeds: CancellationToken,
    server: JoinHandle<std::io::Result<()>>,
    /// Serving HTTPS and WSS.
    tls: bool,
    voice: JoinHandle<()>,
    /// The voice stage's message analysis: done once ingest has closed and every message it
    /// handed on is published.
    messages: JoinHandle<()>,
    /// The store writer: it stops after the voice stage has drained.
    writer: Option<Worker>,
    /// The lead scorer: it scores the calls' last events, then stops.
    scorer: Option<Worker>,
}

impl App {
    /// Binds, starts every stage in the order data flows (bus, store, voice, ingest, scoring,
    /// gateway; the store first, as voice reads each call's keyterms from it and ingest's webhook
    /// checks numbers against it) and begins serving; [`App::wait`] stops them in reverse.
    pub async fn start(config: &Config) -> anyhow::Result<App> {
        config.validate().map_err(anyhow::Error::msg)?;
        // The recorder must exist before any stage describes its metrics.
        telemetry::prometheus();
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let addr = listener.local_addr()?;
        let shutdown = CancellationToken::new();
        let feeds = CancellationToken::new();

        let (bus, kafka) = start_bus(config).await?;
        let (store, writer) = match config.database() {
            Some(url) => {
                let (store, writer) = start_store(config, url, bus.as_ref(), &shutdown).await?;
                (Some(store), writer)
            }
            None => (None, None),
        };
        let voice = start_voice(config, bus.clone(), store.as_ref()).await?;
        let ingest = start_ingest(
            config,
            (voice.calls, voice.messages),
            store.as_ref(),
            &bus,
            shutdown.clone(),
        )?;
        let scorer = start_scoring(config, store.as_ref(), &bus).await?;
        let gateway = start_gateway(config, &bus, store, voice.audio, feeds.clone()).await?;
        let router = routes(config, &gateway, &ingest);
        let tls = tls(config).await?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let server = serve(listener, router, tls, config, shutdown.clone())?;
        warn_of_risks(config, addr);
        gateway.set_ready(true);
        info!(%addr, scheme, roles = ?config.roles, "winnerr serving");
        Ok(App {
            addr,
            tls: scheme == "https",
            gateway,
            ingest,
            bus,
            kafka,
            shutdown,
            feeds,
            server,
            voice: voice.task,
            messages: voice.messages_task,
            writer,
            scorer,
        })
    }

    /// `ws://…/twilio/stream` of this server.
    pub fn stream_url(&self) -> String {
        format!(
            "{}://{}{}",
            self.ws(),
            self.addr,
            winnerr_ingest::STREAM_PATH
        )
    }

    /// `ws://…/feed` of this server.
    pub fn feed_url(&self) -> String {
        format!(
            "{}://{}{}",
            self.ws(),
            self.addr,
            winnerr_gateway::FEED_PATH
        )
    }

    /// `http://…` of this server.
    pub fn http_url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    fn ws(&self) -> &'static str {
        if self.tls { "wss" } else { "ws" }
    }

    /// A token that stops the server when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Stops taking requests, ends live streams and feeds, and waits for the voice stage to
    /// publish what it has (up to a deadline).
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        self.wait().await;
    }

    /// Runs until the shutdown token is cancelled, then drains in order: live streams end and no
    /// new call starts; the voice stage publishes every call's last events; the bus delivers them;
    /// the store writes them; the feeds hand them to their clients; then the feeds close.
    pub async fn wait(self) {
        let App {
            gateway,
            ingest,
            server,
            voice,
            messages,
            kafka,
            writer,
            scorer,
            shutdown,
            feeds,
            ..
        } = self;
        shutdown.cancelled().await;
        gateway.set_ready(false);
        ingest.close();
        if !ingest.drain(DRAIN_DEADLINE).await {
            warn!("streams did not close before the deadline");
        }
        if tokio::time::timeout(DRAIN_DEADLINE, voice).await.is_err() {
            warn!("voice stage did not drain before the deadline");
        }
        if tokio::time::timeout(DRAIN_DEADLINE, messages)
            .await
            .is_err()
        {
            warn!("messages were not all analysed before the deadline");
        }
        flush(kafka.as_ref(), "call events").await;
        // Every call event is published now; the scorer scores what it has, and its last
        // scores are published before the writer stops.
        if let Some((scorer, stop)) = scorer {
            stop.cancel();
            if tokio::time::timeout(DRAIN_DEADLINE, scorer).await.is_err() {
                warn!("lead scorer did not finish before the deadline");
            }
        }
        flush(kafka.as_ref(), "lead scores").await;
        // Every event is published now; the writer stores what it has and stops.
        if let Some((writer, stop)) = writer {
            stop.cancel();
            if tokio::time::timeout(DRAIN_DEADLINE, writer).await.is_err() {
                warn!("store writer did not finish before the deadline");
            }
        }
        tokio::time::sleep(FEED_GRACE).await;
        feeds.cancel();
        if !gateway.drain(DRAIN_DEADLINE).await {
            warn!("feeds did not close before the deadline");
        }
        match server.await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => warn!(error = %err, "server stopped with an error"),
            Err(err) => warn!(error = %err, "server task failed"),
        }
        info!("winnerr stopped");
    }
}

/// The bus: Kafka when brokers are configured (also returned, to flush at shutdown), else the
/// in-process bus.
async fn start_bus(config: &Config) -> anyhow::Result<(Arc<dyn Bus>, Option<KafkaBus>)> {
    Ok(match config.kafka() {
        Some(kafka) => {
            let kafka = KafkaBus::connect(kafka)
                .await
                .context("cannot reach Kafka")?;
            (Arc::new(kafka.clone()), Some(kafka))
        }
        None => (Arc::new(InProcessBus::new(config.bus_capacity)), None),
    })
}

/// The voice stage as started: where ingest hands it calls, listen-in's tap on their audio, and
/// its task (done once every call it took has published its end).
struct VoiceStage {
    calls: mpsc::Sender<winnerr_events::CallAudio>,
    /// Where ingest hands inbound messages for analysis.
    messages: mpsc::Sender<winnerr_events::InboundMessage>,
    audio: Arc<winnerr_events::AudioTap>,
    task: JoinHandle<()>,
    /// Done once every message handed to it is published.
    messages_task: JoinHandle<()>,
}

/// The voice stage, with its speech workers and detector when this node has the voice role, and
/// each call's keyterms from the store (the trade's words without one).
async fn start_voice(
    config: &Config,
    bus: Arc<dyn Bus>,
    store: Option<&Store>,
) -> anyhow::Result<VoiceStage> {
    let asr = if config.asr && config.has_role(NodeRole::Voice) {
        Some(start_speech_workers(config).await?)
    } else {
        None
    };
    let mut voice_config = config.voice().map_err(anyhow::Error::msg)?;
    if config.has_role(NodeRole::Voice) {
        voice_config.speech = speech_detector(config).await?;
        if asr.is_some() {
            voice_config.turn = turn_detector(config).await?;
        }
    }
    let (calls, calls_rx) = mpsc::channel(winnerr_voice::NEW_CALL_QUEUE);
    // Calls pass the listen-in tap on their way from ingest to voice.
    let audio = winnerr_events::AudioTap::new();
    let calls_rx = winnerr_voice::tap_calls(calls_rx, audio.clone(), config.call_queue);
    let keyterms: winnerr_voice::keyterms::Keyterms = match store {
        Some(store) => Arc::new(crate::keyterms::StoreKeyterms {
            store: store.clone(),
        }),
        None => Arc::new(winnerr_voice::keyterms::TradeTerms),
    };
    // Messages are scored for sentiment by the speech workers' model, where they run.
    let (messages, messages_rx) = mpsc::channel(winnerr_voice::MESSAGE_QUEUE);
    let sentiment = asr.as_ref().map(AsrWorker::models);
    let messages_task =
        winnerr_voice::spawn_messages(messages_rx, bus.clone(), voice_config.clone(), sentiment);
    let task = winnerr_voice::spawn(calls_rx, bus, voice_config, asr, keyterms);
    Ok(VoiceStage {
        calls,
        messages,
        audio,
        task,
        messages_task,
    })
}

/// The speech workers, laid out as configured (or, embedded without `winnerr serve`'s kernel
/// setting, one worker on every core).
async fn start_speech_workers(config: &Config) -> anyhow::Result<AsrWorker> {
    let models = load_models(&config.asr_model).await?;
    let mut layout = config.asr_layout();
    let kernel_threads = kernel_threads();
    if kernel_threads != layout.threads {
        if config.asr_workers.is_none() && config.asr_threads.is_none() {
            // An engine embedded without `winnerr serve`'s setting (tests, benches): the
            // workers Candle is split for, one on every core, as before.
            layout.workers = 1;
            layout.threads = kernel_threads;
        } else {
            warn!(
                threads = layout.threads,
                kernel_threads,
                "Candle splits its kernels for another number of threads than each speech worker has: set RAYON_NUM_THREADS to the workers' threads (`winnerr serve` does)"
            );
        }
    }
    info!(
        workers = layout.workers,
        threads = layout.threads,
        "speech workers"
    );
    Ok(AsrWorker::start(models, layout))
}

/// The speech detector the settings name: Silero from the model folder (loaded once per
/// process), or the energy gate.
async fn speech_detector(config: &Config) -> anyhow::Result<SpeechDetector> {
    static LOADED: std::sync::OnceLock<Arc<SileroVad>> = std::sync::OnceLock::new();
    if config.vad == "energy" {
        info!(vad = "energy", "speech detector");
        return Ok(SpeechDetector::Energy);
    }
    anyhow::ensure!(
        (0.15..1.0).contains(&config.vad_threshold),
        "WINNERR_VAD_THRESHOLD must lie in [0.15, 1), not {}",
        config.vad_threshold
    );
    let loaded = match LOADED.get() {
        Some(model) => Ok(model.clone()),
        None => {
            let path = ModelDir::from_env().silero_vad();
            tokio::task::spawn_blocking(move || {
                SileroVad::load(&path, &winnerr_models::Device::Cpu)
            })
            .await
            .context("loading the speech detector")?
            .map(|model| LOADED.get_or_init(|| Arc::new(model)).clone())
        }
    };
    match loaded {
        Ok(model) => {
            info!(
                vad = "silero",
                threshold = config.vad_threshold,
                "speech detector"
            );
            Ok(SpeechDetector::Silero {
                model,
                threshold: config.vad_threshold,
            })
        }
        Err(error) if !config.asr => {
            warn!(%error, "no neural speech detector: speech found by energy");
            Ok(SpeechDetector::Energy)
        }
        Err(error) => Err(anyhow::Error::new(error)
            .context("cannot load the speech detector (WINNERR_VAD=energy runs without it)")),
    }
}

/// The turn detector the settings name: Smart Turn from the model folder (loaded once per
/// process, a detector thread per engine), or none.
async fn turn_detector(config: &Config) -> anyhow::Result<Option<TurnDetector>> {
    static LOADED: std::sync::OnceLock<Arc<SmartTurn>> = std::sync::OnceLock::new();
    if config.turn == "off" {
        info!(
            turn = "off",
            "turn detector: utterances end after the silence only"
        );
        return Ok(None);
    }
    let model = match LOADED.get() {
        Some(model) => model.clone(),
        None => {
            let dir = ModelDir::from_env();
            let loaded = tokio::task::spawn_blocking(move || {
                SmartTurn::load(
                    &dir.smart_turn(),
                    &dir.mel_filters(),
                    &winnerr_models::Device::Cpu,
                )
            })
            .await
            .context("loading the turn model")?
            .context("cannot load the turn model (WINNERR_TURN=off runs without it)")?;
            LOADED.get_or_init(|| Arc::new(loaded)).clone()
        }
    };
    let turn = config.turn_config();
    info!(
        turn = "smart",
        pause_ms = turn.pause_ms,
        threshold = turn.threshold,
        fallback_ms = turn.fallback_ms,
        "turn detector"
    );
    Ok(Some(TurnDetector::start(model, turn)))
}

/// Loads Whisper and the sentiment model from the model folder, once per process (every engine
/// in a process shares them: tests start many).
async fn load_models(whisper_name: &str) -> anyhow::Result<Arc<dyn SpeechModels>> {
    static LOADED: std::sync::Mutex<Vec<(String, Arc<Models>)>> = std::sync::Mutex::new(Vec::new());
    if let Some((_, models)) = LOADED
        .lock()
        .expect("models lock")
        .iter()
        .find(|(n, _)| n == whisper_name)
    {
        return Ok(models.clone());
    }
    let name = whisper_name.to_string();
    let models = tokio::task::spawn_blocking(move || -> anyhow::Result<Models> {
        let dir = ModelDir::from_env();
        let device = winnerr_models::device();
        let started = std::time::Instant::now();
        let whisper = Whisper::load(&dir.whisper(&name), &dir.mel_filters(), &device)?;
        let sentiment = SentimentModel::load(&dir.minilm(), &SentimentModel::head_file(), &device)?;
        info!(whisper = %name, seconds = started.elapsed().as_secs_f64(), "speech models loaded");
        Ok(Models {
            whisper,
            sentiment,
            options: DecodeOptions::default(),
        })
    })
    .await?
    .context("cannot load the speech models (WINNERR_ASR=false runs without them)")?;
    let models = Arc::new(models);
    LOADED
        .lock()
        .expect("models lock")
        .push((whisper_name.to_string(), models.clone()));
    Ok(models)
}

/// Ingest: Twilio's webhooks and streams, and the softphone, handing calls and messages to the
/// voice stage; with a store, the numbers it dials are checked against the organizations'
/// do-not-call lists, and inbound messages are recorded in it (without one, none are taken).
fn start_ingest(
    config: &Config,
    (calls, messages): (
        mpsc::Sender<winnerr_events::CallAudio>,
        mpsc::Sender<winnerr_events::InboundMessage>,
    ),
    store: Option<&Store>,
    bus: &Arc<dyn Bus>,
    shutdown: CancellationToken,
) -> anyhow::Result<Ingest> {
    let dial_check = store.map(|store| {
        Arc::new(crate::dial::StoreDoNotCall {
            store: store.clone(),
            bus: bus.clone(),
        }) as Arc<dyn winnerr_ingest::DialCheck>
    });
    let intake = store.map(|store| winnerr_ingest::MessageIntake {
        messages,
        inbox: Arc::new(crate::inbox::StoreInbox::start(store.clone())),
    });
    let consent = config.consent().map_err(anyhow::Error::msg)?;
    Ok(Ingest::new(
        IngestConfig {
            auth_token: config.twilio_auth_token.expose_secret().clone(),
            verify_signatures: !config.twilio_insecure_skip_signature,
            public_url: config.public_url.clone(),
            tls: config.tls_cert.is_some(),
            max_message_bytes: config.max_message_bytes,
            call_queue: config.call_queue,
            dial: config.twilio_dial.clone(),
            limits: config.call_limits(),
            full_say: config.full_say.clone(),
            consent,
            email_signing_key: config
                .mailgun_signing_key
                .as_ref()
                .map(|key| key.expose_secret().clone()),
        },
        calls,
        intake,
        dial_check,
        shutdown,
    ))
}

/// Migrates (when asked), connects the store, and starts its writer on the bus and its retention
/// purges until `shutdown` (when the node runs the store role).
async fn start_store(
    config: &Config,
    url: &str,
    bus: &dyn Bus,
    shutdown: &CancellationToken,
) -> anyhow::Result<(Store, Option<Worker>)> {
    if let Some(owner_url) = &config.database_migration_url {
        winnerr_store::migrate(owner_url)
            .await
            .context("database migrations failed")?;
    }
    let keys = config.keyring().map_err(anyhow::Error::msg)?;
    let store = Store::connect(url, config.database_max_connections, keys)
        .await
        .context("cannot use DATABASE_URL")?;
    info!(store = %store.location(), "store opened");
    if !config.has_role(NodeRole::Store) {
        return Ok((store, None));
    }
    let writer = start_worker(bus, StoreWriter::group(), StoreWriter::new(store.clone())).await?;
    let retention = config.retention().map_err(anyhow::Error::msg)?;
    if retention.named().next().is_some() || *retention.default_value() != Retention::Keep {
        let every = Duration::from_secs_f64(config.retention_every);
        tokio::spawn(purge_on_schedule(
            store.clone(),
            retention,
            every,
            shutdown.clone(),
        ));
    }
    Ok((store, Some(writer)))
}

/// Purges what each organization's retention lets go, now and every `every`, until `stop`.
async fn purge_on_schedule(
    store: Store,
    policy: winnerr_store::RetentionPolicy,
    every: Duration,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        match store
            .purge_all(&policy, winnerr_events::now_ms(), "retention")
            .await
        {
            Ok(done) => {
                for (org, purged) in done.iter().filter(|(_, p)| *p != Default::default()) {
                    info!(org_id = %org, ?purged, "retention purge");
                }
            }
            Err(err) => warn!(error = %err, "retention purge could not list organizations"),
        }
    }
}

/// A worker running in its consumer group, with its own stop.
type Worker = (JoinHandle<()>, CancellationToken);

/// Joins `group` on `bus` (from here on the group's events are kept for it) and runs `worker`
/// in it until its stop.
async fn start_worker(
    bus: &dyn Bus,
    group: Group,
    worker: impl winnerr_bus::Worker + 'static,
) -> anyhow::Result<Worker> {
    let source = bus
        .join_group(&group)
        .await
        .with_context(|| format!("cannot join consumer group {}", group.name))?;
    let stop = CancellationToken::new();
    let name = group.name.clone();
    let task = tokio::spawn(
        run_group(source, group, worker, stop.clone()).map(move |ran| {
            if let Err(error) = ran {
                warn!(group = %name, %error, "worker stopped");
            }
        }),
    );
    Ok((task, stop))
}

/// The lead scorer in its group, when this node has the scoring role: the CRM's leads from the
/// store where there is one.
async fn start_scoring(
    config: &Config,
    store: Option<&Store>,
    bus: &Arc<dyn Bus>,
) -> anyhow::Result<Option<Worker>> {
    if !(config.scoring && config.has_role(NodeRole::Scoring)) {
        return Ok(None);
    }
    let source: Arc<dyn LeadSource> = match store {
        Some(store) => Arc::new(StoreLeads(store.clone())),
        None => Arc::new(NoCrm),
    };
    let scorer = Scorer::new(source).worker(bus.clone());
    Ok(Some(
        start_worker(bus.as_ref(), Scorer::group(), scorer).await?,
    ))
}

/// The gateway: feeds, presence, the REST API and the operations routes; its feeds close on
/// `feeds`.
async fn start_gateway(
    config: &Config,
    bus: &Arc<dyn Bus>,
    store: Option<Store>,
    audio: Arc<winnerr_events::AudioTap>,
    feeds: CancellationToken,
) -> anyhow::Result<Gateway> {
    Gateway::new(
        &GatewayConfig {
            jwt_secret: config
                .hs256()
                .then(|| config.jwt_secret.expose_secret().clone()),
            jwks: config.jwks().map_err(anyhow::Error::msg)?,
            feed_buffer: config.feed_buffer,
            feed_history: config.feed_history,
            feed_send_queue: config.feed_send_queue,
            feed_max_subscriptions: config.feed_max_subscriptions,
            feed_heartbeat: config.feed_heartbeat(),
            audio: Some(audio),
        },
        bus.clone(),
        store,
        feeds,
        config.has_role(NodeRole::Gateway),
    )
    .await
    .context("gateway cannot subscribe to the bus")
}

/// The routes of this node's roles: the gateway's (or only its operations routes), and ingest's
/// with the softphone, whose callers the gateway's tokens and lead rules admit.
fn routes(config: &Config, gateway: &Gateway, ingest: &Ingest) -> axum::Router {
    let mut router = if config.has_role(NodeRole::Gateway) {
        gateway.router()
    } else {
        gateway.ops_router()
    };
    if config.has_role(NodeRole::Voice) {
        let checker = gateway.clone();
        let verify: winnerr_ingest::Verifier = Arc::new(move |headers, token, lead, track| {
            let gateway = checker.clone();
            Box::pin(async move {
                let claims = gateway
                    .softphone_caller(&headers, token.as_deref(), lead.as_ref(), track)
                    .await?;
                Ok(winnerr_ingest::Caller {
                    org: claims.org,
                    user: claims.sub,
                    expires_at_s: claims.exp,
                })
            })
        });
        router = router
            .merge(ingest.router())
            .merge(ingest.softphone_router(verify));
    }
    router
}

/// The TLS certificate and key, when both are configured.
async fn tls(config: &Config) -> anyhow::Result<Option<axum_server::tls_rustls::RustlsConfig>> {
    let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) else {
        return Ok(None);
    };
    let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
        .await
        .with_context(|| {
            format!(
                "TLS certificate {} or key {}",
                cert.display(),
                key.display()
            )
        })?;
    Ok(Some(tls))
}

/// Serves `router` on `listener` (over TLS with `tls`) until `shutdown`, under the connection
/// caps and header timeouts of `config`: a slow or idle client cannot hold a socket for long,
/// nor many sockets at once.
fn serve(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    tls: Option<axum_server::tls_rustls::RustlsConfig>,
    config: &Config,
    shutdown: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<std::io::Result<()>>> {
    use winnerr_gateway::connections::{CappedAcceptor, ConnectionLimits};
    // Descriptors kept for everything but client sockets: files, models, the database pool,
    // the broker, logs.
    const RESERVED_DESCRIPTORS: u64 = 128;
    let limits = ConnectionLimits {
        total: config.max_connections,
        per_address: config.max_connections_per_address,
    }
    .within_descriptors(descriptor_limit(), RESERVED_DESCRIPTORS);
    let handle = axum_server::Handle::new();
    let stopping = handle.clone();
    tokio::spawn(async move {
        shutdown.cancelled().await;
        stopping.graceful_shutdown(None);
    });
    let timeout = config.http_header_timeout();
    let mut server = axum_server::from_tcp(listener.into_std()?)?
        .handle(handle)
        .first_request_timeout(timeout);
    server.http_builder().http1().header_read_timeout(timeout);
    let capped = CappedAcceptor::new(limits, tls.is_none());
    let service = router.into_make_service();
    Ok(match tls {
        None => tokio::spawn(server.acceptor(capped).serve(service)),
        Some(tls) => {
            let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(tls)
                .handshake_timeout(timeout)
                .acceptor(capped);
            tokio::spawn(server.acceptor(acceptor).serve(service))
        }
    })
}

/// The process's soft limit on open descriptors, where the platform says.
fn descriptor_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        rustix::process::getrlimit(rustix::process::Resource::Nofile).current
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// Says at start what in the settings an operator must not overlook.
fn warn_of_risks(config: &Config, addr: SocketAddr) {
    if config.twilio_insecure_skip_signature {
        warn!("X-Twilio-Signature checks are OFF: anyone can stream into this server");
    }
    if config.uses_dev_secrets() {
        warn!(
            "using the built-in development secrets; set WINNERR_JWT_SECRET and TWILIO_AUTH_TOKEN in production"
        );
    }
    if !addr.ip().is_loopback() && config.public_url.is_none() {
        warn!(
            %addr,
            "listening beyond loopback without WINNERR_PUBLIC_URL: Twilio signatures are checked against the Host header's URL; set the URL Twilio is configured with"
        );
    }
}

/// Waits (up to the drain deadline) for the broker to acknowledge what was published, if on Kafka.
async fn flush(kafka: Option<&KafkaBus>, what: &'static str) {
    let Some(kafka) = kafka.cloned() else {
        return;
    };
    let flushed = tokio::task::spawn_blocking(move || kafka.flush(DRAIN_DEADLINE)).await;
    if let Ok(Err(err)) = flushed {
        warn!(error = %err, "{what} left unacknowledged at shutdown");
    }
}

/// Makes Candle split its kernels for `layout.threads` threads, each speech worker's own, by
/// setting `RAYON_NUM_THREADS` (which Candle reads) unless it is set already. Call before any
/// other thread exists (the binary's `main` does); an engine started otherwise warns at start
/// when the two differ.
pub fn match_kernel_threads(layout: &AsrConfig) {
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        // SAFETY: called at the start of `main`, before any other thread exists to read the
        // environment concurrently.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", layout.threads.to_string()) };
    }
}

/// The threads Candle splits its kernels for: `RAYON_NUM_THREADS`, else every core.
fn kernel_threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from))
}
