//! What `/proc/cpuinfo` says of this machine's first processor: its model name, its signature
//! (vendor, family, model, stepping) and its flags. `None` (or no flags) where the system does not
//! say, as on a non-Linux host.

/// The processor's model name, e.g. "AMD EPYC".
pub fn model_name() -> Option<String> {
    field(&read()?, "model name")
}

/// "GenuineIntel family 6 model 143 stepping 8": which processor this is, beyond a model name
/// that several kinds share.
pub fn signature() -> Option<String> {
    signature_of(&read()?)
}

/// The first processor's flags (`avx512_bf16`, `amx_bf16`, ...).
pub fn flags() -> Vec<String> {
    read().and_then(|info| field(&info, "flags")).map(|f| f.split_whitespace().map(str::to_string).collect()).unwrap_or_default()
}

fn read() -> Option<String> {
    std::fs::read_to_string("/proc/cpuinfo").ok()
}

fn signature_of(cpuinfo: &str) -> Option<String> {
    let field = |key| field(cpuinfo, key);
    Some(format!("{} family {} model {} stepping {}", field("vendor_id")?, field("cpu family")?, field("model")?, field("stepping").unwrap_or_else(|| "?".into())))
}

/// A field of the first processor's block (`key` matched whole).
fn field(cpuinfo: &str, key: &str) -> Option<String> {
    cpuinfo.lines().take_while(|l| !l.trim().is_empty()).find_map(|l| l.split_once(':').filter(|(k, _)| k.trim() == key).map(|(_, v)| v.trim().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_of_the_first_processor() {
        let info = "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 17\nmodel name\t: AMD EPYC\nstepping\t: 1\nflags\t\t: fpu avx512_bf16\n\nprocessor\t: 1\nvendor_id\t: Other\n";
        assert_eq!(signature_of(info).as_deref(), Some("AuthenticAMD family 25 model 17 stepping 1"));
        assert_eq!(signature_of("processor\t: 0\nmodel name\t: x\n"), None);
        assert_eq!(field(info, "model name").as_deref(), Some("AMD EPYC"));
        assert_eq!(field(info, "flags").as_deref(), Some("fpu avx512_bf16"));
        assert_eq!(field(info, "model").as_deref(), Some("17"), "a key is matched whole, not as a prefix of `model name`");
    }
}
