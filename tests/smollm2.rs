//! The real SmolLM2-135M-Instruct (GGUF Q4_1) against transformers' dequantized load of the same
//! file (reference from scripts/fixtures/make_smollm2_reference.py): same token ids, last-position
//! logits within 1e-3, the same greedy chat completion. Skipped unless RECCOCKTAIL_SMOLLM2_GGUF
//! names the file (CI fetches it and sets it).

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

#[test]
fn smollm2_matches_transformers() {
    let Some(path) = gguf() else {
        eprintln!("skipped: set RECCOCKTAIL_SMOLLM2_GGUF to SmolLM2-135M-Instruct.Q4_1.gguf");
        return;
    };
    let reference: serde_json::Value = serde_json::from_str(&std::fs::read_to_string("tests/fixtures/smollm2/reference.json").unwrap()).unwrap();
    let bytes = std::fs::read("tests/fixtures/smollm2/logits.bin").unwrap();
    let expected: Vec<f32> = bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    let vocab = reference["vocab_size"].as_u64().unwrap() as usize;
    for b in backend::compiled_backends() {
        let choice = if b == BackendKind::Flex { BackendChoice::Flex } else { BackendChoice::Tch };
        let device = backend::select(choice, DeviceSpec::Cpu, Some(2)).unwrap().device;
        let m = load_text_model(&path, &device).unwrap();
        for (i, prompt) in reference["prompts"].as_array().unwrap().iter().enumerate() {
            let want: Vec<u32> = reference["ids"][i].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect();
            let ids = m.tokenizer.encode(prompt.as_str().unwrap(), false).unwrap();
            assert_eq!(ids, want, "{b}: token ids of {prompt}");
            let rows = generate::logits_of(&m.backbone.model, &ids);
            let last = rows.last().unwrap();
            let exp = &expected[i * vocab..(i + 1) * vocab];
            let d = last.iter().zip(exp).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
            eprintln!("{b}: prompt {i}: max |logit diff| = {d:.2e}");
            assert!(d <= 1e-3, "{b}: prompt {i}: logits differ by {d}");
        }
        let chat = m.chat.as_ref().expect("SmolLM2 ships a chat template");
        let messages: Vec<ChatMessage> = reference["chat_messages"].as_array().unwrap().iter().map(|x| ChatMessage::new(x["role"].as_str().unwrap(), x["content"].as_str().unwrap())).collect();
        let text = chat.render(&messages, true).unwrap();
        assert_eq!(text, reference["chat_text"].as_str().unwrap(), "{b}: chat template");
        let ids = m.tokenizer.encode(&text, false).unwrap();
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
