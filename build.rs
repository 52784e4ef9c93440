//! With the libtorch backend, bake the libtorch folder into the binaries' run path, so that
//! `reccocktail` and the tests run without LD_LIBRARY_PATH.
fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    if std::env::var_os("CARGO_FEATURE_TCH").is_some() {
        if let Ok(libtorch) = std::env::var("LIBTORCH") {
            println!("cargo:rustc-link-arg=-Wl,-rpath,{libtorch}/lib");
        }
    }
}
