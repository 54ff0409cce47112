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

/// Environment switch of the planted "old dot rule" bug (with the `fault-injection` feature).
pub const OLD_DOT_RULE_ENV: &str = "RIFTKV_FAULT_OLD_DOT_RULE";

/// Planted bugs of one node. Empty, and every switch off, in a release build.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// Every coordinated write uses the bare node id as its actor (the rule before write
    /// identities), so a node that forgot a key's history reissues dots. For proving that the
    /// simulation and the disk nemeses find lost writes.
    #[cfg(any(test, feature = "fault-injection", feature = "testkit"))]
    pub old_dot_rule: bool,
}

impl Faults {
    /// The switches a `fault-injection` build reads from the environment (all off otherwise).
    pub fn from_env() -> Faults {
        #[cfg(any(test, feature = "fault-injection", feature = "testkit"))]
        {
            let on = |name: &str| std::env::var(name).is_ok_and(|v| v == "1" || v == "true");
            Faults {
                old_dot_rule: cfg!(feature = "fault-injection") && on(OLD_DOT_RULE_ENV),
            }
        }
        #[cfg(not(any(test, feature = "fault-injection", feature = "testkit")))]
        Faults {}
    }

    pub fn old_dot_rule(&self) -> bool {
        #[cfg(any(test, feature = "fault-injection", feature = "testkit"))]
        {
            self.old_dot_rule
        }
        #[cfg(not(any(test, feature = "fault-injection", feature = "testkit")))]
        false
    }
}
