//! Test-only fault hooks. Everything here compiles to "off" unless the `fault-injection` cargo
//! feature is enabled, so a release build cannot lose or damage data on purpose.

/// Environment switch of the power-loss storage mode (with the `fault-injection` feature only).
pub const POWERLOSS_ENV: &str = "RIFTKV_FAULT_POWERLOSS";

/// True when this process runs in the power-loss storage mode: writes not synced to the WAL
/// stay inside the process, so a SIGKILL loses them as a power cut loses the OS page cache.
/// A node in this mode treats every unclean start as a machine crash.
#[cfg(feature = "fault-injection")]
pub fn powerloss_mode() -> bool {
    std::env::var(POWERLOSS_ENV).is_ok_and(|v| v == "1" || v == "true")
}

/// Always false without the `fault-injection` feature.
#[cfg(not(feature = "fault-injection"))]
pub fn powerloss_mode() -> bool {
    false
}
