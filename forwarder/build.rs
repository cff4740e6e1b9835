//! Compiles the XDP program of the `afxdp` port backend (`xdp/vipa_xdp.c`)
//! with clang into `$OUT_DIR/vipa_xdp.o`, which `port::afxdp` embeds.
//!
//! Needs clang with the BPF target and the kernel's UAPI headers plus
//! libbpf's `bpf_helpers.h` (Debian: `apt-get install clang libbpf-dev
//! linux-libc-dev`; `scripts/test` installs them). `CLANG` picks another
//! clang binary.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=xdp/vipa_xdp.c");
    println!("cargo:rerun-if-env-changed=CLANG");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux") {
        return;
    }
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let obj = out.join("vipa_xdp.o");
    let clang = std::env::var("CLANG").unwrap_or_else(|_| "clang".to_owned());
    // `asm/types.h` lives under the multiarch directory on Debian; with
    // `-target bpf` clang does not look there by itself.
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let multiarch = match arch.as_str() {
        "x86_64" => "x86_64-linux-gnu",
        "aarch64" => "aarch64-linux-gnu",
        "arm" => "arm-linux-gnueabihf",
        "riscv64" => "riscv64-linux-gnu",
        "powerpc64" => "powerpc64le-linux-gnu",
        "s390x" => "s390x-linux-gnu",
        other => other,
    };
    let result = Command::new(&clang)
        .args(["-O2", "-g", "-Wall", "-Werror", "-target", "bpf"])
        .arg(format!("-I/usr/include/{multiarch}"))
        .args(["-c", "xdp/vipa_xdp.c", "-o"])
        .arg(&obj)
        .output();
    match result {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "\n\nthe afxdp port backend needs clang to compile its XDP program (xdp/vipa_xdp.c), \
             and `{clang}` was not found: install it (Debian: `apt-get install clang libbpf-dev`, \
             or run `bash scripts/test`, which installs it), or point the CLANG environment \
             variable at a clang binary\n\n"
        ),
        Err(e) => panic!("\n\ncannot run `{clang}` to compile xdp/vipa_xdp.c: {e}\n\n"),
        Ok(o) if !o.status.success() => panic!(
            "\n\n`{clang}` failed to compile the XDP program xdp/vipa_xdp.c:\n{}\nit needs the BPF \
             target and the headers linux/bpf.h and bpf/bpf_helpers.h (Debian: `apt-get install \
             clang libbpf-dev linux-libc-dev`)\n\n",
            String::from_utf8_lossy(&o.stderr)
        ),
        Ok(_) => {}
    }
}
