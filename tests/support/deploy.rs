//! The reference deployment in `deploy/`, read the way systemd reads it, so that the fleet
//! test starts every role with the very command and environment the README documents: a
//! role's unit (`deploy/easel-<role>.service`) gives the command (`ExecStart`) and names its
//! environment file (`EnvironmentFile`), and `deploy/<role>.toml` files are the `easel.toml`
//! the env files point at.
//!
//! Values that only make sense on a real site (addresses, secrets, paths) are replaced by the
//! test's own; [`Role::env`] refuses a replacement for a variable the file does not set, so a
//! renamed variable breaks the test instead of drifting from it.

use std::path::PathBuf;

fn deploy_dir() -> PathBuf {
    crate::checkout().join("deploy")
}

/// One role of the deployment: its `easel` arguments and its environment file.
#[derive(Debug, Clone)]
pub struct Role {
    /// The arguments after the `easel` binary (`["worker", "--providers", "local"]`).
    pub args: Vec<String>,
    /// `NAME=value` pairs of its environment file, in order.
    vars: Vec<(String, String)>,
}

/// Reads `deploy/easel-<role>.service` and the environment file it names (installed as
/// `/etc/easel/<file>`, kept in the checkout as `deploy/<file>`).
pub fn role(name: &str) -> Role {
    let unit_path = deploy_dir().join(format!("easel-{name}.service"));
    let unit = std::fs::read_to_string(&unit_path)
        .unwrap_or_else(|error| panic!("{}: {error}", unit_path.display()));
    let setting = |key: &str| {
        unit.lines()
            .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
            .unwrap_or_else(|| panic!("{} has no {key}=", unit_path.display()))
            .trim()
            .to_string()
    };
    let exec = setting("ExecStart");
    let mut words = exec.split_whitespace();
    let binary = words.next().unwrap_or_default();
    assert!(
        binary.ends_with("/easel"),
        "{}: ExecStart runs {binary}, not easel",
        unit_path.display()
    );
    let args = words.map(str::to_string).collect();
    let installed = setting("EnvironmentFile");
    let file = installed.strip_prefix("/etc/easel/").unwrap_or_else(|| {
        panic!(
            "{}: EnvironmentFile outside /etc/easel",
            unit_path.display()
        )
    });
    let env_path = deploy_dir().join(file);
    let text = std::fs::read_to_string(&env_path)
        .unwrap_or_else(|error| panic!("{}: {error}", env_path.display()));
    let vars = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let (name, value) = line
                .split_once('=')
                .unwrap_or_else(|| panic!("{}: {line:?} is not NAME=value", env_path.display()));
            (name.to_string(), value.to_string())
        })
        .collect();
    Role { args, vars }
}

impl Role {
    /// The file's value of `name`.
    pub fn value(&self, name: &str) -> &str {
        self.vars
            .iter()
            .find(|(set, _)| set == name)
            .map(|(_, value)| value.as_str())
            .unwrap_or_else(|| panic!("the role's environment file does not set {name}"))
    }

    /// The environment with each `site` value in place of the file's (`None`: left out, for
    /// the harness to set); every other variable as written.
    pub fn env(&self, site: &[(&str, Option<&str>)]) -> Vec<(String, String)> {
        for (name, _) in site {
            self.value(name);
        }
        self.vars
            .iter()
            .filter_map(
                |(name, value)| match site.iter().find(|(set, _)| set == name) {
                    Some((_, Some(replaced))) => Some((name.clone(), replaced.to_string())),
                    Some((_, None)) => None,
                    None => Some((name.clone(), value.clone())),
                },
            )
            .collect()
    }
}

/// `deploy/<name>.toml`, parsed.
pub fn config(name: &str) -> toml::Table {
    let path = deploy_dir().join(format!("{name}.toml"));
    std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("{}: {error}", path.display()))
        .parse()
        .unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}
