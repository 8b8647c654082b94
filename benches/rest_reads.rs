//! REST read latency at a realistic table size: a page of one call's utterances (decrypted, and
//! the read audited) and a page of the call list, over HTTP from the running engine, against a
//! database holding a million utterances: Postgres, then the embedded SQLite default. The same
//! page read with plain SQL on the same database is the baseline in the same run.
//!
//! Target: p99 under 20 ms for a page of a call's utterances (on Postgres).

use std::time::{Duration, Instant};

use sqlx::Connection;
use winnerr::{App, Config};
use winnerr_benches::{is_bench_run, machine, percentile, runtime};
use winnerr_events::{OrgId, Role, UserId};
use winnerr_store::Keyring;
use winnerr_store::crypto::FieldPlace;
use winnerr_testkit::{TestDatabase, TestSqlite};

const ORG: &str = "bench-org";
const TEXT: &str =
    "Yes, we are pre-approved and would love to see the house on Elm Street this weekend.";

/// An utterance's text sealed as the engine seals it.
fn sealed(keys: &Keyring, call: &str, id: &str) -> Vec<u8> {
    let row = format!("{call}/{id}");
    let place = FieldPlace {
        org: ORG,
        table: "utterances",
        column: "text",
        row: &row,
    };
    keys.encrypt(TEXT, place).bytes
}

fn utterance_id(index: usize) -> String {
    format!("u{index:04}")
}

fn track(index: usize) -> &'static str {
    if index % 2 == 0 {
        "inbound"
    } else {
        "outbound"
    }
}

/// Writes `calls` calls of `per_call` utterances each into Postgres (ciphertext as the engine
/// writes it).
async fn seed_postgres(db: &TestDatabase, calls: usize, per_call: usize) {
    let keys = Keyring::development();
    let mut owner = sqlx::PgConnection::connect(&db.owner_url).await.unwrap();
    sqlx::query("INSERT INTO organizations (id) VALUES ($1)")
        .bind(ORG)
        .execute(&mut owner)
        .await
        .unwrap();
    let call_ids: Vec<String> = (0..calls).map(|i| format!("CA{i:032}")).collect();
    sqlx::query(
        "INSERT INTO calls (organization_id, id, agent_id, status, started_at, started_ms, ended_at, duration_ms) \
         SELECT $1, id, 'agent-1', 'completed', now() - (n || ' minutes')::interval, \
                (extract(epoch FROM now() - (n || ' minutes')::interval) * 1000)::bigint, now(), 300000 \
         FROM unnest($2::text[]) WITH ORDINALITY AS u(id, n)",
    )
    .bind(ORG)
    .bind(&call_ids)
    .execute(&mut owner)
    .await
    .unwrap();
    for chunk in call_ids.chunks((20_000 / per_call).max(1)) {
        let (mut calls, mut ids, mut tracks, mut starts, mut ends, mut ciphertexts) = (
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
        );
        for call in chunk {
            for index in 0..per_call {
                let id = utterance_id(index);
                ciphertexts.push(sealed(&keys, call, &id));
                calls.push(call.clone());
                ids.push(id);
                tracks.push(track(index));
                starts.push(index as i64 * 3000);
                ends.push(index as i64 * 3000 + 2500);
            }
        }
        sqlx::query(
            "INSERT INTO utterances (organization_id, call_id, id, track, start_ms, end_ms, text_ciphertext, text_key_id, sentiment) \
             SELECT $1, c, i, t, s, e, x, 'dev1', 'positive' \
             FROM unnest($2::text[], $3::text[], $4::text[], $5::int8[], $6::int8[], $7::bytea[]) AS u(c, i, t, s, e, x)",
        )
        .bind(ORG)
        .bind(&calls)
        .bind(&ids)
        .bind(&tracks)
        .bind(&starts)
        .bind(&ends)
        .bind(&ciphertexts)
        .execute(&mut owner)
        .await
        .unwrap();
    }
    sqlx::query("ANALYZE").execute(&mut owner).await.unwrap();
}

