//! One module per command group.

pub mod audit;
pub mod member;
pub mod project;
pub mod prune;
pub mod workspace;

use crate::output::Format;

/// A sentence for the user: on stdout for tables, on stderr when stdout carries a JSON or YAML document.
pub fn info(format: Format, msg: impl AsRef<str>) {
    match format {
        Format::Table => println!("{}", msg.as_ref()),
        _ => eprintln!("{}", msg.as_ref()),
    }
}

/// Something the user should know that does not stop the command.
pub fn warn(msg: impl AsRef<str>) {
    eprintln!("warning: {}", msg.as_ref());
}
