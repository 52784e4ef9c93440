//! Text <-> token ids: HF `tokenizer.json` files through the `tokenizers` crate, and gpt2-style
//! byte-level BPE tokenizers rebuilt from GGUF metadata (`tokenizer.ggml.*`), written as the same
//! `tokenizer.json` any HF tool reads.
//!
//! From GGUF: the vocabulary (`tokens`), `merges`, `token_type` (control tokens become special
//! added tokens, user-defined ones plain added tokens, so `<|im_start|>` is one id), the bos / eos /
//! eot / unk / pad ids, `add_bos_token` / `add_eos_token`, and the pre-tokenizer kind
//! (`tokenizer.ggml.pre`), which picks the split regex llama.cpp uses for it (llama-vocab.cpp):
//!
//! | `pre` | split |
//! |---|---|
//! | smollm, starcoder, refact, command-r, codeshell, exaone, minerva-7b | each digit alone, then the GPT-2 regex |
//! | gpt2, mpt, olmo, jais | the GPT-2 regex |
//! | llama-bpe, llama3, llama-v3, dbrx, smaug-bpe, falcon3, pixtral | the Llama-3 regex (digits in runs of at most 3) |
//! | qwen2, deepseek-r1-qwen, stablelm2 | the Qwen2 regex (digits alone) |

use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde_json::{json, Map, Value as Json};
use tokenizers::Tokenizer;

use super::gguf::{GgufValue, Metadata};

#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: invalid tokenizer: {message}")]
    Load { path: PathBuf, message: String },
    #[error("GGUF tokenizer metadata: {0}")]
    Metadata(String),
    #[error("GGUF tokenizer model `{0}` is not supported (supported: gpt2, i.e. byte-level BPE)")]
    UnsupportedModel(String),
    #[error("GGUF pre-tokenizer `tokenizer.ggml.pre = {0}` is not supported (supported: {SUPPORTED_PRE})")]
    UnsupportedPre(String),
    #[error("encode: {0}")]
    Encode(String),
    #[error("decode: {0}")]
    Decode(String),
}

const SUPPORTED_PRE: &str = "smollm, starcoder, refact, command-r, codeshell, exaone, minerva-7b, gpt2, mpt, olmo, jais, \
                             llama-bpe, llama3, llama-v3, dbrx, smaug-bpe, falcon3, pixtral, qwen2, deepseek-r1-qwen, stablelm2";

/// Llama-3's split regex (HF spelling; llama.cpp spells the case-insensitive group out).
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen2's split regex.
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// ggml token types.
const TOKEN_UNKNOWN: i64 = 2;
const TOKEN_CONTROL: i64 = 3;
const TOKEN_USER_DEFINED: i64 = 4;

/// A tokenizer with the ids generation needs (bos, end-of-sequence set).
#[derive(Clone)]
pub struct TextTokenizer {
    inner: Tokenizer,
    bos: Option<u32>,
    eos: Vec<u32>,
}

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextTokenizer").field("vocab_size", &self.vocab_size()).field("bos", &self.bos).field("eos", &self.eos).finish()
    }
}

impl TextTokenizer {
    /// Load a `tokenizer.json`. bos / eos come from the `tokenizer_config.json`,
    /// `generation_config.json` and `config.json` next to it, when present.
    pub fn from_file(path: &Path) -> Result<Self, TokenizerError> {
        let text = std::fs::read_to_string(path).map_err(|source| TokenizerError::Io { path: path.to_path_buf(), source })?;
        let mut tok = Self::from_json_str(&text).map_err(|e| match e {
            TokenizerError::Load { message, .. } => TokenizerError::Load { path: path.to_path_buf(), message },
            other => other,
        })?;
        if let Some(dir) = path.parent() {
            tok.read_specials_from_dir(dir);
        }
        Ok(tok)
    }

    /// Load `DIR/tokenizer.json` (and its special tokens from the configs beside it).
    pub fn from_hf_dir(dir: &Path) -> Result<Self, TokenizerError> {
        Self::from_file(&dir.join("tokenizer.json"))
    }

    /// A tokenizer from `tokenizer.json` text (no bos / eos known until [`Self::set_special_ids`]).
    pub fn from_json_str(text: &str) -> Result<Self, TokenizerError> {
        let inner = Tokenizer::from_str(text).map_err(|e| TokenizerError::Load { path: PathBuf::from("tokenizer.json"), message: e.to_string() })?;
        Ok(TextTokenizer { inner, bos: None, eos: Vec::new() })
    }

