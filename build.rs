//! Keeps libtorch (and with it libtorch_cuda) linked, and finds it at run time without LD_LIBRARY_PATH.
//!
//! N.B.: the linker drops shared libraries that no symbol of ours uses; libtorch_cuda.so is one of
//! them, and without it `tch::Cuda::is_available()` is always false. This is what tch-rs's own
//! build.rs does for its examples.
fn main() {
    // sqlx::migrate! embeds the migrations: a new one must rebuild the crate.
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if os == "linux" {
        if let Some(lib) = std::env::var_os("DEP_TCH_LIBTORCH_LIB") {
            println!("cargo:rustc-link-arg=-Wl,-rpath={}", lib.to_string_lossy());
        }
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch");
    }
}
