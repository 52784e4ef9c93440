//! GGUF reader and conversion tests on small files written here, and (when
//! `RECCOCKTAIL_SMOLLM2_GGUF` points at it) on the real SmolLM2-135M-Instruct Q4_1 file.

use std::path::PathBuf;

use super::hf::permute_rows;
use super::testutil::{tiny_vocab_kv, values, GgufBuilder};
use super::*;
use crate::model::tokenizer::TextTokenizer;

/// A scratch directory, removed when dropped.
struct TmpDir(PathBuf);

impl std::ops::Deref for TmpDir {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TmpDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tmpdir(tag: &str) -> TmpDir {
    let d = std::env::temp_dir().join(format!("reccocktail-gguf-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    TmpDir(d)
}

#[test]
fn reads_every_metadata_type_and_alignment() {
    let d = tmpdir("meta");
    let mut b = GgufBuilder::new();
    b.alignment = 64;
    let all = [
        ("u8", GgufValue::U8(200)),
        ("i8", GgufValue::I8(-5)),
        ("u16", GgufValue::U16(60_000)),
        ("i16", GgufValue::I16(-30_000)),
        ("u32", GgufValue::U32(4_000_000_000)),
        ("i32", GgufValue::I32(-2_000_000_000)),
        ("f32", GgufValue::F32(1.5)),
        ("bool", GgufValue::Bool(true)),
        ("str", GgufValue::String("héllo".into())),
        ("u64", GgufValue::U64(u64::MAX)),
        ("i64", GgufValue::I64(i64::MIN)),
        ("f64", GgufValue::F64(-2.25)),
        ("arr", GgufValue::Array(vec![GgufValue::I32(1), GgufValue::I32(-2)])),
        ("strs", GgufValue::Array(vec![GgufValue::String("a".into()), GgufValue::String("".into())])),
        ("nested", GgufValue::Array(vec![GgufValue::Array(vec![GgufValue::U8(1)]), GgufValue::Array(vec![GgufValue::U8(2)])])),
    ];
    for (k, v) in &all {
        b.kv(k, v.clone());
    }
    b.kv("general.alignment", GgufValue::U32(64));
    b.tensor("a", &[2, 32], GgmlType::F32, &values(64, 1));
    b.tensor("b", &[3], GgmlType::F16, &[1.0, 2.0, 3.0]);
    b.tensor("c", &[32], GgmlType::F32, &values(32, 2));
    let path = d.join("m.gguf");
    b.write(&path);
    let f = GgufFile::open(&path).unwrap();
    assert_eq!(f.version, 3);
    assert_eq!(f.alignment, 64);
    assert_eq!(f.data_offset % 64, 0);
    for (k, v) in &all {
        assert_eq!(f.get(k), Some(v), "{k}");
    }
    assert_eq!(f.get("i8").unwrap().as_i64(), Some(-5));
    assert_eq!(f.get("i8").unwrap().as_u64(), None);
    assert_eq!(f.get("f32").unwrap().as_f64(), Some(1.5));
    assert_eq!(f.get("arr").unwrap().to_json(), serde_json::json!([1, -2]));
    let a = f.tensor("a").unwrap();
    assert_eq!(a.dims, vec![32, 2]);
    assert_eq!(a.hf_shape(), vec![2, 32]);
    assert_eq!(f.tensor_f32("a").unwrap(), (vec![2, 32], values(64, 1)));
    assert_eq!(f.tensor_f32("b").unwrap().1, vec![1.0, 2.0, 3.0]);
    assert_eq!(f.tensor("c").unwrap().offset % 64, 0);
    assert_eq!(f.all_tensors_f32().unwrap().len(), 3);
    // version 2 reads the same
    b.version = 2;
    b.write(&path);
    assert_eq!(GgufFile::open(&path).unwrap().version, 2);
}

#[test]
fn malformed_files_give_clear_errors() {
    let d = tmpdir("bad");
    let path = d.join("x.gguf");
    let msg = |bytes: &[u8]| {
        std::fs::write(&path, bytes).unwrap();
        GgufFile::open(&path).unwrap_err().to_string()
    };
    assert!(msg(b"GGML\x03\0\0\0").contains("not a GGUF file"));
    let mut b = GgufBuilder::new();
    b.version = 1;
    assert!(msg(&b.build()).contains("version 1 is not supported"));
    let mut b = GgufBuilder::new();
    b.kv("k", GgufValue::String("value".into()));
    b.tensor("t", &[64], GgmlType::F32, &values(64, 3));
    let full = b.build();
    let m = msg(&full[..full.len() - 10]);
    assert!(m.contains("tensor `t`") && m.contains("truncated"), "{m}");
    let m = msg(&full[..30]);
    assert!(m.contains("truncated"), "{m}");
    // unknown metadata value type 13
    let mut bytes = b"GGUF".to_vec();
    bytes.extend(3u32.to_le_bytes());
    bytes.extend(0u64.to_le_bytes());
    bytes.extend(1u64.to_le_bytes());
    bytes.extend(1u64.to_le_bytes());
    bytes.push(b'k');
    bytes.extend(13u32.to_le_bytes());
    bytes.extend([0u8; 16]);
    let m = msg(&bytes);
    assert!(m.contains("metadata `k`") && m.contains("unknown value type 13"), "{m}");
    // a string longer than the file
    let mut bytes = b"GGUF".to_vec();
    bytes.extend(3u32.to_le_bytes());
    bytes.extend(0u64.to_le_bytes());
    bytes.extend(1u64.to_le_bytes());
    bytes.extend(u64::MAX.to_le_bytes());
    assert!(msg(&bytes).contains("past the end"));
}

#[test]
fn unsupported_tensor_type_names_tensor_and_type() {
    let d = tmpdir("q8_1");
    let mut b = GgufBuilder::new();
    b.tensor("blk.0.ffn_up.weight", &[256], GgmlType::Q8_1, &vec![0.0; 256]);
    let path = d.join("q.gguf");
    b.write(&path);
    let f = GgufFile::open(&path).unwrap();
    let e = f.tensor_f32("blk.0.ffn_up.weight").unwrap_err().to_string();
    assert!(e.contains("blk.0.ffn_up.weight") && e.contains("Q8_1"), "{e}");
    let e = f.all_tensors_f32().unwrap_err().to_string();
    assert!(e.contains("blk.0.ffn_up.weight") && e.contains("Q8_1"), "{e}");
}

/// A 2-layer llama model: hidden 64, 4 heads / 2 kv heads (head_dim 16), ffn 96, vocab 264.
struct Tiny {
    hf: Vec<(String, Vec<usize>, Vec<f32>)>,
    builder: GgufBuilder,
}

fn tiny_llama(tied: bool) -> Tiny {
    tiny_model("llama", tied)
}

/// `arch` "llama" (q/k stored permuted) or "qwen2" (not permuted, q/k/v biases).
fn tiny_model(arch: &str, tied: bool) -> Tiny {
    let (d, heads, kv, ffn, layers) = (64usize, 4usize, 2usize, 96usize, 2usize);
    let hd = d / heads;
    let qwen = arch == "qwen2";
    let key = |k: &str| format!("{arch}.{k}");
    let mut b = GgufBuilder::new();
    b.kv("general.architecture", GgufValue::String(arch.into()))
        .kv(&key("block_count"), GgufValue::U32(layers as u32))
        .kv(&key("context_length"), GgufValue::U32(512))
        .kv(&key("embedding_length"), GgufValue::U32(d as u32))
        .kv(&key("feed_forward_length"), GgufValue::U32(ffn as u32))
        .kv(&key("attention.head_count"), GgufValue::U32(heads as u32))
        .kv(&key("attention.head_count_kv"), GgufValue::U32(kv as u32))
        .kv(&key("rope.freq_base"), GgufValue::F32(100_000.0))
        .kv(&key("attention.layer_norm_rms_epsilon"), GgufValue::F32(1e-5))
        .kv(&key("rope.dimension_count"), GgufValue::U32(hd as u32))
        .kv("tokenizer.chat_template", GgufValue::String("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}".into()));
    tiny_vocab_kv(&mut b, "smollm");
    let vocab = 264;
    let mut hf = Vec::new();
    let mut seed = 10;
    let mut add = |b: &mut GgufBuilder, gguf: &str, hf_name: &str, shape: &[usize], ty: GgmlType, n_head: Option<usize>| {
        seed += 1;
        let n: usize = shape.iter().product();
        let w = values(n, seed);
        let stored = match n_head {
            Some(h) if !qwen => permute_rows(&w, shape[0], h),
            _ => w.clone(),
        };
        b.tensor(gguf, shape, ty, &stored);
        // what the file holds after quantization, in HF row order
        let deq = dequant::dequantize(ty, &testutil::quantize(ty, &w), n).unwrap();
        hf.push((hf_name.to_string(), shape.to_vec(), deq));
    };
    add(&mut b, "token_embd.weight", "model.embed_tokens.weight", &[vocab, d], GgmlType::Q8_0, None);
    for l in 0..layers {
        let p = format!("model.layers.{l}");
        add(&mut b, &format!("blk.{l}.attn_norm.weight"), &format!("{p}.input_layernorm.weight"), &[d], GgmlType::F32, None);
        add(&mut b, &format!("blk.{l}.attn_q.weight"), &format!("{p}.self_attn.q_proj.weight"), &[d, d], GgmlType::F32, Some(heads));
        add(&mut b, &format!("blk.{l}.attn_k.weight"), &format!("{p}.self_attn.k_proj.weight"), &[kv * hd, d], GgmlType::F16, Some(kv));
        add(&mut b, &format!("blk.{l}.attn_v.weight"), &format!("{p}.self_attn.v_proj.weight"), &[kv * hd, d], GgmlType::BF16, None);
        if qwen {
            add(&mut b, &format!("blk.{l}.attn_q.bias"), &format!("{p}.self_attn.q_proj.bias"), &[d], GgmlType::F32, Some(heads));
            add(&mut b, &format!("blk.{l}.attn_k.bias"), &format!("{p}.self_attn.k_proj.bias"), &[kv * hd], GgmlType::F32, Some(kv));
            add(&mut b, &format!("blk.{l}.attn_v.bias"), &format!("{p}.self_attn.v_proj.bias"), &[kv * hd], GgmlType::F32, None);
        }
        add(&mut b, &format!("blk.{l}.attn_output.weight"), &format!("{p}.self_attn.o_proj.weight"), &[d, d], GgmlType::Q4_0, None);
        add(&mut b, &format!("blk.{l}.ffn_norm.weight"), &format!("{p}.post_attention_layernorm.weight"), &[d], GgmlType::F32, None);
        add(&mut b, &format!("blk.{l}.ffn_gate.weight"), &format!("{p}.mlp.gate_proj.weight"), &[ffn, d], GgmlType::Q4_1, None);
        add(&mut b, &format!("blk.{l}.ffn_up.weight"), &format!("{p}.mlp.up_proj.weight"), &[ffn, d], GgmlType::Q4_1, None);
        add(&mut b, &format!("blk.{l}.ffn_down.weight"), &format!("{p}.mlp.down_proj.weight"), &[d, ffn], GgmlType::Q8_0, None);
    }
    add(&mut b, "output_norm.weight", "model.norm.weight", &[d], GgmlType::F32, None);
    if !tied {
        add(&mut b, "output.weight", "lm_head.weight", &[vocab, d], GgmlType::F16, None);
    }
    hf.sort_by(|a, b| a.0.cmp(&b.0));
    Tiny { hf, builder: b }
}

#[test]
fn llama_gguf_to_hf_unpermutes_and_writes_a_loadable_dir() {
    let d = tmpdir("llama");
    for tied in [true, false] {
        let tiny = tiny_llama(tied);
        let path = d.join(format!("tiny-{tied}.gguf"));
        tiny.builder.write(&path);
        let ckpt = gguf_to_hf(&path).unwrap();
        let names: Vec<&str> = ckpt.tensors.iter().map(|t| t.0.as_str()).collect();
        let want: Vec<&str> = tiny.hf.iter().map(|t| t.0.as_str()).collect();
        assert_eq!(names, want);
        for ((name, shape, data), (_, wshape, wdata)) in ckpt.tensors.iter().zip(&tiny.hf) {
            assert_eq!(shape, wshape, "{name}");
            assert_eq!(data, wdata, "{name}");
        }
        let c = &ckpt.config;
        assert_eq!(c["architectures"][0], "LlamaForCausalLM");
        assert_eq!(c["hidden_size"], 64);
        assert_eq!(c["intermediate_size"], 96);
        assert_eq!(c["num_hidden_layers"], 2);
        assert_eq!(c["num_attention_heads"], 4);
        assert_eq!(c["num_key_value_heads"], 2);
        assert_eq!(c["head_dim"], 16);
        assert_eq!(c["rms_norm_eps"], 1e-5);
        assert_eq!(c["rope_theta"], 100_000.0);
        assert_eq!(c["max_position_embeddings"], 512);
        assert_eq!(c["vocab_size"], 264);
        assert_eq!(c["tie_word_embeddings"], tied);
        assert_eq!((c["bos_token_id"].as_u64(), c["eos_token_id"].as_u64()), (Some(1), Some(2)));
        assert!(c.get("rope_scaling").is_none());
        let tok = ckpt.tokenizer().unwrap();
        assert_eq!((tok.bos_id(), tok.eos_ids()), (Some(1), &[2u32][..]));
        let tc = &ckpt.tokenizer_config;
        assert_eq!((tc["bos_token"].as_str(), tc["eos_token"].as_str()), (Some("<|im_start|>"), Some("<|im_end|>")));
        assert!(tc["chat_template"].as_str().unwrap().starts_with("{% for m in messages %}"));

        let out = d.join(format!("hf-{tied}"));
        write_hf_dir(&ckpt, &out).unwrap();
        let bytes = std::fs::read(out.join("model.safetensors")).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        assert_eq!(st.names().contains(&"lm_head.weight"), !tied);
        let q = st.tensor("model.layers.1.self_attn.q_proj.weight").unwrap();
        assert_eq!(q.shape(), &[64, 64]);
        let want = &tiny.hf.iter().find(|t| t.0 == "model.layers.1.self_attn.q_proj.weight").unwrap().2;
        let got: Vec<f32> = q.data().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
        assert_eq!(&got, want);
        let cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
        assert_eq!(&cfg, c);
        let generation: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("generation_config.json")).unwrap()).unwrap();
        assert_eq!(generation["eos_token_id"], 2);
        assert_eq!(generation["pad_token_id"], 2);
        let tok = TextTokenizer::from_hf_dir(&out).unwrap();
        assert_eq!(tok.bos_id(), Some(1));
        assert_eq!(tok.eos_ids(), &[2]);
        assert_eq!(tok.encode("<|im_start|>hello world", false).unwrap()[0], 1);
    }
}

#[test]
fn end_of_turn_token_joins_the_eos_ids() {
    let d = tmpdir("eot");
    let mut tiny = tiny_llama(true);
    tiny.builder.kv("tokenizer.ggml.eot_token_id", GgufValue::U32(0));
    let path = d.join("e.gguf");
    tiny.builder.write(&path);
    let ckpt = gguf_to_hf(&path).unwrap();
    assert_eq!(ckpt.generation_config["eos_token_id"], serde_json::json!([2, 0]));
    assert_eq!(ckpt.config["eos_token_id"], 2);
    assert_eq!(ckpt.tokenizer().unwrap().eos_ids(), &[2, 0]);
    assert_eq!(TextTokenizer::from_gguf_metadata(&GgufFile::open(&path).unwrap().metadata).unwrap().eos_ids(), &[2, 0]);
    write_hf_dir(&ckpt, &d.join("hf")).unwrap();
    assert_eq!(TextTokenizer::from_hf_dir(&d.join("hf")).unwrap().eos_ids(), &[2, 0]);
}

#[test]
fn qwen2_keeps_row_order_and_biases() {
    let d = tmpdir("qwen2");
    let tiny = tiny_model("qwen2", false);
    let path = d.join("q.gguf");
    tiny.builder.write(&path);
    let ckpt = gguf_to_hf(&path).unwrap();
    assert_eq!(ckpt.config["architectures"][0], "Qwen2ForCausalLM");
    assert_eq!(ckpt.config["use_sliding_window"], false);
    assert_eq!(ckpt.tensors.len(), tiny.hf.len());
    for ((name, shape, data), (wname, wshape, wdata)) in ckpt.tensors.iter().zip(&tiny.hf) {
        assert_eq!((name, shape), (wname, wshape));
        assert_eq!(data, wdata, "{name}");
    }
    assert!(ckpt.tensors.iter().any(|t| t.0 == "model.layers.1.self_attn.k_proj.bias"));
}

#[test]
fn convert_refuses_other_architectures_and_unknown_tensors() {
    let d = tmpdir("arch");
    let mut tiny = tiny_llama(true);
    tiny.builder.kv[0].1 = GgufValue::String("gemma2".into());
    let path = d.join("g.gguf");
    tiny.builder.write(&path);
    let e = gguf_to_hf(&path).unwrap_err().to_string();
    assert!(e.contains("architecture `gemma2` is not supported"), "{e}");

    let mut tiny = tiny_llama(true);
    tiny.builder.tensor("blk.0.ffn_gate_exps.weight", &[32], GgmlType::F32, &values(32, 5));
    tiny.builder.write(&path);
    let e = gguf_to_hf(&path).unwrap_err().to_string();
    assert!(e.contains("blk.0.ffn_gate_exps.weight") && e.contains("no HF equivalent"), "{e}");

    let mut tiny = tiny_llama(true);
    // blk.0.attn_k.weight as Q8_1 (2048 elements = 64 blocks of 32), which is not dequantized
    let t = &mut tiny.builder.tensors[3];
    assert_eq!(t.0, "blk.0.attn_k.weight");
    (t.1, t.2, t.3) = (vec![256, 8], GgmlType::Q8_1, vec![0u8; 64 * 36]);
    let name = t.0.clone();
    tiny.builder.write(&path);
    let e = gguf_to_hf(&path).unwrap_err().to_string();
    assert!(e.contains(&name) && e.contains("Q8_1"), "{e}");
}

/// The real SmolLM2-135M-Instruct Q4_1 GGUF, when `RECCOCKTAIL_SMOLLM2_GGUF` names it.
pub(crate) fn real_gguf() -> Option<PathBuf> {
    match std::env::var_os("RECCOCKTAIL_SMOLLM2_GGUF") {
        Some(p) if PathBuf::from(&p).is_file() => Some(PathBuf::from(p)),
        Some(p) => {
            eprintln!("skipped: RECCOCKTAIL_SMOLLM2_GGUF={} is not a file", PathBuf::from(p).display());
            None
        }
        None => {
            eprintln!("skipped: set RECCOCKTAIL_SMOLLM2_GGUF to SmolLM2-135M-Instruct.Q4_1.gguf to run");
            None
        }
    }
}

#[test]
fn real_smollm2_converts() {
    let Some(path) = real_gguf() else { return };
    let t0 = std::time::Instant::now();
    let tensors = GgufFile::open(&path).unwrap().all_tensors_f32().unwrap();
    eprintln!("SmolLM2 GGUF: header + read + dequantize {} tensors: {:.2?}", tensors.len(), t0.elapsed());
    drop(tensors);
    let t0 = std::time::Instant::now();
    let ckpt = gguf_to_hf(&path).unwrap();
    eprintln!("SmolLM2 GGUF -> HF (read + dequantize + unpermute + tokenizer): {:.2?}", t0.elapsed());
    let c = &ckpt.config;
    assert_eq!(c["num_hidden_layers"], 30);
    assert_eq!(c["hidden_size"], 576);
    assert_eq!(c["intermediate_size"], 1536);
    assert_eq!((c["num_attention_heads"].as_u64(), c["num_key_value_heads"].as_u64()), (Some(9), Some(3)));
    assert_eq!(c["vocab_size"], 49152);
    assert_eq!(c["tie_word_embeddings"], true);
    assert_eq!(c["rope_theta"], 100_000.0);
    assert_eq!(c["rms_norm_eps"], 1e-5);
    assert_eq!(ckpt.tensors.len(), 272);
    assert!(!ckpt.tensors.iter().any(|t| t.0 == "lm_head.weight"));
    let get = |n: &str| ckpt.tensors.iter().find(|t| t.0 == n).unwrap();
    assert_eq!(get("model.embed_tokens.weight").1, vec![49152, 576]);
    assert_eq!(get("model.layers.0.self_attn.k_proj.weight").1, vec![192, 576]);
    assert_eq!(get("model.layers.29.mlp.down_proj.weight").1, vec![576, 1536]);
    assert!(ckpt.tensors.iter().all(|t| t.2.iter().all(|x| x.is_finite())));
    assert_eq!(ckpt.tokenizer_config["eos_token"], "<|im_end|>");
    // Written as an HF directory (kept where RECCOCKTAIL_CONVERT_OUT says, for the Python
    // cross-check in scripts/fixtures/check_smollm2_conversion.py).
    let keep = std::env::var_os("RECCOCKTAIL_CONVERT_OUT").map(PathBuf::from);
    let tmp = tmpdir("real");
    let out = keep.unwrap_or_else(|| tmp.join("hf"));
    let t0 = std::time::Instant::now();
    write_hf_dir(&ckpt, &out).unwrap();
    eprintln!("HF directory written in {:.2?}: {}", t0.elapsed(), out.display());
    let tok = TextTokenizer::from_hf_dir(&out).unwrap();
    assert_eq!((tok.bos_id(), tok.eos_ids()), (Some(1), &[2u32][..]));
    assert_eq!(tok.encode("<|im_start|>user\nThe capital of France is", false).unwrap(), vec![1, 4093, 198, 504, 3575, 282, 4649, 314]);
}
