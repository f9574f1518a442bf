//! The template scaffolder, checked natively; building the result for wasm32-wasip2 is
//! done by hand (see README), since it needs the target installed.

#[path = "../template/scaffold.rs"]
mod scaffold;

#[test]
fn scaffolds_a_crate_with_every_placeholder_filled() {
    let dir = std::env::temp_dir().join(format!("easel-scaffold-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let sdk = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    scaffold::scaffold("my-vendor2", &dir, sdk).unwrap();
    let cargo = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
    let lib = std::fs::read_to_string(dir.join("src/lib.rs")).unwrap();
    assert!(cargo.contains("name = \"my-vendor2\""));
    assert!(cargo.contains("easel-sdk = { path = \""));
    assert!(lib.contains("pub struct MyVendor2;"));
    assert!(lib.contains("\"MY_VENDOR2_API_KEY\""));
    assert!(lib.contains("my_vendor2.wasm"));
    assert!(!cargo.contains("{{") && !lib.contains("{{"));
    // Not twice into the same folder; bad names refused.
    assert!(scaffold::scaffold("my-vendor2", &dir, sdk).is_err());
    for bad in ["", "Caps", "9lives", "under_score", "trailing-", "sp ace", "two--dashes"] {
        assert!(scaffold::scaffold(bad, &dir.join("x"), sdk).is_err(), "{bad}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
