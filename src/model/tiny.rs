//! A tiny, randomly initialized chat model written as an HF directory: a few-layer Llama with a
//! byte-level tokenizer (256 byte tokens, no merges) and a ChatML chat template. Tests and the
//! tiny end-to-end recipe use it to exercise every model stage in seconds; its numbers mean
//! nothing.

use std::path::Path;

use serde_json::json;

use super::gguf::{HfCheckpoint, write_hf_dir};
use super::ModelError;
use crate::rng::Rng;

/// GPT-2's byte -> printable character table (byte-level BPE's alphabet).
pub fn bytes_to_unicode() -> Vec<char> {
    let mut bs: Vec<u32> = (u32::from('!')..=u32::from('~')).chain(0xA1..=0xAC).chain(0xAE..=0xFF).collect();
    let mut cs = bs.clone();
    let mut n = 0;
    for b in 0..256u32 {
        if !bs.contains(&b) {
            bs.push(b);
            cs.push(256 + n);
            n += 1;
        }
    }
    let mut table = vec![' '; 256];
    for (b, c) in bs.into_iter().zip(cs) {
        table[b as usize] = char::from_u32(c).expect("valid code point");
    }
    table
}

const SPECIALS: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];

const CHATML: &str = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// Sizes of the tiny model.
#[derive(Debug, Clone, Copy)]
pub struct TinySpec {
    pub hidden: usize,
    pub intermediate: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
}

impl Default for TinySpec {
    fn default() -> Self {
        Self { hidden: 32, intermediate: 64, layers: 2, heads: 4, kv_heads: 2 }
    }
}

/// Write the tiny model to `dir` (created), weights drawn from `seed`.
pub fn write_tiny_chat_model(dir: &Path, spec: TinySpec, seed: u64) -> Result<(), ModelError> {
    let vocab = 256 + SPECIALS.len();
    let (h, f, hd) = (spec.hidden, spec.intermediate, spec.hidden / spec.heads);
    let config = json!({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "hidden_size": h, "intermediate_size": f, "num_hidden_layers": spec.layers,
        "num_attention_heads": spec.heads, "num_key_value_heads": spec.kv_heads, "head_dim": hd,
        "vocab_size": vocab, "max_position_embeddings": 4096, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
        "tie_word_embeddings": true, "hidden_act": "silu", "attention_bias": false, "mlp_bias": false,
        "bos_token_id": 257, "eos_token_id": 258, "torch_dtype": "float32",
    });
    let mut rng = Rng::derive(seed, &["tiny-model"]);
    let mut normal = |shape: Vec<usize>, std: f64| -> (Vec<usize>, Vec<f32>) {
        let n: usize = shape.iter().product();
        // Box-Muller, deterministic.
        let data = (0..n)
            .map(|_| {
                let (u1, u2) = (rng.unit().max(1e-12), rng.unit());
                ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos() * std) as f32
            })
            .collect();
        (shape, data)
    };
    let mut tensors = Vec::new();
    let mut push = |name: String, (shape, data): (Vec<usize>, Vec<f32>)| tensors.push((name, shape, data));
    push("model.embed_tokens.weight".into(), normal(vec![vocab, h], 0.5));
    for l in 0..spec.layers {
        let p = format!("model.layers.{l}");
        push(format!("{p}.input_layernorm.weight"), (vec![h], vec![1.0; h]));
        push(format!("{p}.post_attention_layernorm.weight"), (vec![h], vec![1.0; h]));
        push(format!("{p}.self_attn.q_proj.weight"), normal(vec![spec.heads * hd, h], 0.2));
        push(format!("{p}.self_attn.k_proj.weight"), normal(vec![spec.kv_heads * hd, h], 0.2));
        push(format!("{p}.self_attn.v_proj.weight"), normal(vec![spec.kv_heads * hd, h], 0.2));
        push(format!("{p}.self_attn.o_proj.weight"), normal(vec![h, spec.heads * hd], 0.2));
        push(format!("{p}.mlp.gate_proj.weight"), normal(vec![f, h], 0.2));
        push(format!("{p}.mlp.up_proj.weight"), normal(vec![f, h], 0.2));
        push(format!("{p}.mlp.down_proj.weight"), normal(vec![h, f], 0.2));
    }
    push("model.norm.weight".into(), (vec![h], vec![1.0; h]));

    let table = bytes_to_unicode();
    let vocab_map: serde_json::Map<String, serde_json::Value> = table.iter().enumerate().map(|(i, c)| (c.to_string(), json!(i))).collect();
    let added: Vec<_> = SPECIALS
        .iter()
        .enumerate()
        .map(|(i, t)| json!({ "id": 256 + i, "content": t, "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true }))
        .collect();
    let tokenizer = json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": added, "normalizer": null,
        "pre_tokenizer": { "type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true },
        "post_processor": null,
        "decoder": { "type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true },
        "model": { "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null, "end_of_word_suffix": null,
                   "fuse_unk": false, "byte_fallback": false, "ignore_merges": false, "vocab": vocab_map, "merges": [] },
    });
    let tokenizer_config = json!({
        "bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
        "chat_template": CHATML, "model_max_length": 4096, "tokenizer_class": "GPT2Tokenizer",
    });
    let ckpt = HfCheckpoint {
        config,
        tensors,
        tokenizer_json: tokenizer.to_string(),
        tokenizer_config,
        generation_config: json!({ "bos_token_id": 257, "eos_token_id": 258, "pad_token_id": 256 }),
    };
    write_hf_dir(&ckpt, dir).map_err(|e| ModelError::Other(format!("writing the tiny model: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiny_model_loads_and_chats() {
        let dir = std::env::temp_dir().join(format!("rc-tiny-{}", std::process::id()));
        write_tiny_chat_model(&dir, TinySpec::default(), 7).unwrap();
        let device = crate::backend::select(crate::recipe::types::BackendChoice::Auto, crate::backend::DeviceSpec::Cpu, None).unwrap().device;
        let m = super::super::load::load_text_model(&dir, &device).unwrap();
        let ids = m.tokenizer.encode("<|im_start|>user\nhé<|im_end|>", false).unwrap();
        assert_eq!(ids[0], 257);
        assert_eq!(*ids.last().unwrap(), 258);
        assert_eq!(m.tokenizer.decode(&ids[1..ids.len() - 1], false).unwrap(), "user\nhé");
        assert!(m.tokenizer.eos_ids().contains(&258));
        let text = m.chat.unwrap().render(&[crate::model::chat::ChatMessage::user("hi")], true).unwrap();
        assert_eq!(text, "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
        let logits = crate::model::generate::logits_of(&m.backbone.model, &ids);
        assert_eq!(logits[0].len(), 259);
        std::fs::remove_dir_all(&dir).ok();
    }
}
