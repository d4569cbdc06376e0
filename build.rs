//! Keeps libtorch (and with it libtorch_cuda) linked, and finds it at run time without LD_LIBRARY_PATH.
//!
//! N.B.: the linker drops shared libraries that no symbol of ours uses; libtorch_cuda.so is one of
//! them, and without it `tch::Cuda::is_available()` is always false. This is what tch-rs's own
//! build.rs does for its examples.
//!
//! It also compiles src/train/native (a few libtorch operations tch does not expose) against
//! the same libtorch headers, with the C++ ABI torch-sys uses.
fn main() {
    // sqlx::migrate! embeds the migrations: a new one must rebuild the crate.
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    native();
    if os == "linux" {
        if let Some(lib) = std::env::var_os("DEP_TCH_LIBTORCH_LIB") {
            println!("cargo:rustc-link-arg=-Wl,-rpath={}", lib.to_string_lossy());
        }
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch");
    }
}

/// src/train/native/*.cpp into a static library of ours, against libtorch's headers (beside the
/// library directory torch-sys found) and its ABI (torch-sys's `LIBTORCH_CXX11_ABI`, 1 unless set).
fn native() {
    println!("cargo:rerun-if-changed=src/train/native");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    let lib =
        std::path::PathBuf::from(std::env::var_os("DEP_TCH_LIBTORCH_LIB").expect("torch-sys names libtorch's lib"));
    let include = lib.parent().expect("libtorch's lib has a parent").join("include");
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".into());
    cc::Build::new()
        .cpp(true)
        .file("src/train/native/conv.cpp")
        .file("src/train/native/pool.cpp")
        .file("src/train/native/linear.cpp")
        .file("src/train/native/data.cpp")
        .file("src/train/native/norm.cpp")
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
        .flag("-DGLOG_USE_GLOG_EXPORT")
        // N.B.: data.cpp rounds a product before a difference, as libtorch's two operations do.
        .flag("-ffp-contract=off")
        .warnings(false)
        .compile("trainyard_native");
}
