//! `mlxcel run` driven through a pipe (the line editor reads plain lines when stdin is not a
//! terminal): a conversation that outgrows the context, a turn too long for it, and a line that
//! is not UTF-8 each get a notice, and the chat goes on to the next line.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

#[test]
fn the_chat_survives_overflow_an_oversized_turn_and_bad_bytes() {
    let dir = common::model_dir("llama-tiny");
    common::edit_config(dir.path(), |config| config["max_position_embeddings"] = 64.into());
    let mut input = Vec::new();
    input.extend(b"hello there\nhow are you today my friend\n");
    input.extend(b"\xff\xfe not text\n");
    input.extend(b"the quick brown fox jumps over the lazy dog again\n");
    input.extend("word ".repeat(80).as_bytes());
    input.extend(b"\nlast one\n");
    let mut child = Command::new(env!("CARGO_BIN_EXE_mlxcel"))
        .args(["run", "-m", dir.path().to_str().unwrap(), "-n", "8"])
        .env("TERM", "xterm")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&input).unwrap();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    for notice in ["not valid UTF-8; not sent", "dropped the", "oldest messages", "the context holds 64; not sent"] {
        assert!(stderr.contains(notice), "{notice:?} missing from {stderr}");
    }
    assert!(!stderr.contains("error"), "{stderr}");
    // Four turns were answered (the bad line and the oversized one were not): four replies, each
    // ending its own line.
    assert!(
        output.stdout.iter().filter(|&&b| b == b'\n').count() >= 4,
        "{:?}",
        String::from_utf8_lossy(&output.stdout)
    );
}
