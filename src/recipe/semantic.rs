//! Semantic checks on a structurally valid recipe: references between sections, files on disk,
//! templates, and constraints that span several fields. Every problem is collected.

use std::collections::BTreeSet;
use std::path::Path;

use super::diagnostic::{Diagnostic, did_you_mean};
use super::doc::{PathSeg, p};
use super::merge::{MergeSpec, Parameterization};
use super::resolve::{self, BASE_SPIRIT};
use super::same_cocktail;
use super::sweep;
use super::types::*;
use crate::assets::{self, AssetKind, LocalPath};
use crate::backend::DeviceSpec;
use crate::data::loaders;
use crate::prompt::{PromptContext, PromptTemplate};

/// Tokens per training micro-batch (batch_size x max_seq_len) above which `validate` warns.
pub const MICRO_BATCH_TOKEN_BUDGET: u64 = 8192;
/// Resident memory per token of the largest micro-batch when training SmolLM2-135M (30 layers,
/// hidden 576) at a few hundred tokens: the activations kept for the backward pass (norm inputs,
/// q/k/v, the MLP's intermediate vectors, the LoRA side products, dropout masks) and what the
/// allocator keeps of a long run's varied shapes. Measured on the CPU flagship's ingredient (bf16,
/// dropout 0.05, 150 steps of up to 3,716 tokens): a peak of 16.1 GB, 4.1 MiB per token; a 5-step
/// benchmark of the same prompts peaks near half of that (README, "The flagship on a CPU").
const RESIDENT_MIB_PER_TOKEN_135M: f64 = 4.0;

/// A problem and the path of the value it is about (`on_key`: point at the key, not the value).
pub struct Located {
    pub path: Vec<PathSeg>,
    pub on_key: bool,
    pub diagnostic: Diagnostic,
}

struct Checker<'a> {
    recipe: &'a Recipe,
    base_dir: &'a Path,
    out: Vec<Located>,
}

pub fn check(recipe: &Recipe, base_dir: &Path) -> Vec<Located> {
    let mut c = Checker { recipe, base_dir, out: Vec::new() };
    c.experiment();
    c.backbone();
    c.datasets();
    c.domains();
    c.templates();
    c.lora(&p(&[&"lora"]), &recipe.lora);
    c.training(&p(&[&"training"]), &recipe.training);
    c.adapters();
    c.arms();
    c.evaluation();
    c.sweeps();
    c.out
}