/// The same rows into a SQLite file (migrated by opening the store), in one transaction.
async fn seed_sqlite(file: &TestSqlite, calls: usize, per_call: usize) {
    let keys = Keyring::development();
    drop(
        winnerr_store::Store::connect(&file.url, 1, keys.clone())
            .await
            .unwrap(),
    );
    let mut conn = sqlx::SqliteConnection::connect(&file.url).await.unwrap();
    let mut tx = conn.begin().await.unwrap();
    sqlx::query("INSERT INTO organizations (id) VALUES ($1)")
        .bind(ORG)
        .execute(&mut *tx)
        .await
        .unwrap();
    let now = winnerr_events::now_ms() as i64;
    for n in 0..calls {
        let call = format!("CA{n:032}");
        let started = now - (n as i64 + 1) * 60_000;
        sqlx::query(
            "INSERT INTO calls (organization_id, id, agent_id, status, started_at, started_ms, ended_at, duration_ms) \
             VALUES ($1, $2, 'agent-1', 'completed', $3, $3, $4, 300000)",
        )
        .bind(ORG)
        .bind(&call)
        .bind(started)
        .bind(now)
        .execute(&mut *tx)
        .await
        .unwrap();
        for index in 0..per_call {
            let id = utterance_id(index);
            sqlx::query(
                "INSERT INTO utterances (organization_id, call_id, id, track, start_ms, end_ms, text_ciphertext, text_key_id, sentiment) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 'dev1', 'positive')",
            )
            .bind(ORG)
            .bind(&call)
            .bind(&id)
            .bind(track(index))
            .bind(index as i64 * 3000)
            .bind(index as i64 * 3000 + 2500)
            .bind(sealed(&keys, &call, &id))
            .execute(&mut *tx)
            .await
            .unwrap();
        }
    }
    tx.commit().await.unwrap();
    sqlx::query("ANALYZE").execute(&mut conn).await.unwrap();
}

/// The baseline's connection: the service role's (Postgres, organization set) or the file's.
enum Reader {
    Postgres(winnerr_store::Store),
    Sqlite(sqlx::SqliteConnection),
}

impl Reader {
    /// One page of `call`'s utterances in plain SQL; returns its length.
    async fn page(&mut self, org: &OrgId, call: String) -> usize {
        const PAGE: &str = "SELECT id, text_ciphertext FROM utterances \
            WHERE organization_id = $1 AND call_id = $2 ORDER BY start_ms, id";
        let rows: Vec<(String, Vec<u8>)> = match self {
            Reader::Postgres(store) => {
                let mut tx = store.begin_for(org).await.unwrap();
                let rows = sqlx::query_as(PAGE)
                    .bind(org.as_str())
                    .bind(call)
                    .fetch_all(&mut *tx)
                    .await
                    .unwrap();
                tx.commit().await.unwrap();
                rows
            }
            Reader::Sqlite(conn) => sqlx::query_as(PAGE)
                .bind(org.as_str())
                .bind(call)
                .fetch_all(&mut *conn)
                .await
                .unwrap(),
        };
        rows.len()
    }
}

/// A fresh database of either kind.
enum Db {
    Postgres(TestDatabase),
    Sqlite(TestSqlite),
}

impl Db {
    fn name(&self) -> &'static str {
        match self {
            Db::Postgres(_) => "Postgres on loopback",
            Db::Sqlite(_) => "SQLite file (the embedded default)",
        }
    }

    fn url(&self) -> String {
        match self {
            Db::Postgres(db) => db.service_url.clone(),
            Db::Sqlite(file) => file.url.clone(),
        }
    }

    async fn seed(&self, calls: usize, per_call: usize) {
        match self {
            Db::Postgres(db) => {
                winnerr_store::migrate(&db.owner_url).await.unwrap();
                seed_postgres(db, calls, per_call).await;
            }
            Db::Sqlite(file) => seed_sqlite(file, calls, per_call).await,
        }
    }

    /// A plain SQL connection as the engine's own role, for the baseline.
    async fn reader(&self) -> Reader {
        match self {
            Db::Postgres(db) => Reader::Postgres(
                winnerr_store::Store::connect(&db.service_url, 1, Keyring::development())
                    .await
                    .unwrap(),
            ),
            Db::Sqlite(file) => {
                Reader::Sqlite(sqlx::SqliteConnection::connect(&file.url).await.unwrap())
            }
        }
    }

    async fn remove(self) {
        match self {
            Db::Postgres(db) => db.drop_database().await,
            Db::Sqlite(file) => file.remove(),
        }
    }
}

