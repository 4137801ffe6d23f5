//! `fleet agent --exec NAME=PROGRAM`: a command named NAME runs PROGRAM with the command's args
//! as a JSON object on stdin; what it prints on stdout is the result (`ok` when it exits 0,
//! `error` otherwise, with its stderr then). Only the names the operator listed run anything.

use fleet_core::command::{Command, Handler as BuiltIn, Outcome};
use fleet_node::Handler;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::Stdio;
use tokio_rt::io::AsyncWriteExt;

/// The most of a program's output a result carries: results travel in one frame.
pub const MAX_OUTPUT: usize = 32 * 1024;

pub struct Exec {
    pub program: PathBuf,
}

impl Handler for Exec {
    fn run(&self, command: Command) -> Pin<Box<dyn Future<Output = (Outcome, String)> + Send>> {
        let program = self.program.clone();
        Box::pin(async move {
            match run(&program, &command).await {
                Ok(answer) => answer,
                Err(error) => (
                    Outcome::Error,
                    format!("cannot run {}: {error}", program.display()),
                ),
            }
        })
    }
}

async fn run(program: &PathBuf, command: &Command) -> std::io::Result<(Outcome, String)> {
    let mut child = tokio_rt::process::Command::new(program)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Past the command's timeout the agent drops this future: the program goes with it.
        .kill_on_drop(true)
        .spawn()?;
    let args = serde_json::to_vec(&command.args).map_err(std::io::Error::other)?;
    if let Some(mut stdin) = child.stdin.take() {
        // A program that does not read its input is free not to.
        let _ = stdin.write_all(&args).await;
    }
    let output = child.wait_with_output().await?;
    let (outcome, text) = if output.status.success() {
        (Outcome::Ok, output.stdout)
    } else {
        let mut text = format!("{}: ", output.status).into_bytes();
        text.extend(if output.stderr.is_empty() {
            output.stdout
        } else {
            output.stderr
        });
        (Outcome::Error, text)
    };
    let mut text = String::from_utf8_lossy(&text).trim_end().to_string();
    if text.len() > MAX_OUTPUT {
        let mut cut = MAX_OUTPUT;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str(" [output cut]");
    }
    Ok((outcome, text))
}

/// `NAME=PROGRAM`, for `--exec`: a name no built-in handler has.
pub fn parse(text: &str) -> Result<(String, PathBuf), String> {
    let (name, program) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not NAME=PROGRAM"))?;
    if name.trim().is_empty() || program.is_empty() {
        return Err(format!("{text:?} needs a name and a program"));
    }
    if BuiltIn::named(name).is_some() {
        return Err(format!("{name:?} is a built-in handler's name"));
    }
    Ok((name.to_string(), PathBuf::from(program)))
}
