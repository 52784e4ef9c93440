//! The typed parameters of the `sasrec:<domain>` stage (what its key hashes).

use serde::Serialize;

use crate::recipe::sasrec::ResolvedSasrec;

/// `sasrec:<domain>`: train SASRec on the domain's split.
#[derive(Debug, Clone, Serialize)]
pub struct SasrecParams {
    pub sasrec: ResolvedSasrec,
    pub seed: u64,
    /// How dropout draws its masks ([`crate::dropout::MASKS_KEY`]).
    pub dropout_masks: &'static str,
}