    /// Build the byte-level BPE tokenizer a GGUF file describes.
    pub fn from_gguf_metadata(meta: &Metadata) -> Result<Self, TokenizerError> {
        let spec = GgufTokenizerSpec::from_metadata(meta)?;
        let json = spec.tokenizer_json()?;
        let inner = Tokenizer::from_str(&json.to_string())
            .map_err(|e| TokenizerError::Metadata(format!("the tokenizer built from the metadata does not load: {e}")))?;
        let mut eos: Vec<u32> = spec.eos.into_iter().chain(spec.eot).collect();
        eos.dedup();
        Ok(TextTokenizer { inner, bos: spec.bos, eos })
    }

    /// Set bos and the end-of-sequence ids (replacing what was known).
    pub fn set_special_ids(&mut self, bos: Option<u32>, eos: Vec<u32>) {
        self.bos = bos;
        self.eos = eos;
    }

    /// The `tokenizer.json` text.
    pub fn to_json_string(&self) -> Result<String, TokenizerError> {
        self.inner.to_string(false).map_err(|e| TokenizerError::Encode(format!("serializing: {e}")))
    }

    /// Token ids of `text`. Added tokens in the text (`<|im_start|>`) are always matched whole;
    /// `add_special_tokens` adds what the post-processor adds (e.g. bos for Llama-3).
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>, TokenizerError> {
        let enc = self.inner.encode_fast(text, add_special_tokens).map_err(|e| TokenizerError::Encode(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String, TokenizerError> {
        self.inner.decode(ids, skip_special_tokens).map_err(|e| TokenizerError::Decode(e.to_string()))
    }

    /// The id of a token (as spelled in the vocabulary, e.g. `<|im_end|>` or `Ġthe`).
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// Ids that end generation (eos, and end-of-turn where the model has one).
    pub fn eos_ids(&self) -> &[u32] {
        &self.eos
    }

    pub fn bos_id(&self) -> Option<u32> {
        self.bos
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The underlying `tokenizers` tokenizer.
    pub fn inner(&self) -> &Tokenizer {
        &self.inner
    }

    /// bos / eos from HF config files beside a tokenizer.json (missing files are fine).
    fn read_specials_from_dir(&mut self, dir: &Path) {
        let read = |name: &str| -> Option<Json> { serde_json::from_str(&std::fs::read_to_string(dir.join(name)).ok()?).ok() };
        let token_of = |v: Option<&Json>| -> Option<u32> {
            let s = match v? {
                Json::String(s) => s.as_str(),
                Json::Object(o) => o.get("content")?.as_str()?,
                _ => return None,
            };
            self.inner.token_to_id(s)
        };
        let ids_of = |v: Option<&Json>| -> Vec<u32> {
            match v {
                Some(Json::Number(n)) => n.as_u64().map(|n| vec![n as u32]).unwrap_or_default(),
                Some(Json::Array(a)) => a.iter().filter_map(|x| x.as_u64().map(|n| n as u32)).collect(),
                _ => Vec::new(),
            }
        };
        let (tc, generation, cfg) = (read("tokenizer_config.json"), read("generation_config.json"), read("config.json"));
        let mut eos = Vec::new();
        if let Some(g) = &generation {
            eos.extend(ids_of(g.get("eos_token_id")));
        }
        if let Some(t) = &tc {
            eos.extend(token_of(t.get("eos_token")));
        }
        if let (true, Some(c)) = (eos.is_empty(), &cfg) {
            eos.extend(ids_of(c.get("eos_token_id")));
        }
        let mut seen = std::collections::HashSet::new();
        eos.retain(|id| seen.insert(*id));
        let bos = tc
            .as_ref()
            .and_then(|t| token_of(t.get("bos_token")))
            .or_else(|| generation.as_ref().and_then(|g| ids_of(g.get("bos_token_id")).first().copied()))
            .or_else(|| cfg.as_ref().and_then(|c| ids_of(c.get("bos_token_id")).first().copied()));
        if !eos.is_empty() {
            self.eos = eos;
        }
        if bos.is_some() {
            self.bos = bos;
        }
    }
}

/// What a GGUF file says about its tokenizer.
#[derive(Debug, Clone)]
pub struct GgufTokenizerSpec {
    pub tokens: Vec<String>,
    pub token_types: Vec<i64>,
    pub merges: Vec<String>,
    pub pre: String,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub eot: Option<u32>,
    pub unk: Option<u32>,
    pub pad: Option<u32>,
    pub add_bos: bool,
    pub add_eos: bool,
    pub add_space_prefix: bool,
}

fn meta_id(meta: &Metadata, key: &str, n_tokens: usize) -> Result<Option<u32>, TokenizerError> {
    match meta.get(key) {
        None => Ok(None),
        Some(v) => match v.as_i64() {
            // llama.cpp writes -1 (or an out-of-range id) for "none".
            Some(id) if id < 0 => Ok(None),
            Some(id) if (id as usize) < n_tokens => Ok(Some(id as u32)),
            Some(id) => Err(TokenizerError::Metadata(format!("`{key}` = {id} is outside the vocabulary of {n_tokens} tokens"))),
            None => Err(TokenizerError::Metadata(format!("`{key}` must be an integer, found {v:?}"))),
        },
    }
}

fn string_array(meta: &Metadata, key: &str) -> Result<Option<Vec<String>>, TokenizerError> {
    let Some(v) = meta.get(key) else { return Ok(None) };
    let arr = v.as_array().ok_or_else(|| TokenizerError::Metadata(format!("`{key}` must be an array of strings")))?;
    arr.iter()
        .map(|x| x.as_str().map(str::to_string).ok_or_else(|| TokenizerError::Metadata(format!("`{key}` must hold strings, found {x:?}"))))
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

impl GgufTokenizerSpec {
    pub fn from_metadata(meta: &Metadata) -> Result<Self, TokenizerError> {
        let model = meta.get("tokenizer.ggml.model").and_then(GgufValue::as_str).unwrap_or("");
        if model != "gpt2" {
            return Err(TokenizerError::UnsupportedModel(if model.is_empty() { "(none)".into() } else { model.into() }));
        }
        let tokens = string_array(meta, "tokenizer.ggml.tokens")?.ok_or_else(|| TokenizerError::Metadata("no `tokenizer.ggml.tokens`".into()))?;
        let merges = string_array(meta, "tokenizer.ggml.merges")?.ok_or_else(|| TokenizerError::Metadata("no `tokenizer.ggml.merges`".into()))?;
        let n = tokens.len();
        let token_types = match meta.get("tokenizer.ggml.token_type") {
            None => vec![1; n],
            Some(v) => {
                let a = v.as_array().ok_or_else(|| TokenizerError::Metadata("`tokenizer.ggml.token_type` must be an array".into()))?;
                if a.len() != n {
                    return Err(TokenizerError::Metadata(format!("{} token types for {n} tokens", a.len())));
                }
                a.iter().map(|x| x.as_i64().unwrap_or(1)).collect()
            }
        };
        let pre = meta.get("tokenizer.ggml.pre").and_then(GgufValue::as_str).unwrap_or("default").to_string();
        let flag = |k: &str, default: bool| meta.get(k).and_then(GgufValue::as_bool).unwrap_or(default);
        Ok(GgufTokenizerSpec {
            bos: meta_id(meta, "tokenizer.ggml.bos_token_id", n)?,
            eos: meta_id(meta, "tokenizer.ggml.eos_token_id", n)?,
            eot: meta_id(meta, "tokenizer.ggml.eot_token_id", n)?,
            unk: meta_id(meta, "tokenizer.ggml.unknown_token_id", n)?,
            pad: meta_id(meta, "tokenizer.ggml.padding_token_id", n)?,
            add_bos: flag("tokenizer.ggml.add_bos_token", false),
            add_eos: flag("tokenizer.ggml.add_eos_token", false),
            add_space_prefix: flag("tokenizer.ggml.add_space_prefix", false),
            tokens,
            token_types,
            merges,
            pre,
        })
    }

    /// The token text of an id, if any.
    pub fn token(&self, id: Option<u32>) -> Option<&str> {
        id.and_then(|i| self.tokens.get(i as usize)).map(String::as_str)
    }

    fn pre_tokenizer(&self) -> Result<(Json, bool), TokenizerError> {
        let byte_level = |use_regex: bool| {
            json!({"type": "ByteLevel", "add_prefix_space": self.add_space_prefix, "trim_offsets": true, "use_regex": use_regex})
        };
        let split = |re: &str| {
            json!({"type": "Sequence", "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": re}, "behavior": "Isolated", "invert": false},
                byte_level(false),
            ]})
        };
        Ok(match self.pre.as_str() {
            "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone" | "minerva-7b" => (
                json!({"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": true}, byte_level(true)]}),
                false,
            ),
            "gpt2" | "mpt" | "olmo" | "jais" => (byte_level(true), false),
            // llama.cpp ignores merges for Llama-3 (a word that is a token stays whole), as HF does.
            "llama-bpe" | "llama3" | "llama-v3" | "dbrx" | "smaug-bpe" | "falcon3" | "pixtral" => (split(LLAMA3_SPLIT), true),
            "qwen2" | "deepseek-r1-qwen" | "stablelm2" => (split(QWEN2_SPLIT), false),
            other => return Err(TokenizerError::UnsupportedPre(other.to_string())),
        })
    }

