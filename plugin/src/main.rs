//! `kubectl-zenml`: on PATH, `kubectl zenml ...` runs it.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    // `kubectl-zenml __complete WORD...`: what kubectl_complete-zenml asks for `kubectl zenml <TAB>`.
    let mut args = std::env::args_os().skip(1);
    if args.next().is_some_and(|a| a == kubectl_zenml::complete::REQUEST) {
        let words: Vec<String> = args.map(|a| a.to_string_lossy().into_owned()).collect();
        kubectl_zenml::complete::run(&words).await;
        return ExitCode::SUCCESS;
    }
    let cli = kubectl_zenml::cli::Cli::parse();
    match kubectl_zenml::run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