fn percentiles(mut samples: Vec<f64>) -> (f64, f64) {
    samples.sort_by(f64::total_cmp);
    (percentile(&samples, 0.5), percentile(&samples, 0.99))
}

async fn time_requests(client: &reqwest::Client, token: &str, urls: &[String]) -> Vec<f64> {
    let mut samples = Vec::with_capacity(urls.len());
    for url in urls {
        let started = Instant::now();
        let response = client.get(url).bearer_auth(token).send().await.unwrap();
        assert!(
            response.status().is_success(),
            "{url}: {}",
            response.status()
        );
        response.bytes().await.unwrap();
        samples.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    samples
}

fn main() {
    let bench = is_bench_run();
    let runtime = runtime();
    runtime.block_on(async {
        let postgres = match TestDatabase::try_create().await {
            Ok(db) => db,
            Err(err) if !bench => {
                println!("rest_reads: skipped ({err})");
                return;
            }
            Err(err) => panic!("{err}"),
        };
        println!("rest_reads: {}", machine());
        for db in [Db::Postgres(postgres), Db::Sqlite(TestSqlite::new())] {
            measure(db, bench).await;
        }
        if !bench {
            println!("  (smoke run under `cargo test`; figures are not measurements)");
        }
    });
}

async fn measure(db: Db, bench: bool) {
    let (calls, per_call, requests) = if bench {
        (10_000, 100, 2_000)
    } else {
        (20, 10, 20)
    };
    let seeding = Instant::now();
    db.seed(calls, per_call).await;
    let seeded = seeding.elapsed();

    let mut config = Config::local("127.0.0.1:0".parse().unwrap());
    config.database_url = Some(db.url());
    let app = App::start(&config).await.unwrap();
    let org: OrgId = ORG.parse().unwrap();
    let token = app.gateway.auth().issue(
        &UserId::parse("manager-1").unwrap(),
        &org,
        Role::Manager,
        Duration::from_secs(3600),
    );
    let client = reqwest::Client::new();
    let base = app.http_url();
    let pick = |i: usize| format!("CA{:032}", (i * 7919) % calls);
    let transcript_urls: Vec<String> = (0..requests)
        .map(|i| format!("{base}/api/calls/{}/utterances", pick(i)))
        .collect();
    let list_urls: Vec<String> = (0..requests)
        .map(|_| format!("{base}/api/calls?limit=50"))
        .collect();

    // Warm up connections and caches, then measure.
    time_requests(&client, &token, &transcript_urls[..requests.min(50)]).await;
    let transcript = percentiles(time_requests(&client, &token, &transcript_urls).await);
    let list = percentiles(time_requests(&client, &token, &list_urls).await);
    app.shutdown().await;

    // Baseline: the same page with plain SQL, no HTTP, no decryption, no audit.
    let mut reader = db.reader().await;
    let mut sql = Vec::with_capacity(requests);
    for i in 0..requests {
        let started = Instant::now();
        assert_eq!(reader.page(&org, pick(i)).await, per_call);
        sql.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    let sql = percentiles(sql);
    drop(reader);

    println!("  {}:", db.name());
    println!(
        "    {} utterances in {calls} calls (seeded in {:.1} s); {requests} sequential requests each",
        calls * per_call,
        seeded.as_secs_f64()
    );
    println!(
        "    GET /api/calls/{{id}}/utterances ({per_call} items, decrypted, audited): p50 {:>6.2} ms   p99 {:>6.2} ms   (target p99 < 20 ms)",
        transcript.0, transcript.1
    );
    println!(
        "    GET /api/calls?limit=50:                                   p50 {:>6.2} ms   p99 {:>6.2} ms",
        list.0, list.1
    );
    println!(
        "    baseline, the same page in plain SQL:                      p50 {:>6.2} ms   p99 {:>6.2} ms",
        sql.0, sql.1
    );
    println!("    API / SQL at p99: {:.2}x", transcript.1 / sql.1);
    db.remove().await;
}
