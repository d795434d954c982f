//! What the figures were measured on: printed first by every subcommand so that a pasted output
//! carries its machine and versions.

use std::process::Command;

fn first_line_of(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    // `mosquitto -h` prints its version on stdout and exits 3.
    let text = if out.stdout.is_empty() {
        out.stderr
    } else {
        out.stdout
    };
    String::from_utf8_lossy(&text)
        .lines()
        .find(|l| !l.trim().is_empty())
        .map(|l| l.trim().to_owned())
}

fn proc_field(file: &str, key: &str) -> Option<String> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_owned())
}

/// Prints `# machine: …` and `# versions: …`.
pub fn print_header() {
    let cpus = std::thread::available_parallelism().map_or(0, std::num::NonZeroUsize::get);
    let model = proc_field("/proc/cpuinfo", "model name").unwrap_or_else(|| "?".into());
    let mem = proc_field("/proc/meminfo", "MemTotal").unwrap_or_else(|| "?".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "?".into());
    let rustc = first_line_of("rustc", &["-V"]).unwrap_or_else(|| "rustc ?".into());
    let mosquitto = watchstand_tests::mosquitto_bin()
        .and_then(|p| first_line_of(&p.to_string_lossy(), &["-h"]))
        .unwrap_or_else(|| "mosquitto not installed".into());
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    println!("# machine: {cpus} CPUs ({model}), {mem} RAM, Linux {kernel}");
    println!("# versions: {rustc}; {mosquitto}; bench built {profile}");
}
