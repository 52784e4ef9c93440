//! Tokenizer tests: a tiny GGUF vocabulary built here, and (when `RECCOCKTAIL_SMOLLM2_GGUF` names
//! the real SmolLM2 file) the committed fixture `tests/fixtures/smollm2_tokenizer_ids.json`.

use super::*;
use crate::model::gguf::testutil::{tiny_vocab_kv, GgufBuilder};
use crate::model::gguf::{GgufFile, Metadata};

fn tiny_meta(pre: &str) -> Metadata {
    let mut b = GgufBuilder::new();
    tiny_vocab_kv(&mut b, pre);
    b.kv.into_iter().collect()
}

#[test]
fn tiny_byte_level_bpe_from_metadata() {
    let tok = TextTokenizer::from_gguf_metadata(&tiny_meta("smollm")).unwrap();
    assert_eq!(tok.vocab_size(), 264);
    assert_eq!(tok.bos_id(), Some(1));
    assert_eq!(tok.eos_ids(), &[2]);
    let id = |t: &str| tok.token_id(t).unwrap();
    // "hello world": "he"+"ll" merge to "hell", then "o"; " w" merges, "or" merges.
    assert_eq!(tok.encode("hello world", false).unwrap(), vec![id("hell"), id("o"), id("Ġw"), id("or"), id("l"), id("d")]);
    // control tokens are single ids wherever they appear; digits split one by one
    let ids = tok.encode("<|im_start|>user\n12<|im_end|>", false).unwrap();
    assert_eq!(ids, vec![1, id("u"), id("s"), id("e"), id("r"), id("Ċ"), id("1"), id("2"), 2]);
    // no bos added (add_bos_token = false)
    assert_eq!(tok.encode("h", true).unwrap(), vec![id("h")]);
    for text in ["héllo wörld 🎉", "  tabs\tand\nnewlines  ", "<|im_start|>x<|im_end|>"] {
        let ids = tok.encode(text, false).unwrap();
        assert_eq!(tok.decode(&ids, false).unwrap(), text);
    }
    assert_eq!(tok.decode(&tok.encode("<|im_start|>hi<|im_end|>", false).unwrap(), true).unwrap(), "hi");
    // the JSON round-trips through the tokenizers crate
    let again = TextTokenizer::from_json_str(&tok.to_json_string().unwrap()).unwrap();
    assert_eq!(again.encode("hello world 42", false).unwrap(), tok.encode("hello world 42", false).unwrap());
}

#[test]
fn pre_tokenizer_kinds() {
    // gpt2: digits stay in one pre-token ("12" would merge if a merge existed; here bytes)
    for pre in ["gpt2", "llama-bpe", "qwen2", "smollm"] {
        let tok = TextTokenizer::from_gguf_metadata(&tiny_meta(pre)).unwrap();
        let ids = tok.encode("hello world", false).unwrap();
        assert_eq!(tok.decode(&ids, false).unwrap(), "hello world", "{pre}");
    }
    let e = TextTokenizer::from_gguf_metadata(&tiny_meta("deepseek-coder")).unwrap_err().to_string();
    assert!(e.contains("deepseek-coder") && e.contains("smollm"), "{e}");
    let mut m = tiny_meta("smollm");
    m.insert("tokenizer.ggml.model".into(), GgufValue::String("llama".into()));
    let e = TextTokenizer::from_gguf_metadata(&m).unwrap_err().to_string();
    assert!(e.contains("`llama`"), "{e}");
    // add_bos_token: a TemplateProcessing post-processor puts bos first
    let mut m = tiny_meta("llama-bpe");
    m.insert("tokenizer.ggml.add_bos_token".into(), GgufValue::Bool(true));
    let tok = TextTokenizer::from_gguf_metadata(&m).unwrap();
    assert_eq!(tok.encode("hi", true).unwrap()[0], 1);
    assert_ne!(tok.encode("hi", false).unwrap()[0], 1);
    // an id outside the vocabulary is refused
    let mut m = tiny_meta("smollm");
    m.insert("tokenizer.ggml.eos_token_id".into(), GgufValue::U32(100_000));
    assert!(TextTokenizer::from_gguf_metadata(&m).unwrap_err().to_string().contains("eos_token_id"));
}

#[test]
fn from_file_reads_special_ids_from_configs() {
    let d = std::env::temp_dir().join(format!("reccocktail-tok-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    let tok = TextTokenizer::from_gguf_metadata(&tiny_meta("smollm")).unwrap();
    std::fs::write(d.join("tokenizer.json"), tok.to_json_string().unwrap()).unwrap();
    let plain = TextTokenizer::from_file(&d.join("tokenizer.json")).unwrap();
    assert_eq!((plain.bos_id(), plain.eos_ids().len()), (None, 0));
    std::fs::write(d.join("tokenizer_config.json"), r#"{"bos_token": "<|im_start|>", "eos_token": {"content": "<|im_end|>"}}"#).unwrap();
    std::fs::write(d.join("generation_config.json"), r#"{"eos_token_id": [2, 0]}"#).unwrap();
    let t = TextTokenizer::from_hf_dir(&d).unwrap();
    assert_eq!(t.bos_id(), Some(1));
    assert_eq!(t.eos_ids(), &[2, 0]);
    let e = TextTokenizer::from_file(&d.join("missing.json")).unwrap_err().to_string();
    assert!(e.contains("missing.json"), "{e}");
    std::fs::write(d.join("bad.json"), "{}").unwrap();
    assert!(TextTokenizer::from_file(&d.join("bad.json")).unwrap_err().to_string().contains("bad.json"));
    let _ = std::fs::remove_dir_all(&d);
}

/// The committed fixture: texts and the ids a reference BPE (scripts/fixtures) gives on the real
/// SmolLM2 GGUF vocabulary. Runs when `RECCOCKTAIL_SMOLLM2_GGUF` names the file.
#[test]
fn real_smollm2_matches_reference_ids() {
    let Some(path) = crate::model::gguf::tests::real_gguf() else { return };
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/smollm2_tokenizer_ids.json");
    let fx: Json = serde_json::from_str(&std::fs::read_to_string(fixture).unwrap()).unwrap();
    let file = GgufFile::open(&path).unwrap();
    let tok = TextTokenizer::from_gguf_metadata(&file.metadata).unwrap();
    assert_eq!(tok.bos_id(), Some(1));
    assert_eq!(tok.eos_ids(), &[2]);
    assert_eq!(tok.token_id("<|im_start|>"), Some(1));
    let cases = fx["cases"].as_array().unwrap();
    assert!(cases.len() >= 20);
    let mut failures = Vec::new();
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let want: Vec<u32> = case["ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        let got = tok.encode(text, false).unwrap();
        if got != want {
            failures.push(format!("{text:?}: got {got:?}, want {want:?}"));
        }
        assert_eq!(tok.decode(&got, false).unwrap(), text, "decode of {text:?}");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // the chat renders of the fixture encode to the reference ids too
    for chat in fx["chat"].as_array().into_iter().flatten() {
        let text = chat["text"].as_str().unwrap();
        let want: Vec<u32> = chat["ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        assert_eq!(tok.encode(text, false).unwrap(), want, "{text:?}");
    }
}
