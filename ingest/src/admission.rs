//! Admission control: a node serves at most `max_calls` calls at once (its capacity, from the
//! measured speed of its speech workers), and each organization at most `max_calls_per_org`.
//! A call over either is refused before it takes anything from the calls already running: a
//! Twilio stream is closed (4007 node full, 4009 organization limit), a softphone is answered
//! 503 or 429, and the voice webhook answers without `<Start><Stream>` (the call goes through,
//! untranscribed, or with the configured fallback TwiML). Counted by reason, logged, and the
//! capacity used is a gauge.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use winnerr_events::OrgId;

use crate::metrics;

/// The limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallLimits {
    /// Calls this node serves at once.
    pub max_calls: usize,
    /// Calls one organization may have on this node at once (`None`: no limit of its own).
    pub max_calls_per_org: Option<usize>,
}

impl Default for CallLimits {
    fn default() -> Self {
        CallLimits {
            max_calls: usize::MAX,
            max_calls_per_org: None,
        }
    }
}

/// Why a call was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// The node serves as many calls as it can.
    Node,
    /// The organization has as many calls as it may.
    Organization,
}

impl Full {
    pub fn label(self) -> &'static str {
        match self {
            Full::Node => "node_full",
            Full::Organization => "org_limit",
        }
    }
}

/// The calls admitted now, in all and by organization.
#[derive(Debug, Default)]
pub struct Admission {
    limits: CallLimits,
    live: Mutex<Live>,
}

#[derive(Debug, Default)]
struct Live {
    total: usize,
    by_org: HashMap<OrgId, usize>,
}

impl Admission {
    pub fn new(limits: CallLimits) -> Arc<Self> {
        Arc::new(Admission {
            limits,
            live: Mutex::default(),
        })
    }

    fn live(&self) -> std::sync::MutexGuard<'_, Live> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a call of `org` would be admitted now (for the webhook, before any stream).
    pub fn check(&self, org: &OrgId) -> Result<(), Full> {
        self.full(&self.live(), org).map_or(Ok(()), Err)
    }

    /// Admits a call of `org`: its place, given back when the guard is dropped (the call's
    /// stream ended), or why not. A refusal is counted.
    pub fn admit(self: &Arc<Self>, org: &OrgId) -> Result<Admitted, Full> {
        let mut live = self.live();
        if let Some(full) = self.full(&live, org) {
            metrics::call_refused(full.label());
            return Err(full);
        }
        live.total += 1;
        *live.by_org.entry(org.clone()).or_insert(0) += 1;
        self.report(live.total);
        Ok(Admitted {
            admission: self.clone(),
            org: org.clone(),
        })
    }

    /// Which limit one more call of `org` would go past, with `live` admitted.
    fn full(&self, live: &Live, org: &OrgId) -> Option<Full> {
        let of_org = live.by_org.get(org).copied().unwrap_or(0);
        if live.total >= self.limits.max_calls {
            Some(Full::Node)
        } else if self
            .limits
            .max_calls_per_org
            .is_some_and(|max| of_org >= max)
        {
            Some(Full::Organization)
        } else {
            None
        }
    }

    fn report(&self, total: usize) {
        metrics::capacity_used(total, self.limits.max_calls);
    }
}

/// An admitted call's place.
#[derive(Debug)]
pub struct Admitted {
    admission: Arc<Admission>,
    org: OrgId,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut live = self.admission.live();
        live.total = live.total.saturating_sub(1);
        if let Some(count) = live.by_org.get_mut(&self.org) {
            *count -= 1;
            if *count == 0 {
                live.by_org.remove(&self.org);
            }
        }
        self.admission.report(live.total);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_over_the_node_or_the_organization_limit_are_refused_until_one_ends() {
        let admission = Admission::new(CallLimits {
            max_calls: 3,
            max_calls_per_org: Some(2),
        });
        let (a, b) = (OrgId::parse("a").unwrap(), OrgId::parse("b").unwrap());
        let first = admission.admit(&a).unwrap();
        let _second = admission.admit(&a).unwrap();
        assert_eq!(admission.admit(&a).unwrap_err(), Full::Organization);
        assert_eq!(admission.check(&a), Err(Full::Organization));
        let _third = admission.admit(&b).unwrap();
        assert_eq!(admission.admit(&b).unwrap_err(), Full::Node);
        drop(first);
        assert_eq!(admission.check(&a), Ok(()));
        assert!(admission.admit(&a).is_ok());
    }
}
