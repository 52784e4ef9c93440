//! The real SmolLM2-135M-Instruct (GGUF Q4_1) and Qwen2.5-Coder-0.5B-Instruct (GGUF Q4_K_M)
//! against transformers' dequantized load of the same files (references from
//! scripts/fixtures/make_gguf_reference.py): same token ids, last-position logits within 1e-3,
//! the same chat text and greedy chat completion. Skipped unless RECCOCKTAIL_SMOLLM2_GGUF /
//! RECCOCKTAIL_QWEN_GGUF name the files (CI fetches both and sets them).

use std::path::PathBuf;

use reccocktail::backend::{self, BackendKind, DeviceSpec};
use reccocktail::model::chat::ChatMessage;
use reccocktail::model::generate::{self, GenerationConfig};
use reccocktail::model::load::{load_text_model, TextModel};
use reccocktail::recipe::types::BackendChoice;

fn gguf() -> Option<PathBuf> {
    let p = PathBuf::from(std::env::var_os("RECCOCKTAIL_SMOLLM2_GGUF")?);
    p.is_file().then_some(p)
}

/// The model at `path` against its transformers reference in `tests/fixtures/<fixture>/`, on
/// every compiled backend: token ids, last-position logits within `tol` (all of them, or the
/// reference's top ones when it recorded `top_ids`), the chat template's text and the greedy
/// chat completion.
fn matches_transformers(path: &std::path::Path, fixture: &str, tol: f32) {
    let dir = format!("tests/fixtures/{fixture}");
    let reference: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(format!("{dir}/reference.json")).unwrap()).unwrap();
    let bytes = std::fs::read(format!("{dir}/logits.bin")).unwrap();
    let expected: Vec<f32> = bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    let vocab = reference["vocab_size"].as_u64().unwrap() as usize;
    let top: Option<Vec<Vec<usize>>> = reference.get("top_ids").map(|t| t.as_array().unwrap().iter().map(|r| r.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as usize).collect()).collect());
    for b in backend::compiled_backends() {
        let choice = if b == BackendKind::Flex { BackendChoice::Flex } else { BackendChoice::Tch };
        let device = backend::select(choice, DeviceSpec::Cpu, Some(2)).unwrap().device;
        let m = load_text_model(path, &device).unwrap();
        for (i, prompt) in reference["prompts"].as_array().unwrap().iter().enumerate() {
            let want: Vec<u32> = reference["ids"][i].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect();
            let ids = m.tokenizer.encode(prompt.as_str().unwrap(), false).unwrap();
            assert_eq!(ids, want, "{b}: token ids of {prompt}");
            let rows = generate::logits_of(&m.backbone.model, &ids);
            let last = rows.last().unwrap();
            assert_eq!(last.len(), vocab, "{b}: vocabulary");
            let pairs: Vec<(f32, f32)> = match &top {
                Some(top) => {
                    let n = top[i].len();
                    top[i].iter().zip(&expected[i * n..(i + 1) * n]).map(|(&id, &e)| (last[id], e)).collect()
                }
                None => last.iter().copied().zip(expected[i * vocab..(i + 1) * vocab].iter().copied()).collect(),
            };
            let d = pairs.iter().map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
            eprintln!("{b}: prompt {i}: max |logit diff| = {d:.2e} over {} logits", pairs.len());
            assert!(d <= tol, "{b}: prompt {i}: logits differ by {d}");
        }
        let chat = m.chat.as_ref().expect("the GGUF ships a chat template");
        let messages: Vec<ChatMessage> = reference["chat_messages"].as_array().unwrap().iter().map(|x| ChatMessage::new(x["role"].as_str().unwrap(), x["content"].as_str().unwrap())).collect();
        let text = chat.render(&messages, true).unwrap();
        assert_eq!(text, reference["chat_text"].as_str().unwrap(), "{b}: chat template");
        let ids = m.tokenizer.encode(&text, false).unwrap();
        assert_eq!(ids.iter().map(|&i| i as u64).collect::<Vec<_>>(), reference["chat_ids"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).collect::<Vec<_>>(), "{b}: chat ids");
        // More room than the answer needs: generation must stop at the model's own end of turn.
        assert!(!m.tokenizer.eos_ids().is_empty(), "eos ids come from the GGUF metadata");
        let cfg = GenerationConfig { max_new_tokens: 48, eos_ids: m.tokenizer.eos_ids().to_vec(), ..Default::default() };
        let out = generate::generate(&m.backbone.model, &ids, &cfg, &mut |_| false);
        let mut want: Vec<u32> = reference["greedy_ids"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect();
        if want.last().is_some_and(|t| m.tokenizer.eos_ids().contains(t)) {
            want.pop();
        }
        let text = m.tokenizer.decode(&out, true).unwrap();
        eprintln!("{b}: greedy: {text:?}");
        assert_eq!(out, want, "{b}: greedy ids");
        assert_eq!(text.trim(), reference["greedy_text"].as_str().unwrap().trim());
    }
}

#[test]
fn smollm2_matches_transformers() {
    let Some(path) = gguf() else {
        eprintln!("skipped: set RECCOCKTAIL_SMOLLM2_GGUF to SmolLM2-135M-Instruct.Q4_1.gguf");
        return;
    };
    matches_transformers(&path, "smollm2", 1e-3);
}

