//! What an SRE relies on: the real Prometheus server scrapes the key series and sees them move
//! while a call plays; the alert rules and the exported metrics pass promtool; the dashboard asks
//! only for metrics the engine defines.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use winnerr_events::Role;
use winnerr_ingest::{CallScript, Pace};

use crate::helpers::*;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// A Prometheus tool `make test` installs (Debian's `prometheus` package).
fn tool(name: &str) -> PathBuf {
    let path = Path::new("/usr/bin").join(name);
    assert!(
        path.exists(),
        "{name} not found: `make test` installs Debian's prometheus package (deploy/prometheus.sh)"
    );
    path
}

#[test]
fn the_alert_rules_pass_promtool() {
    let output = Command::new(tool("promtool"))
        .args(["check", "rules"])
        .arg(repo("deploy/prometheus/alerts.yml"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Names of the metric families in a `/metrics` page.
fn families(page: &str) -> BTreeSet<String> {
    page.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// Every metric name the engine's code defines (`winnerr_…` in its metrics modules).
fn defined_metrics() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let modules: Vec<_> = std::fs::read_dir(repo("."))
        .unwrap()
        .map(|entry| entry.unwrap().path().join("src/metrics.rs"))
        .filter(|module| module.exists())
        .collect();
    assert!(
        modules.len() >= 7,
        "every crate's metrics module: {modules:?}"
    );
    for module in modules {
        let source = std::fs::read_to_string(module).unwrap();
        for piece in source.split('"').filter(|p| p.starts_with("winnerr_")) {
            names.insert(piece.to_owned());
        }
    }
    names
}

/// The metric names a PromQL expression reads.
fn metrics_in(expr: &str) -> Vec<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|token| token.starts_with("winnerr_") || token.starts_with("process_"))
        .map(|token| {
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| token.strip_suffix(suffix))
                .unwrap_or(token);
            family.to_owned()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exported_metrics_pass_promtool_and_the_dashboard_asks_only_for_them() {
    // With speech recognition and scoring on, so their series are on the page too.
    let test = spawn_app_with(|c| {
        c.asr = true;
        c.scoring = true;
    })
    .await;
    let mut feed = test.feed("acme", "manager-1", Role::Manager).await;
    let script = CallScript::new(identity("acme", None, Some("lead-1")), caller_speech());
    test.simulator().play(&script, |_| {}).await.unwrap();
    // Its transcript reached the feed (finals come before the call's end).
    feed.call_events(&call_id(&script.call_sid)).await;
    let page = test.metrics().await;

    let mut check = Command::new(tool("promtool"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(check.stdin.as_mut().unwrap(), page.as_bytes()).unwrap();
    let output = check.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool check metrics:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );

    let exported = families(&page);
    for name in [
        "winnerr_ingest_frames_total",
        "winnerr_ingest_streams_live",
        "winnerr_voice_events_emitted_total",
        "winnerr_gateway_feed_delivery_seconds",
        "winnerr_gateway_speech_delivery_seconds",
        "winnerr_voice_asr_real_time_factor",
        "winnerr_voice_asr_queue_depth",
        "winnerr_scoring_score_seconds",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
    ] {
        assert!(exported.contains(name), "{name} is exported");
    }
    let defined = defined_metrics();
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(repo("deploy/grafana/winnerr.json")).unwrap(),
    )
    .unwrap();
    let mut queries = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            queries += 1;
            for metric in metrics_in(expr) {
                let known = defined.contains(&metric) || exported.contains(&metric);
                assert!(
                    known,
                    "panel {:?} asks for {metric}, which the engine does not export",
                    panel["title"]
                );
            }
        }
    }
    assert!(queries >= 20, "{queries} queries");
    let rules = std::fs::read_to_string(repo("deploy/prometheus/alerts.yml")).unwrap();
    for metric in rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("expr:"))
        .flat_map(metrics_in)
    {
        assert!(
            defined.contains(&metric),
            "an alert asks for {metric}, which the engine does not export"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_key_series_and_sees_them_move_during_a_call() {
    let test = spawn_app().await;
    let dir = std::env::temp_dir().join(format!("winnerr-prometheus-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n  - job_name: winnerr\n    static_configs:\n      - targets: [\"{}\"]\n",
        repo("deploy/prometheus/alerts.yml").display(),
        test.app.addr
    );
    std::fs::write(dir.join("prometheus.yml"), config).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut prometheus = Command::new(tool("prometheus"))
        .arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let api = format!("http://127.0.0.1:{port}/api/v1");
    let query = |promql: String| {
        let api = api.clone();
        async move {
            let response = reqwest::Client::new()
                .get(format!("{api}/query"))
                .query(&[("query", promql)])
                .send()
                .await
                .ok()?;
            let body: Value = response.json().await.ok()?;
            body["data"]["result"][0]["value"][1]
                .as_str()?
                .parse::<f64>()
                .ok()
        }
    };
    let until = |promql: &'static str, pass: fn(f64) -> bool| async move {
        let waited = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                if let Some(value) = query(promql.to_string()).await.filter(|v| pass(*v)) {
                    return value;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        });
        waited
            .await
            .unwrap_or_else(|_| panic!("Prometheus never saw {promql} as expected"))
    };
    assert_eq!(until("up{job=\"winnerr\"}", |v| v == 1.0).await, 1.0);
    assert!(until("sum(process_resident_memory_bytes)", |v| v > 0.0).await > 1e6);

    // While a call plays, the series Prometheus holds move.
    let mut script = CallScript::new(identity("acme", None, None), caller_speech());
    script.outbound = Some(agent_speech());
    script.pace = Pace::RealTime;
    let call = test.play_in_background(&script);
    // Metrics are process-wide and other tests stream too: at least this call is live.
    until("sum(winnerr_ingest_streams_live)", |v| v >= 1.0).await;
    let early = until("sum(winnerr_ingest_frames_total)", |v| v > 0.0).await;
    call.await.unwrap();
    // Counters are process-wide (other tests record too): what matters is that they move.
    let moved = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match query("sum(winnerr_ingest_frames_total)".into()).await {
                Some(late) if late > early => return late,
                _ => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
    });
    moved
        .await
        .expect("frames seen by Prometheus grow while the call plays");
    until(
        "sum(winnerr_ingest_streams_ended_total{reason=\"completed\"})",
        |v| v >= 1.0,
    )
    .await;
    until(
        "sum(winnerr_voice_events_emitted_total{type=\"call_ended\"})",
        |v| v >= 1.0,
    )
    .await;

    // The alert rules are loaded and evaluate.
    let rules: Value = reqwest::get(format!("{api}/rules"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let loaded: Vec<&str> = rules["data"]["groups"][0]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert!(
        loaded.contains(&"WinnerrDown") && loaded.contains(&"WinnerrVoiceFallingBehind"),
        "{loaded:?}"
    );

    let _ = prometheus.kill();
    let _ = prometheus.wait();
    let _ = std::fs::remove_dir_all(dir);
}