impl Checker<'_> {
    fn err(&mut self, path: Vec<PathSeg>, code: &'static str, msg: impl Into<String>, help: Option<String>) {
        self.out.push(Located { path, on_key: false, diagnostic: Diagnostic::new(code, "", msg).help_opt(help) });
    }

    fn err_key(&mut self, path: Vec<PathSeg>, code: &'static str, msg: impl Into<String>, help: Option<String>) {
        self.out.push(Located { path, on_key: true, diagnostic: Diagnostic::new(code, "", msg).help_opt(help) });
    }

    /// `name` must be a key of `known`; `what` names the kind of thing in the message.
    fn reference<'k>(&mut self, path: Vec<PathSeg>, name: &str, what: &str, known: impl Iterator<Item = &'k str> + Clone) -> bool {
        if known.clone().any(|k| k == name) {
            return true;
        }
        let help = did_you_mean(name, known.clone()).or_else(|| {
            let list: Vec<&str> = known.collect();
            Some(if list.is_empty() { format!("no {what} is declared") } else { format!("declared: {}", list.join(", ")) })
        });
        self.err(path, "unknown-reference", format!("unknown {what} `{name}`"), help);
        false
    }

    /// `rel` as the run will open it: anchored at the recipe's directory as the resolved recipe
    /// anchors it ([`LocalPath`]), so the check looks at the file the run reads.
    fn local(&self, rel: &Path) -> LocalPath {
        LocalPath::new(self.base_dir, rel)
    }

    fn file_exists(&mut self, path: Vec<PathSeg>, file: &Path, what: &str) -> bool {
        let full = self.local(file);
        if full.exists() {
            return true;
        }
        self.err(path, "missing-file", format!("{what} `{}` does not exist", file.display()), Some(format!("looked for {} (paths are relative to the recipe file)", full.display())));
        false
    }

    fn positive(&mut self, path: Vec<PathSeg>, x: Option<f64>, what: &str) {
        if let Some(x) = x.filter(|x| *x <= 0.0) {
            self.err(path, "out-of-range", format!("{what} must be greater than 0, found {x}"), None);
        }
    }

    fn experiment(&mut self) {
        let e = &self.recipe.experiment;
        if !e.name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')) || e.name.starts_with('.') {
            self.err(p(&[&"experiment", &"name"]), "invalid-name", format!("experiment name `{}` must use only letters, digits, `_`, `-`, `.` (it names a directory)", e.name), None);
        }
        if let Some(d) = &e.device
            && let Err(msg) = d.parse::<DeviceSpec>() {
            self.err(p(&[&"experiment", &"device"]), "invalid-device", msg, None);
        }
    }

    fn asset_or_path(&mut self, section: Vec<PathSeg>, asset: Option<&str>, path: Option<&Path>, want: &str) -> Option<&'static assets::Asset> {
        match (asset, path) {
            (Some(_), Some(_)) => {
                self.err_key(section, "conflict", "give either `asset` or `path`, not both", None);
                None
            }
            (None, None) => {
                let known: Vec<&str> = assets::ASSETS.iter().filter(|a| kind_name(a.kind) == want).map(|a| a.name).collect();
                self.err_key(section, "missing-key", "missing `asset` or `path`", Some(format!("known {want} assets: {}", known.join(", "))));
                None
            }
            (Some(name), None) => {
                let mut at = section.clone();
                at.push(PathSeg::Key("asset".into()));
                match assets::find(name) {
                    Some(a) if kind_name(a.kind) == want => Some(a),
                    Some(a) => {
                        self.err(at, "wrong-asset", format!("asset `{name}` is a {}, not a {want}", kind_name(a.kind)), None);
                        None
                    }
                    None => {
                        let help = did_you_mean(name, assets::names()).unwrap_or_else(|| format!("known assets: {}", assets::names().collect::<Vec<_>>().join(", ")));
                        self.err(at, "unknown-asset", format!("unknown asset `{name}`"), Some(help));
                        None
                    }
                }
            }
            (None, Some(file)) => {
                let mut at = section;
                at.push(PathSeg::Key("path".into()));
                self.file_exists(at, file, &format!("{want} path"));
                None
            }
        }
    }

    fn backbone(&mut self) {
        let b = &self.recipe.backbone;
        self.asset_or_path(p(&[&"backbone"]), b.asset.as_deref(), b.path.as_deref(), "model");
        if b.dtype == Some(Dtype::F16) && self.recipe.experiment.device.as_deref() == Some("cpu") {
            let help = Some("use `dtype = \"bf16\"` on a CPU (same range as f32, mixed precision), or `auto`".to_string());
            self.err(p(&[&"backbone", &"dtype"]), "unsupported", "`f16` weights are for CUDA devices; this recipe runs on `device = \"cpu\"`", help);
        }
        if b.attention == Some(AttentionDtype::Bf16) && !matches!(b.dtype, Some(Dtype::Bf16 | Dtype::Auto)) {
            let dtype = b.dtype.map_or("f32 (the default)".to_string(), |d| format!("`{}`", serde_name(&d)));
            let help = Some("set `dtype = \"bf16\"` (or `\"auto\"`), or drop `attention`".to_string());
            self.err(p(&[&"backbone", &"attention"]), "conflict", format!("`attention = \"bf16\"` applies to bf16 frozen weights; this backbone's dtype is {dtype}"), help);
        }
    }

    fn datasets(&mut self) {
        for (name, d) in &self.recipe.datasets {
            let at = |k: &str| p(&[&"datasets", name, &k]);
            if let Some(asset) = self.asset_or_path(p(&[&"datasets", name]), d.asset.as_deref(), d.path.as_deref(), "dataset")
                && asset.kind != AssetKind::Dataset(d.format) {
                let AssetKind::Dataset(f) = asset.kind else { unreachable!() };
                self.err(at("format"), "wrong-format", format!("asset `{}` is in format `{}`, not `{}`", asset.name, f.name(), d.format.name()), Some(format!("use format = \"{}\"", f.name())));
            }
            match (d.format, &d.columns) {
                (DatasetFormat::Csv, None) => self.err_key(p(&[&"datasets", name]), "missing-key", "format `csv` needs a `columns` table", None),
                (f, Some(_)) if f != DatasetFormat::Csv => self.err_key(at("columns"), "conflict", "`columns` only applies to format `csv`", None),
                _ => {}
            }
            if d.format == DatasetFormat::BookCrossing && d.order.unwrap_or(Order::Timestamp) == Order::Timestamp {
                self.err_key(p(&[&"datasets", name]), "no-timestamps", "Book-Crossing has no timestamps: sequential splits need `order = \"file\"`", None);
            }
            if let Some(c) = &d.columns {
                if d.order.unwrap_or(Order::Timestamp) == Order::Timestamp && c.timestamp.is_none() {
                    self.err_key(at("columns"), "no-timestamps", "no `timestamp` column: give one, or set `order = \"file\"`", None);
                }
                if c.delimiter.as_ref().is_some_and(|s| s.len() != 1) {
                    self.err(p(&[&"datasets", name, &"columns", &"delimiter"]), "invalid-value", "delimiter must be a single byte", None);
                }
            }
        }
    }

    fn domains(&mut self) {
        for (name, d) in &self.recipe.domains {
            if !self.reference(p(&[&"domains", name, &"dataset"]), &d.dataset, "dataset", self.recipe.datasets.keys().map(String::as_str)) {
                continue;
            }
            if let Some(u) = d.users.as_ref().filter(|u| u.part >= u.parts) {
                self.err(p(&[&"domains", name, &"users", &"part"]), "out-of-range", format!("part {} of {} parts: parts are numbered 0..{}", u.part, u.parts, u.parts), None);
            }
            if let Some(f) = &d.filter {
                self.filter_field(name, &d.dataset, f);
            }
        }
    }

    /// A domain filter must name an item field its dataset's format provides (for `csv`: the
    /// columns of the items file, when it can be read now; the split stage checks it otherwise).
    fn filter_field(&mut self, domain: &str, dataset: &str, f: &ItemFilter) {
        let ds = &self.recipe.datasets[dataset];
        let fields: Vec<String> = match (loaders::item_fields(ds.format), &ds.columns, &ds.path) {
            (Some(known), _, _) => known.iter().map(|s| s.to_string()).collect(),
            (None, Some(columns), Some(path)) => {
                let full = self.local(path).to_path_buf();
                let dir = if full.is_file() { full.parent().map(Path::to_path_buf).unwrap_or_default() } else { full };
                match loaders::csv_item_fields(&dir, columns) {
                    Ok(fields) => fields,
                    Err(_) => return,
                }
            }
            _ => return,
        };
        if fields.contains(&f.field) {
            return;
        }
        let list = fields.join(", ");
        let help = match did_you_mean(&f.field, fields.iter().map(String::as_str)) {
            Some(s) => format!("{s} (item fields: {list})"),
            None if ds.format == DatasetFormat::Recbole => format!("item fields: {list} (RecBole genre fields such as `class` are read as `genres`)"),
            None => format!("item fields: {list}"),
        };
        let msg = format!("dataset `{dataset}` (format `{}`) has no item field `{}`", ds.format.name(), f.field);
        self.err(p(&[&"domains", &domain, &"filter", &"field"]), "unknown-field", msg, Some(help));
    }

    fn templates(&mut self) {
        for (name, t) in &self.recipe.templates {
            let at = p(&[&"templates", name, &"path"]);
            if !self.file_exists(at.clone(), &t.path, "template") {
                continue;
            }
            let result = PromptTemplate::load(&self.local(&t.path)).and_then(|tpl| tpl.render(&PromptContext::sample()));
            if let Err(e) = result {
                self.err(at, "template", e.to_string(), None);
            }
            if t.separator.as_ref().is_some_and(|s| s.trim().is_empty()) {
                self.err(p(&[&"templates", name, &"separator"]), "invalid-value", "separator must not be blank", None);
            }
        }
    }

    fn lora(&mut self, at: &[PathSeg], l: &LoraSpec) {
        let mut path = at.to_vec();
        path.push(PathSeg::Key("alpha".into()));
        self.positive(path, l.alpha, "LoRA alpha");
        if let Some(t) = &l.targets {
            let unique: BTreeSet<_> = t.iter().collect();
            if unique.len() != t.len() {
                let mut path = at.to_vec();
                path.push(PathSeg::Key("targets".into()));
                self.err(path, "duplicate", "a LoRA target is listed twice", None);
            }
        }
    }

    /// Checks one `[training]` table. Micro-batches over [`MICRO_BATCH_TOKEN_BUDGET`] tokens are
    /// warned about (memory), over 2^20 refused.
    fn training(&mut self, at: &[PathSeg], t: &TrainingSpec) {
        let field = |k: &str| {
            let mut path = at.to_vec();
            path.push(PathSeg::Key(k.into()));
            path
        };
        self.positive(field("lr"), t.lr, "learning rate");
        if t.batching == Some(Batching::Pack) {
            let help = Some("use `batching = \"length\"` (batches of similar length, little padding)".to_string());
            self.err(field("batching"), "unsupported", "`batching = \"pack\"` is not implemented: the trainer has no block-diagonal attention over packed rows", help);
        }
        if t.select_users.is_some() && t.select_by == Some(SelectBy::Loss) {
            let help = Some("set `select_by = \"mrr\"` to choose checkpoints on ranked validation users, or remove `select_users`".to_string());
            self.err(field("select_users"), "no-effect", "`select_users` counts the validation users ranked by `select_by = \"mrr\"`; with `select_by = \"loss\"` none are ranked", help);
        }
        if let Some(b) = t.betas
            && b.iter().any(|x| !(0.0..1.0).contains(x)) {
            self.err(field("betas"), "out-of-range", "AdamW betas must be in [0, 1)", None);
        }
        if let (Some(batch), Some(len)) = (t.batch_size, t.max_seq_len) {
            let tokens = batch as u64 * len as u64;
            if tokens > 1 << 20 {
                self.err(field("batch_size"), "too-large", format!("batch_size x max_seq_len = {tokens} tokens per micro-batch; use grad_accum instead"), None);
            } else if tokens > MICRO_BATCH_TOKEN_BUDGET {
                let gib = tokens as f64 * RESIDENT_MIB_PER_TOKEN_135M / 1024.0;
                let msg = format!("batch_size x max_seq_len = {tokens} tokens per micro-batch, over the {MICRO_BATCH_TOKEN_BUDGET} this tool plans for: the memory a training step holds grows with it (about {gib:.0} GiB resident for a 135M-parameter model, more for larger ones) and may not fit");
                let help = format!("lower batch_size (or max_seq_len) and raise grad_accum to keep the effective batch: e.g. batch_size = {}, grad_accum = {}", (MICRO_BATCH_TOKEN_BUDGET / len as u64).max(1), (tokens / MICRO_BATCH_TOKEN_BUDGET).max(1) + 1);
                self.out.push(Located { path: field("batch_size"), on_key: false, diagnostic: Diagnostic::new("memory-heavy", "", msg).help_opt(Some(help)).warning() });
            }
        }
    }

    fn adapters(&mut self) {
        let r = self.recipe;
        if r.base_spirit.is_none() && r.ingredients.is_empty() && !r.arms.is_empty() {
            self.err_key(p(&[&"arms"]), "missing-key", "arms merge adapters, but neither `base_spirit` nor `ingredients` is declared", None);
        }
        let mut all: Vec<(Vec<PathSeg>, &AdapterSpec, bool)> = Vec::new();
        if let Some(b) = &r.base_spirit {
            all.push((p(&[&"base_spirit"]), b, false));
        }
        for (name, a) in &r.ingredients {
            if resolve::RESERVED_NAMES.contains(&name.as_str()) {
                self.err_key(p(&[&"ingredients", name]), "reserved-name", format!("`{name}` is a reserved name"), None);
            }
            all.push((p(&[&"ingredients", name]), a, true));
        }
        for (at, a, is_ingredient) in all {
            let sub = |k: &str| {
                let mut path = at.clone();
                path.push(PathSeg::Key(k.into()));
                path
            };
            if is_ingredient && a.domains.len() != 1 {
                self.err(sub("domains"), "ingredient-domains", format!("an ingredient is trained on exactly one domain, found {}", a.domains.len()), Some("put mixtures in `base_spirit`".into()));
            }
            for (i, d) in a.domains.iter().enumerate() {
                let mut path = sub("domains");
                path.push(PathSeg::Index(i));
                self.reference(path, d, "domain", r.domains.keys().map(String::as_str));
            }
            self.reference(sub("template"), &a.template, "template", r.templates.keys().map(String::as_str));
            if let Some(pre) = &a.pretrained
                && self.file_exists(sub("pretrained"), pre, "pretrained adapter") && !self.local(pre).join("adapter_config.json").exists() {
                self.err(sub("pretrained"), "not-an-adapter", format!("`{}` has no adapter_config.json (expected a PEFT adapter directory)", pre.display()), None);
            }
            if is_ingredient {
                for (key, set) in [("mixture", a.mixture.is_some()), ("target_overlap", a.target_overlap.is_some())] {
                    if set {
                        self.err_key(sub(key), "conflict", format!("`{key}` applies to the base spirit only (an ingredient has one domain)"), None);
                    }
                }
            } else {
                self.mixture(&sub("mixture"), a);
                self.target_overlap(a);
            }
            if let Some(l) = &a.lora {
                self.lora(&sub("lora"), l);
            }
            if let Some(t) = &a.training {
                self.training(&sub("training"), t);
            }
        }
    }

    /// Mixture weights: one per domain of the base spirit, each greater than 0.
    fn mixture(&mut self, at: &[PathSeg], a: &AdapterSpec) {
        let Some(m) = &a.mixture else { return };
        for (domain, w) in m {
            let mut path = at.to_vec();
            path.push(PathSeg::Key(domain.clone()));
            if !a.domains.contains(domain) {
                let help = did_you_mean(domain, a.domains.iter().map(String::as_str)).unwrap_or_else(|| format!("the base spirit's domains: {}", a.domains.join(", ")));
                self.err_key(path, "mixture-domain", format!("`{domain}` is not one of the base spirit's domains"), Some(help));
            } else if *w <= 0.0 {
                self.err(path, "out-of-range", format!("a mixture weight must be greater than 0, found {w}"), Some("drop the domain from `domains` instead".into()));
            }
        }
        let missing: Vec<&str> = a.domains.iter().filter(|d| !m.contains_key(*d)).map(String::as_str).collect();
        if !missing.is_empty() {
            self.err(at.to_vec(), "mixture-domain", format!("no mixture weight for domain{} {}", plural(missing.len()), missing.iter().map(|d| format!("`{d}`")).collect::<Vec<_>>().join(", ")), Some("give every domain of `domains` a weight".into()));
        }
    }

    /// The base spirit should not train on an ingredient's target domain (the paper excludes it).
    fn target_overlap(&mut self, a: &AdapterSpec) {
        let r = self.recipe;
        let policy = a.target_overlap.unwrap_or(TargetOverlap::Warn);
        if policy == TargetOverlap::Allow {
            return;
        }
        for (i, d) in a.domains.iter().enumerate() {
            let Some(dd) = r.domains.get(d) else { continue };
            for (ing, spec) in &r.ingredients {
                let Some(t) = spec.domains.first() else { continue };
                let Some(td) = r.domains.get(t) else { continue };
                let how = if d == t {
                    format!("domain `{d}`")
                } else if dd.dataset == td.dataset && same_filter(dd.filter.as_ref(), td.filter.as_ref()) {
                    format!("domain `{d}`, the same slice of `{}` as `{t}`", dd.dataset)
                } else if dd.dataset == td.dataset && dd.filter.is_none() {
                    format!("domain `{d}`, the whole dataset `{}` that `{t}` is a slice of", dd.dataset)
                } else {
                    continue;
                };
                let msg = format!("the base spirit trains on {how}: the target domain of ingredient `{ing}`");
                let help = Some(match policy {
                    TargetOverlap::Error => "remove it from the base spirit's domains".to_string(),
                    _ => "the paper's base spirit never sees the target domain; remove it, or say `target_overlap = \"allow\"` if intended".to_string(),
                });
                let mut path = p(&[&"base_spirit", &"domains"]);
                path.push(PathSeg::Index(i));
                let diagnostic = Diagnostic::new("target-overlap", "", msg).help_opt(help);
                let diagnostic = if policy == TargetOverlap::Warn { diagnostic.warning() } else { diagnostic };
                self.out.push(Located { path, on_key: false, diagnostic });
            }
        }
    }

    fn arm_adapters(&mut self, i: usize, arm: &Arm) -> Option<Vec<String>> {
        match resolve::arm_adapters(self.recipe, arm) {
            Ok(list) => Some(list),
            Err(msg) => {
                self.err_key(p(&[&"arms", &i]), "arm-adapters", msg, Some("list them: adapters = [\"base_spirit\", \"<ingredient>\"]".into()));
                None
            }
        }
    }

    fn arms(&mut self) {
        let r = self.recipe;
        let mut seen = BTreeSet::new();
        for (i, arm) in r.arms.iter().enumerate() {
            let at = |k: &str| p(&[&"arms", &i, &k]);
            if !seen.insert(arm.name.as_str()) {
                self.err(at("name"), "duplicate", format!("arm name `{}` is used twice", arm.name), None);
            }
            if resolve::RESERVED_NAMES.contains(&arm.name.as_str()) {
                self.err(at("name"), "reserved-name", format!("`{}` is a reserved name (used for the non-merged rows)", arm.name), None);
            }
            if let Some(list) = &arm.adapters {
                let known: Vec<&str> = r.base_spirit.iter().map(|_| BASE_SPIRIT).chain(r.ingredients.keys().map(String::as_str)).collect();
                let mut uniq = BTreeSet::new();
                for (j, a) in list.iter().enumerate() {
                    self.reference(p(&[&"arms", &i, &"adapters", &j]), a, "adapter", known.iter().copied());
                    if !uniq.insert(a) {
                        self.err(p(&[&"arms", &i, &"adapters", &j]), "duplicate", format!("adapter `{a}` is listed twice"), None);
                    }
                }
                if list.is_empty() {
                    self.err(at("adapters"), "too-few", "an arm merges at least one adapter", None);
                }
            }
            let Some(adapters) = self.arm_adapters(i, arm) else { continue };
            self.merge_params(i, &arm.merge, adapters.len());
        }
    }

    fn merge_params(&mut self, i: usize, m: &MergeSpec, n_adapters: usize) {
        let at = |k: &str| p(&[&"arms", &i, &"merge", &k]);
        for (field, len) in m.weight_lists() {
            if len != n_adapters {
                self.err(at(field), "weights-count", format!("`{field}` has {len} value{}, but the arm merges {n_adapters} adapter{}", plural(len), plural(n_adapters)), None);
            }
        }
        if let MergeSpec::Entropy { parameterization, init, lr, lr_grid, temperature, .. } = m {
            self.positive(at("lr"), *lr, "learning rate");
            self.positive(at("temperature"), *temperature, "temperature");
            if let Some(grid) = lr_grid {
                if grid.is_empty() {
                    self.err(at("lr_grid"), "too-few", "lr_grid must not be empty", None);
                }
                if grid.iter().any(|x| *x <= 0.0) {
                    self.err(at("lr_grid"), "out-of-range", "learning rates must be greater than 0", None);
                }
            }
            if let Some(init) = init {
                let softmax = parameterization.unwrap_or(Parameterization::Softmax) == Parameterization::Softmax;
                if softmax && init.iter().any(|w| *w <= 0.0) {
                    self.err(at("init"), "out-of-range", "softmax initial weights must be greater than 0", None);
                } else if !softmax && init.iter().any(|w| !(0.0..=1.0).contains(w)) {
                    self.err(at("init"), "out-of-range", "clamp initial weights must be in [0, 1]", None);
                }
            }
        }
        if let MergeSpec::Dare { drop_rate: Some(d), .. } = m
            && *d >= 1.0 {
            self.err(at("drop_rate"), "out-of-range", "drop_rate must be below 1", None);
        }
    }

    fn evaluation(&mut self) {
        let r = self.recipe;
        let e = &r.evaluation;
        let at = |k: &str| p(&[&"evaluation", &k]);
        self.reference(at("template"), &e.template, "template", r.templates.keys().map(String::as_str));
        let candidates = resolve::candidates(r);
        if let Some(ks) = &e.k {
            for (j, k) in ks.iter().enumerate() {
                if *k == 0 || *k > candidates {
                    self.err(p(&[&"evaluation", &"k", &j]), "out-of-range", format!("K = {k} must be between 1 and the number of candidates ({candidates})"), None);
                }
            }
        }
        let protocol = e.protocol.as_ref().map_or(Protocol::Likelihood, ProtocolSpec::kind);
        if let Some(ms) = &e.metrics
            && protocol == Protocol::Likelihood
            && let Some(j) = ms.iter().position(|m| *m == Metric::ValidRatio) {
            self.err(p(&[&"evaluation", &"metrics", &j]), "metric-protocol", "valid_ratio needs protocol = { kind = \"generate\" } (likelihood ranking never produces invalid items)", None);
        }
        if let Some(pairs) = &e.compare {
            let mut known: Vec<&str> = r.arms.iter().map(|a| a.name.as_str()).collect();
            known.extend(["backbone", "popularity", "markov", "itemknn", "sasrec"]);
            for (i, pair) in pairs.iter().enumerate() {
                for (j, name) in pair.iter().enumerate() {
                    if !known.contains(&name.as_str()) {
                        let help = did_you_mean(name, known.iter().copied()).unwrap_or_else(|| format!("known: {}", known.join(", ")));
                        self.err(p(&[&"evaluation", &"compare", &i, &j]), "unknown-arm", format!("unknown arm `{name}` (random has no per-user outcomes to compare)"), Some(help));
                    }
                }
                if pair[0] == pair[1] {
                    self.err(p(&[&"evaluation", &"compare", &i]), "conflict", format!("`{}` compared with itself", pair[0]), None);
                }
            }
        }
        if let Some(sr) = &e.sasrec {
            if !e.baselines.as_ref().is_some_and(|b| b.contains(&Baseline::Sasrec)) {
                self.err_key(at("sasrec"), "unused", "`evaluation.sasrec` is set, but `evaluation.baselines` does not list `sasrec`", Some("add \"sasrec\" to evaluation.baselines, or remove [evaluation.sasrec]".into()));
            }
            let (hidden, heads) = (sr.hidden.unwrap_or(50), sr.heads.unwrap_or(1));
            if hidden % heads != 0 {
                let path = if sr.heads.is_some() { p(&[&"evaluation", &"sasrec", &"heads"]) } else { p(&[&"evaluation", &"sasrec", &"hidden"]) };
                self.err(path, "sasrec-heads", format!("{heads} attention heads do not divide hidden width {hidden}"), None);
            }
        }
        if e.settings.is_empty() {
            self.err_key(at("settings"), "too-few", "declare at least one evaluation setting (e.g. warm and cold)", None);
        }
        for (name, s) in &e.settings {
            let sat = |k: &str| p(&[&"evaluation", &"settings", name, &k]);
            if !self.reference(sat("domain"), &s.domain, "domain", r.domains.keys().map(String::as_str)) {
                continue;
            }
            if s.max_history.is_some() && s.users != UserSelection::ShortHistory {
                self.err_key(sat("max_history"), "conflict", "`max_history` applies to users = \"short_history\" only", None);
            }
            match &s.ingredient {
                Some(ing) => {
                    if self.reference(sat("ingredient"), ing, "ingredient", r.ingredients.keys().map(String::as_str))
                        && !r.ingredients[ing].domains.contains(&s.domain)
                    {
                        self.err(sat("ingredient"), "ingredient-domain", format!("ingredient `{ing}` is not trained on domain `{}`", s.domain), None);
                    }
                }
                None => {
                    if let Err(msg) = resolve::setting_ingredient(r, s) {
                        self.err_key(p(&[&"evaluation", &"settings", name]), "setting-ingredient", msg, Some("name it with `ingredient = \"...\"`".into()));
                    }
                }
            }
        }
    }

    /// Two arms that are one cocktail evaluated twice: a warning at the later one.
    fn same_cocktails(&mut self) {
        let r = self.recipe;
        for same in same_cocktail::same_cocktails(r) {
            let path = match r.sweep.iter().position(|s| same.second_swept && s.arm == same.second_base) {
                Some(i) => p(&[&"sweep", &i, &"grid"]),
                None => p(&[&"arms", &r.arms.iter().position(|a| a.name == same.second_base).unwrap_or(0), &"merge"]),
            };
            let weights: Vec<String> = same.weights.iter().map(|(a, w)| format!("{a} {w}")).collect();
            let msg = format!("arms `{}` and `{}` are the same cocktail ({}): `fixed` and `task_arithmetic` merge with one linear kernel, so it is evaluated twice", same.first, same.second, weights.join(", "));
            let help = "drop one of them, or give one other weights".to_string();
            self.out.push(Located { path, on_key: true, diagnostic: Diagnostic::new("same-cocktail", "", msg).help_opt(Some(help)).warning() });
        }
    }

    fn sweeps(&mut self) {
        let r = self.recipe;
        let mut swept = BTreeSet::new();
        for (i, s) in r.sweep.iter().enumerate() {
            let at = |k: &str| p(&[&"sweep", &i, &k]);
            if !self.reference(at("arm"), &s.arm, "arm", r.arms.iter().map(|a| a.name.as_str())) {
                continue;
            }
            if !swept.insert(s.arm.as_str()) {
                self.err(at("arm"), "duplicate", format!("arm `{}` is swept twice; put both parameters in one grid", s.arm), None);
                continue;
            }
            if s.grid.is_empty() {
                self.err_key(at("grid"), "too-few", "the grid is empty", None);
                continue;
            }
            let arm = r.arms.iter().find(|a| a.name == s.arm).expect("checked above");
            for (key, values) in &s.grid {
                let kat = p(&[&"sweep", &i, &"grid", key]);
                if values.is_empty() {
                    self.err(kat, "too-few", format!("`{key}` has no values"), None);
                    continue;
                }
                for v in values {
                    if let Err(msg) = sweep::apply(arm, key, v) {
                        self.err_key(kat.clone(), "sweep-parameter", msg, None);
                        break;
                    }
                }
            }
            let points: usize = s.grid.values().map(Vec::len).product();
            if points > sweep::MAX_POINTS {
                self.err_key(at("grid"), "too-large", format!("the grid has {points} points (at most {})", sweep::MAX_POINTS), None);
            }
        }
        self.same_cocktails();
        // Expanded arms must still be valid arms (e.g. weights matching adapters).
        if let Ok(arms) = sweep::expand(r) {
            for arm in arms.iter().filter(|a| a.sweep_point.is_some()) {
                let idx = r.sweep.iter().position(|s| s.arm == arm.base_name).unwrap_or(0);
                if let Ok(adapters) = resolve::arm_adapters(r, &arm.arm) {
                    for (field, len) in arm.arm.merge.weight_lists() {
                        if len != adapters.len() {
                            self.err_key(p(&[&"sweep", &idx, &"grid"]), "weights-count", format!("sweep point `{}`: `{field}` has {len} values for {} adapters", arm.arm.name, adapters.len()), None);
                        }
                    }
                }
            }
        }
    }
}

/// Two domain filters select the same items (same field, same set of values).
fn same_filter(a: Option<&ItemFilter>, b: Option<&ItemFilter>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => a.field == b.field && a.any_of.iter().collect::<BTreeSet<_>>() == b.any_of.iter().collect::<BTreeSet<_>>(),
        _ => false,
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn kind_name(k: AssetKind) -> &'static str {
    match k {
        AssetKind::Model => "model",
        AssetKind::Dataset(_) => "dataset",
    }
}
