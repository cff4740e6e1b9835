//! Compiles the generator's XDP program (`xdp/pktgen.c`) with clang into
//! `$OUT_DIR/pktgen.o`, which `packet_gen` embeds. Needs what the forwarder's
//! XDP program needs: clang with the BPF target, the kernel's UAPI headers and
//! libbpf's `bpf_helpers.h` (Debian: `apt-get install clang libbpf-dev
//! linux-libc-dev`). `CLANG` picks another clang binary.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=xdp/pktgen.c");
    println!("cargo:rerun-if-env-changed=CLANG");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux") {
        return;
    }
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let clang = std::env::var("CLANG").unwrap_or_else(|_| "clang".to_owned());
    let multiarch = match std::env::var("CARGO_CFG_TARGET_ARCH")
        .unwrap_or_default()
        .as_str()
    {
        "x86_64" => "x86_64-linux-gnu".to_owned(),
        "aarch64" => "aarch64-linux-gnu".to_owned(),
        "arm" => "arm-linux-gnueabihf".to_owned(),
        "riscv64" => "riscv64-linux-gnu".to_owned(),
        "powerpc64" => "powerpc64le-linux-gnu".to_owned(),
        "s390x" => "s390x-linux-gnu".to_owned(),
        other => other.to_owned(),
    };
    let o = Command::new(&clang)
        .args(["-O2", "-g", "-Wall", "-Werror", "-target", "bpf"])
        .arg(format!("-I/usr/include/{multiarch}"))
        .args(["-c", "xdp/pktgen.c", "-o"])
        .arg(out.join("pktgen.o"))
        .output()
        .unwrap_or_else(|e| {
            panic!("\n\ncannot run `{clang}` to compile xdp/pktgen.c ({e}): install clang and libbpf-dev (or run `bash scripts/test`), or point CLANG at a clang binary\n\n")
        });
    assert!(
        o.status.success(),
        "\n\n`{clang}` failed to compile xdp/pktgen.c:\n{}\nit needs the BPF target and linux/bpf.h, bpf/bpf_helpers.h (Debian: `apt-get install clang libbpf-dev linux-libc-dev`)\n\n",
        String::from_utf8_lossy(&o.stderr)
    );
}
