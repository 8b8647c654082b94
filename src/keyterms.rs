//! The voice stage's keyterms backed by the store: the call's lead and agent names, the homes the
//! lead viewed, the organization's name and list, then the trade's words.

use futures_util::future::BoxFuture;
use winnerr_events::CallContext;
use winnerr_store::Store;
use winnerr_voice::keyterms::{self, KeytermSource};

pub struct StoreKeyterms {
    pub store: Store,
}

impl KeytermSource for StoreKeyterms {
    fn keyterms<'a>(&'a self, call: &'a CallContext) -> BoxFuture<'a, Result<Vec<String>, String>> {
        Box::pin(async move {
            let own = self
                .store
                .call_keyterms(
                    &call.org_id,
                    call.agent_id.as_ref().map(|a| a.as_str()),
                    call.lead_id.as_ref().map(|l| l.as_str()),
                )
                .await
                .map_err(|e| e.to_string())?;
            Ok(keyterms::merged([&own[..], &keyterms::trade_terms()[..]]))
        })
    }
}