/// The second real backbone: Qwen2 architecture (q/k/v bias, untied 152k head), Q4_K_M (Q4_K,
/// Q6_K, Q5_0, Q8_0 tensors), the `qwen2` pre-tokenizer and ChatML, against transformers' load of
/// the same file (`scripts/fixtures/make_gguf_reference.py ... qwen2.5-coder --top 512`).
#[test]
fn qwen2_5_coder_matches_transformers() {
    let Some(path) = std::env::var_os("RECCOCKTAIL_QWEN_GGUF").map(PathBuf::from).filter(|p| p.is_file()) else {
        eprintln!("skipped: set RECCOCKTAIL_QWEN_GGUF to qwen2.5-coder-0.5b-instruct-q4_k_m.gguf (`reccocktail fetch qwen2.5-coder-0.5b-instruct`)");
        return;
    };
    matches_transformers(&path, "qwen2.5-coder", 1e-3);
}

#[test]
fn converted_hf_directory_gives_the_same_model() {
    let Some(path) = gguf() else {
        eprintln!("skipped: set RECCOCKTAIL_SMOLLM2_GGUF to SmolLM2-135M-Instruct.Q4_1.gguf");
        return;
    };
    let device = backend::select(BackendChoice::Auto, DeviceSpec::Cpu, Some(2)).unwrap().device;
    let out = std::env::temp_dir().join(format!("rc-smollm2-hf-{}", std::process::id()));
    reccocktail::model::gguf::convert(&path, &out).unwrap();
    let from_gguf: TextModel = load_text_model(&path, &device).unwrap();
    let from_dir: TextModel = load_text_model(&out, &device).unwrap();
    let ids = from_gguf.tokenizer.encode("Heat (1995) || Casino (1995)", false).unwrap();
    assert_eq!(from_dir.tokenizer.encode("Heat (1995) || Casino (1995)", false).unwrap(), ids);
    assert_eq!(from_dir.tokenizer.eos_ids(), from_gguf.tokenizer.eos_ids());
    assert_eq!(generate::logits_of(&from_dir.backbone.model, &ids), generate::logits_of(&from_gguf.backbone.model, &ids));
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn generate_command_prints_ids_and_text() {
    let Some(path) = gguf() else {
        eprintln!("skipped: set RECCOCKTAIL_SMOLLM2_GGUF to SmolLM2-135M-Instruct.Q4_1.gguf");
        return;
    };
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_reccocktail"))
        .args(["generate", "--model", path.to_str().unwrap(), "--chat", "--prompt", "What is the capital of France? Answer in one sentence.", "--max-new-tokens", "32", "--json", "--threads", "2"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["prompt_ids"].as_array().unwrap().len() > 10);
    assert_eq!(v["text"].as_str().unwrap().trim(), "The capital of France is Paris.");
}

/// SmolLM2's byte-level BPE puts the leading space inside the word token (` Heat`): the token
/// entropy of the second title must be taken at ` Heat`, not at ` (`, `1`, `9` (issue 17, bug 1).
#[test]
fn token_entropy_positions_start_at_each_title_with_the_real_tokenizer() {
    let Some(path) = gguf() else {
        eprintln!("skipped: set RECCOCKTAIL_SMOLLM2_GGUF to SmolLM2-135M-Instruct.Q4_1.gguf");
        return;
    };
    let tok = reccocktail::model::load::load_tokenizer(&path).unwrap();
    let ids = tok.encode("Casino (1995) || Heat (1995)", false).unwrap();
    let pieces: Vec<String> = ids.iter().map(|&i| tok.decode(&[i], false).unwrap()).collect();
    let at = |k: usize| -> Vec<String> { reccocktail::merge::entropy::title_token_positions(&tok, &ids, "||", k).iter().map(|&p| pieces[p].clone()).collect() };
    let first = at(1);
    assert_eq!(first.len(), 2, "one token per title: {first:?} of {pieces:?}");
    assert_eq!(first[0], "Cas", "{pieces:?}");
    assert_eq!(first[1], " Heat", "{pieces:?}");
    // Three tokens each: never the separator.
    let three = at(3);
    assert!(three.iter().all(|p| !p.contains("||")), "{three:?}");
    assert_eq!(three, ["Cas", "ino", " (", " Heat", " (", "1"], "{pieces:?}");
}

/// Qwen2's tokenizer from the GGUF metadata against transformers' on 228 strings (titles,
/// accents, CJK, emoji, digits, `||`, whitespace, control tokens):
/// `scripts/fixtures/make_qwen_tokenizer_fixture.py`.
#[test]
fn qwen2_tokenizer_matches_transformers() {
    let Some(path) = std::env::var_os("RECCOCKTAIL_QWEN_GGUF").map(PathBuf::from).filter(|p| p.is_file()) else {
        eprintln!("skipped: set RECCOCKTAIL_QWEN_GGUF to qwen2.5-coder-0.5b-instruct-q4_k_m.gguf");
        return;
    };
    let tok = reccocktail::model::load::load_tokenizer(&path).unwrap();
    let fixture: serde_json::Value = serde_json::from_str(&std::fs::read_to_string("tests/fixtures/qwen2.5-coder/tokenizer_ids.json").unwrap()).unwrap();
    let texts = fixture["texts"].as_array().unwrap();
    assert!(texts.len() > 200);
    let mut wrong = Vec::new();
    for (t, ids) in texts.iter().zip(fixture["ids"].as_array().unwrap()) {
        let want: Vec<u32> = ids.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect();
        let got = tok.encode(t.as_str().unwrap(), false).unwrap();
        if got != want {
            wrong.push(format!("{t}: {got:?} vs {want:?}"));
        }
    }
    assert!(wrong.is_empty(), "{} of {} strings tokenized differently:\n{}", wrong.len(), texts.len(), wrong.join("\n"));
}
