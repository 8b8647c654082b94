# The two commands a newcomer needs: `make run` and `make test` (see README.md).
CARGO ?= cargo

.PHONY: run test bench build

## Build and serve on embedded defaults, with a demo call playing in a loop.
run:
	$(CARGO) run -- serve --demo

## Install and start what the tests need, then run every test (CI runs this).
test:
	deploy/test-prerequisites.sh
	$(CARGO) test --workspace --all-targets

## Run the benchmarks and print their figures (record them in benches/RESULTS.md).
bench:
	$(CARGO) bench -p winnerr-benches

build:
	$(CARGO) build --workspace --all-targets
