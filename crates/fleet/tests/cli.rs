//! `fleet`'s flags and config file as an operator meets them: a bad one exits 2 naming it, and
//! nothing starts.
#![cfg(not(madsim))]

use std::process::Command;

const FLEET: &str = env!("CARGO_BIN_EXE_fleet");

/// The exit code and stderr of `fleet args`.
fn fleet(args: &[&str]) -> (Option<i32>, String) {
    let output = Command::new(FLEET).args(args).output().unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn master(extra: &[&str]) -> Vec<String> {
    let data = std::env::temp_dir().join(format!("fleet-cli-{}", std::process::id()));
    let mut args: Vec<String> = [
        "master",
        "--name",
        "master-1",
        "--listen",
        "127.0.0.1:0",
        "--admin",
        "127.0.0.1:0",
        "--data",
    ]
    .map(String::from)
    .to_vec();
    args.push(data.display().to_string());
    args.extend(extra.iter().map(|arg| arg.to_string()));
    args
}

#[test]
fn a_bad_flag_exits_2_and_names_it() {
    for (args, says) in [
        (vec!["agent", "--name", "a"], "--master"),
        (
            vec!["agent", "--name", "a", "--master", "127.0.0.1:7000"],
            "NAME=ADDR",
        ),
        (
            vec!["agent", "--name", "a", "--master", "m=localhost"],
            "not an address",
        ),
        (
            vec!["master", "--name", "m", "--listen", "127.0.0.1:7000"],
            "--admin",
        ),
        (
            vec![
                "agent",
                "--name",
                "a",
                "--master",
                "m=127.0.0.1:1",
                "--log-format",
                "xml",
            ],
            "--log-format",
        ),
        (
            vec![
                "agent",
                "--name",
                "a",
                "--master",
                "m=127.0.0.1:1",
                "--transport",
                "smoke-signals",
            ],
            "possible values: tcp, http, grpc, mqtt",
        ),
        (
            vec![
                "agent",
                "--name",
                "a",
                "--master",
                "m",
                "--transport",
                "mqtt",
            ],
            "--transport mqtt needs --broker",
        ),
        (
            vec![
                "agent",
                "--name",
                "a",
                "--master",
                "m=127.0.0.1:1",
                "--transport",
                "mqtt",
                "--broker",
                "127.0.0.1:1883",
            ],
            "give its name alone",
        ),
        (
            vec![
                "agent",
                "--name",
                "a",
                "--master",
                "m",
                "--broker",
                "127.0.0.1:1883",
            ],
            "--broker is for --transport mqtt",
        ),
        (
            vec!["agent", "--name", "a", "--master", "m"],
            "give its address, NAME=ADDR",
        ),
    ] {
        let (code, stderr) = fleet(&args);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}

#[test]
fn a_bad_config_file_exits_2_with_its_line_and_column() {
    let dir = std::env::temp_dir().join(format!("fleet-cli-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("fleet.toml");
    std::fs::write(
        &file,
        "[params.heartbeat]\ninterval = \"1s\"\nmax_mis = 3\n",
    )
    .unwrap();
    let config = file.display().to_string();
    let (code, stderr) = fleet(&[
        "agent",
        "--name",
        "a",
        "--master",
        "m=127.0.0.1:1",
        "--config",
        &config,
    ]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains(&format!("{config}:3:1")), "{stderr}");
    assert!(stderr.contains("unknown field `max_mis`"), "{stderr}");
    // Raft needs peers' addresses to listen for; a mode the file contradicts is refused.
    std::fs::write(&file, "[cluster]\nmode = \"raft\"\n").unwrap();
    let args = master(&["--peer", "master-2=127.0.0.1:7001", "--config", &config]);
    let (code, stderr) = fleet(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--cluster-listen"), "{stderr}");
    let args = master(&["--mode", "lease", "--config", &config]);
    let (code, stderr) = fleet(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("--mode lease: the config file's [cluster] is mode \"raft\""),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
