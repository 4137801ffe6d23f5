# Recipes mirroring the README. `just --list` shows them.

scenario := "scenarios/master-restart.toml"

# Run one scenario (release build, inside the simulator).
run file=scenario *args="":
    cargo run --release -p sim -- run {{file}} {{args}}

# The test suite: cores, harness, every scenario against its snapshot.
test:
    cargo test --release

# Run every scenario twice and compare the timelines.
check:
    cargo run --release -p sim -- check scenarios/*.toml

# Build and test the real-network (non-simulated) build.
native:
    cargo native build --workspace --all-targets
    cargo native test -p fleet-node

# Every scenario on turmoil (the native build), its verdicts compared with madsim's; then
# the turmoil-only scenarios against their snapshots.
engines:
    cargo native test --release -p sim --test engines -- --nocapture

# Run one scenario on turmoil, the second engine (native build).
turmoil file=scenario *args="":
    cargo native run --release -p sim -- run {{file}} {{args}}

# Accept changed snapshots, then show what changed: review the diff before committing.
snapshots-accept:
    INSTA_UPDATE=always cargo test --release -p sim --test scenarios
    git diff --stat snapshots/

# The harness's cost over bare madsim: interleaved pairs on one core (raw example, then
# fleet-1h), each pair's wall-time ratio, and the median ratio.
bench pairs="7":
    #!/usr/bin/env bash
    set -euo pipefail
    cargo build -q --release -p sim --bins --examples
    wall() { sed -nE 's/^run 1: wall ([0-9.]+)s.*/\1/p'; }
    ratios=()
    for i in $(seq {{pairs}}); do
        raw=$(taskset -c 0 target/sim/release/examples/raw_heartbeats 1 | wall)
        sim=$(taskset -c 0 target/sim/release/sim bench scenarios/fleet-1h.toml --runs 1 | wall)
        ratio=$(python3 -c "print(f'{$sim / $raw:.3f}')")
        echo "pair $i: raw ${raw}s  fleet-1h ${sim}s  ratio $ratio"
        ratios+=("$ratio")
    done
    printf '%s\n' "${ratios[@]}" | sort -n | awk '{r[NR]=$1} END {print "median ratio " r[int((NR+1)/2)] " over " NR " pairs"}'
    taskset -c 0 target/sim/release/sim bench scenarios/fleet-3m-1h.toml --runs 5 | tail -1

# Exploration's throughput: each template, 2,000 runs on every core (`--jobs` defaults to them),
# its runs per second on the last line.
bench-explore runs="2000":
    #!/usr/bin/env bash
    set -euo pipefail
    cargo build -q --release -p sim
    for template in scenarios/explore/*.toml; do
        echo "$template: $(target/sim/release/sim explore "$template" --runs {{runs}} --out target/bench-explore | tail -1)"
    done

# The scale reference: 3 raft masters, 10,000 agents, two simulated minutes, a leader crash;
# each run's wall time and speed-up over real time, on one core. First its ceiling: bare
# madsim moving a heartbeat and its echo per agent per second for 10,000 agents.
bench-10k runs="3":
    cargo build -q --release -p sim --bins --examples
    taskset -c 0 target/sim/release/examples/raw_heartbeats {{runs}} 10000 120 | tail -1
    taskset -c 0 target/sim/release/sim bench scenarios/bench/fleet-10k.toml --runs {{runs}}

# CI's wall time: `.ci/run` on a clean clone of the committed tree (two builds' worth of disk).
bench-ci:
    rm -rf target/ci-clone
    git clone -q . target/ci-clone
    cd target/ci-clone && time bash .ci/run

# Everything CI runs.
ci:
    bash .ci/run

# The three reference scenarios on both engines, interleaved on one core: each run's wall time
# and speed-up over real time (the README's side-by-side table takes the medians).
bench-engines runs="5":
    #!/usr/bin/env bash
    set -euo pipefail
    cargo build -q --release -p sim
    cargo native build -q --release -p sim
    speed() { sed -nE 's/^wall ([0-9.]+s) · speed-up ([0-9]+×).*/\1 \2/p'; }
    for f in steady-state master-restart raft-leader-crash; do
        for i in $(seq {{runs}}); do
            madsim=$(taskset -c 0 target/sim/release/sim run scenarios/$f.toml --verdicts-only | speed)
            turmoil=$(taskset -c 0 target/native/release/sim run scenarios/$f.toml --verdicts-only | speed)
            echo "$f run $i: madsim $madsim  turmoil $turmoil"
        done
    done
