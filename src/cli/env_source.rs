//! clap reports a bad value from an `MLXCEL_*` mirror as if it were the flag (`invalid value 'abc'
//! for '--temp <TEMP>'`), which sends the user looking for a flag they never typed. This names the
//! variable instead.

use std::ffi::OsString;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Arg, Command};

/// `error`, or the same error naming the environment variable when that is where the value came from.
pub fn name_env_source(error: clap::Error, command: &Command, args: &[OsString]) -> clap::Error {
    if !matches!(error.kind(), ErrorKind::InvalidValue | ErrorKind::ValueValidation) {
        return error;
    }
    let (Some(ContextValue::String(shown)), Some(ContextValue::String(value))) =
        (error.get(ContextKind::InvalidArg), error.get(ContextKind::InvalidValue))
    else {
        return error;
    };
    let Some(arg) = find_arg(command, shown) else { return error };
    let Some(variable) = arg.get_env() else { return error };
    let from_env = std::env::var_os(variable).is_some_and(|set| set == value.as_str());
    if !from_env || given_on_command_line(arg, args) {
        return error;
    }
    let reason = std::error::Error::source(&error).map_or_else(String::new, |reason| format!(": {reason}"));
    clap::Error::raw(
        error.kind(),
        format!(
            "invalid value {value:?} in {} (the environment mirror of {shown}){reason}\n",
            variable.to_string_lossy()
        ),
    )
}

/// The argument clap displays as `shown` (`--temp <TEMP>`), in any subcommand.
fn find_arg<'c>(command: &'c Command, shown: &str) -> Option<&'c Arg> {
    command
        .get_arguments()
        .find(|arg| arg.to_string() == shown)
        .or_else(|| command.get_subcommands().find_map(|sub| find_arg(sub, shown)))
}

fn given_on_command_line(arg: &Arg, args: &[OsString]) -> bool {
    let long = arg.get_long().map(|long| format!("--{long}"));
    let short = arg.get_short().map(|short| format!("-{short}"));
    args.iter().filter_map(|a| a.to_str()).any(|a| {
        long.as_deref().is_some_and(|long| a == long || a.starts_with(&format!("{long}=")))
            || short.as_deref().is_some_and(|short| a.starts_with(short) && !a.starts_with("--"))
    })
}
