//! `easel plugin new NAME`: writes a new provider crate from the SDK's template.
//!
//! Self-contained on purpose: the host includes this file with
//! `#[path = "../../sdk/template/scaffold.rs"] mod scaffold;` (adjust the path) and never
//! depends on the wasm-only SDK. The template files are embedded next to it.

use std::io;
use std::path::Path;

const CARGO_TOML: &str = include_str!("Cargo.toml.tmpl");
const LIB_RS: &str = include_str!("src/lib.rs.tmpl");
const GITIGNORE: &str = include_str!("gitignore.tmpl");

/// Creates the plugin crate `name` in the folder `dest` (created if missing; it must be
/// empty if it exists), its `easel-sdk` dependency the checkout at `sdk_path` (the
/// repository's `sdk/` folder: the SDK is not published to a registry). Returns the name of
/// the secret the new plugin reads (its vendor key).
///
/// `name` is the provider id: lower-case ASCII letters, digits and `-`, starting with a
/// letter, at most 64 characters.
pub fn scaffold(name: &str, dest: &Path, sdk_path: &Path) -> io::Result<String> {
    let invalid = |why: &str| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("plugin name `{name}`: {why}"),
        )
    };
    if name.is_empty() || name.len() > 64 {
        return Err(invalid("must be 1 to 64 characters"));
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(invalid("must start with a lower-case letter"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        || name.ends_with('-')
        || name.contains("--")
    {
        // `acme--x` and `acme-x` would share their secret variables (EASEL_PLUGIN_ACME_X__…),
        // so the host takes them for one id.
        return Err(invalid("may hold only a-z, 0-9 and single inner `-`"));
    }
    if dest.exists() && dest.read_dir()?.next().is_some() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} exists and is not empty", dest.display()),
        ));
    }

    let crate_name = name.replace('-', "_");
    let type_name: String = name
        .split('-')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut c = p.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect();
    let secret = format!("{}_API_KEY", crate_name.to_ascii_uppercase());
    let sdk_dependency = {
        let path = sdk_path
            .canonicalize()
            .unwrap_or_else(|_| sdk_path.to_path_buf());
        let text = path.to_string_lossy().replace('\\', "/");
        format!("{{ path = \"{}\" }}", text.replace('"', "\\\""))
    };
    let fill = |template: &str| {
        template
            .replace("{{sdk_dependency}}", &sdk_dependency)
            .replace("{{crate_name}}", &crate_name)
            .replace("{{Type}}", &type_name)
            .replace("{{SECRET}}", &secret)
            .replace("{{name}}", name)
    };

    std::fs::create_dir_all(dest.join("src"))?;
    std::fs::write(dest.join("Cargo.toml"), fill(CARGO_TOML))?;
    std::fs::write(dest.join("src").join("lib.rs"), fill(LIB_RS))?;
    std::fs::write(dest.join(".gitignore"), fill(GITIGNORE))?;
    Ok(secret)
}
