# The two commands a newcomer needs: `make run` and `make test` (see README.md).
CARGO ?= cargo

.PHONY: run test bench build kafka kafka-stop fuzz-api models

## Build and serve on embedded defaults, with a demo call playing in a loop.
run: models
	$(CARGO) run -- serve --demo

## Download, verify and convert the model weights (Whisper tiny.en, MiniLM, mel filters) into
## ~/.cache/winnerr/models; idempotent. `cargo run -- models fetch --base` adds Whisper base.
models:
	$(CARGO) run --quiet -- models fetch

## Install and start what the tests need, then run every test (CI runs this).
test:
	CARGO=$(CARGO) deploy/run-tests.sh

## Fuzz the REST API from its OpenAPI document (schemathesis), on Postgres and on SQLite: no 5xx,
## responses as documented.
fuzz-api:
	deploy/fuzz-api.sh 100 postgres
	deploy/fuzz-api.sh 100 sqlite

## Run the benchmarks and print their figures (record them in benches/RESULTS.md).
bench: models
	cd benches/socketio && npm ci --no-audit --no-fund --loglevel=error
	WINNERR_KAFKA_BROKER_BIN="$$(deploy/kafka.sh install)" \
	WINNERR_FASTER_WHISPER_PYTHON="$$(deploy/faster-whisper.sh install)" \
	$(CARGO) bench -p winnerr-benches

## A Kafka-protocol broker on 127.0.0.1:9092 for `KAFKA_BROKERS=127.0.0.1:9092 make run`.
kafka:
	deploy/kafka.sh start 9092 .run/kafka

kafka-stop:
	deploy/kafka.sh stop .run/kafka

build:
	$(CARGO) build --workspace --all-targets
