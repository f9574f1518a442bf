//! Rebuilds the host when a migration changes: `sqlx::migrate!` embeds the migrations folder
//! while compiling, and cargo does not know it reads it.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
