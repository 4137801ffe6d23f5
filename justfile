# Recipes mirroring the README. `just --list` shows them.

scenario := "scenarios/master-restart.toml"

# Run one scenario (release build, inside the simulator).
run file=scenario *args="":
    cargo run --release -p sim -- run {{file}} {{args}}

# The test suite: cores, harness, every scenario against its snapshot.
test:
    cargo test

# Run every scenario twice and compare the timelines.
check:
    cargo run --release -p sim -- check scenarios/*.toml

# Build and test the real-network (non-simulated) build.
native:
    cargo native build --workspace --all-targets
    cargo native test -p fleet-node

# Accept changed snapshots, then show what changed: review the diff before committing.
snapshots-accept:
    INSTA_UPDATE=always cargo test -p sim --test scenarios
    git diff --stat snapshots/

# Median speed of the reference scenario and of bare madsim, on one core.
bench:
    cargo build --release -p sim --bins --examples
    taskset -c 0 target/sim/release/examples/raw_heartbeats 5
    taskset -c 0 target/sim/release/sim bench scenarios/fleet-1h.toml --runs 5
    taskset -c 0 target/sim/release/sim bench scenarios/fleet-3m-1h.toml --runs 5

# Everything CI runs.
ci:
    bash .ci/run