    /// The HF `tokenizer.json` value.
    pub fn tokenizer_json(&self) -> Result<Json, TokenizerError> {
        let (pre_tokenizer, ignore_merges) = self.pre_tokenizer()?;
        let mut vocab = Map::with_capacity(self.tokens.len());
        let mut added = Vec::new();
        for (id, (tok, &ty)) in self.tokens.iter().zip(&self.token_types).enumerate() {
            // A token spelled twice keeps its first id in the BPE vocabulary.
            if !vocab.contains_key(tok) {
                vocab.insert(tok.clone(), json!(id));
            }
            if ty == TOKEN_CONTROL || ty == TOKEN_UNKNOWN || ty == TOKEN_USER_DEFINED {
                added.push(json!({
                    "id": id, "content": tok, "single_word": false, "lstrip": false, "rstrip": false,
                    "normalized": false, "special": ty != TOKEN_USER_DEFINED,
                }));
            }
        }
        let mut merges = Vec::with_capacity(self.merges.len());
        for (i, m) in self.merges.iter().enumerate() {
            // llama.cpp splits at the first space after the first character.
            let cut = m.char_indices().skip(1).find(|&(_, c)| c == ' ').map(|(p, _)| p);
            let Some(p) = cut else {
                return Err(TokenizerError::Metadata(format!("merge #{i} `{m}` is not two tokens separated by a space")));
            };
            merges.push(json!([&m[..p], &m[p + 1..]]));
        }
        let post_processor = if self.add_bos || self.add_eos {
            let bos = self.token(self.bos).filter(|_| self.add_bos);
            let eos = self.token(self.eos).filter(|_| self.add_eos);
            if self.add_bos && bos.is_none() || self.add_eos && eos.is_none() {
                return Err(TokenizerError::Metadata("add_bos_token / add_eos_token set without the token id".into()));
            }
            let special = |t: &str| json!({"SpecialToken": {"id": t, "type_id": 0}});
            let seq = |s: &str, ty: u32| json!({"Sequence": {"id": s, "type_id": ty}});
            let mut single = Vec::new();
            let mut pair = Vec::new();
            let mut specials = Map::new();
            if let (Some(b), Some(id)) = (bos, self.bos) {
                single.push(special(b));
                pair.push(special(b));
                specials.insert(b.into(), json!({"id": b, "ids": [id], "tokens": [b]}));
            }
            single.push(seq("A", 0));
            pair.push(seq("A", 0));
            if let Some(e) = eos {
                single.push(special(e));
                pair.push(special(e));
            }
            if let Some(b) = bos {
                pair.push(json!({"SpecialToken": {"id": b, "type_id": 1}}));
            }
            pair.push(seq("B", 1));
            if let (Some(e), Some(id)) = (eos, self.eos) {
                pair.push(json!({"SpecialToken": {"id": e, "type_id": 1}}));
                specials.insert(e.into(), json!({"id": e, "ids": [id], "tokens": [e]}));
            }
            json!({"type": "TemplateProcessing", "single": single, "pair": pair, "special_tokens": specials})
        } else {
            json!({"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true})
        };
        Ok(json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": added,
            "normalizer": null,
            "pre_tokenizer": pre_tokenizer,
            "post_processor": post_processor,
            "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
            "model": {
                "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": ignore_merges,
                "vocab": vocab, "merges": merges,
            },
        }))
    }

    /// The HF `tokenizer_config.json` value (with the chat template, when given).
    pub fn tokenizer_config(&self, chat_template: Option<&str>, model_max_length: Option<u64>) -> Json {
        let mut c = Map::new();
        c.insert("tokenizer_class".into(), json!("PreTrainedTokenizerFast"));
        c.insert("add_bos_token".into(), json!(self.add_bos));
        c.insert("add_eos_token".into(), json!(self.add_eos));
        c.insert("clean_up_tokenization_spaces".into(), json!(false));
        for (key, id) in [("bos_token", self.bos), ("eos_token", self.eos), ("unk_token", self.unk), ("pad_token", self.pad)] {
            if let Some(t) = self.token(id) {
                c.insert(key.into(), json!(t));
            }
        }
        if let Some(n) = model_max_length {
            c.insert("model_max_length".into(), json!(n));
        }
        if let Some(t) = chat_template {
            c.insert("chat_template".into(), json!(t));
        }
        Json::Object(c)
    }
}

#[cfg(test)]
mod tests;
