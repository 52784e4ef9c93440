//! What the subcommands share: printing JSON, parsing backend and dtype names.

use std::io::Write;

use crate::error::Error;
use crate::recipe::types::{AttentionDtype, BackendChoice, Dtype};

pub(crate) fn print_json(v: &impl serde::Serialize) -> Result<(), Error> {
    let text = serde_json::to_string_pretty(v).expect("serializable");
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}").map_err(|source| Error::Io { context: "writing to stdout".into(), source })
}

pub(crate) fn parse_dtype(s: &str) -> Result<Dtype, String> {
    match s {
        "f32" => Ok(Dtype::F32),
        "bf16" => Ok(Dtype::Bf16),
        "f16" => Ok(Dtype::F16),
        "auto" => Ok(Dtype::Auto),
        _ => Err(format!("unknown dtype `{s}`: expected f32, bf16, f16 or auto")),
    }
}

pub(crate) fn parse_attention(s: &str) -> Result<AttentionDtype, String> {
    match s {
        "f32" => Ok(AttentionDtype::F32),
        "bf16" => Ok(AttentionDtype::Bf16),
        _ => Err(format!("unknown attention dtype `{s}`: expected f32 or bf16")),
    }
}

pub(crate) fn parse_backend(s: &str) -> Result<BackendChoice, String> {
    match s {
        "auto" => Ok(BackendChoice::Auto),
        "flex" => Ok(BackendChoice::Flex),
        "tch" => Ok(BackendChoice::Tch),
        _ => Err(format!("unknown backend `{s}`: expected auto, flex or tch")),
    }
}
