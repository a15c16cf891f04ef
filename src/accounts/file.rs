//! `HUB_ACCOUNTS_FILE`: the named accounts, each with the NAMES of the environment variables
//! that hold its key and secret (the file itself never holds a secret, so it can be committed).
//!
//! ```toml
//! [[account]]
//! name = "alpha"
//! key_env = "ALPHA_KEY"
//! secret_env = "ALPHA_SECRET"
//! # optional, default COINDCX_WS_URL / COINDCX_API_URL (a test exchange, a regional endpoint)
//! ws_url = "wss://stream.coindcx.com"
//! api_url = "https://api.coindcx.com"
//! ```

use serde::Deserialize;

/// One account as the hub runs it: its name and the credentials read from the environment.
#[derive(Clone, PartialEq, Eq)]
pub struct AccountCreds {
    pub name: String,
    pub key: String,
    pub secret: String,
    /// This account's stream and REST base when they differ from `COINDCX_WS_URL`/`_API_URL`.
    pub ws_url: Option<String>,
    pub api_url: Option<String>,
}

/// Shows everything but the secret.
impl std::fmt::Debug for AccountCreds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountCreds")
            .field("name", &self.name)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountsFileError {
    #[error("cannot read {path}: {message}")]
    Read { path: String, message: String },
    #[error("{path} is not a valid accounts file: {message}")]
    Parse { path: String, message: String },
    #[error("{path} lists no [[account]]")]
    Empty { path: String },
    #[error("account name {name:?} must be 1-32 characters of a-z, A-Z, 0-9, '-' or '_'")]
    BadName { name: String },
    #[error("account {name:?}: {field} {value:?} is not an http(s):// or ws(s):// URL")]
    BadUrl {
        name: String,
        field: &'static str,
        value: String,
    },
    #[error("account {name:?} is listed twice")]
    Duplicate { name: String },
    #[error("account {name:?}: environment variable {var} (its {what}) is empty or unset")]
    MissingCredential {
        name: String,
        var: String,
        what: &'static str,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDoc {
    #[serde(default)]
    account: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: String,
    key_env: String,
    secret_env: String,
    ws_url: Option<String>,
    api_url: Option<String>,
}

/// A name that is safe in a query string, a metric label and a JSON key as it is.
pub fn valid_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Reads the file at `path` and resolves every account's credentials through `env`, in the
/// file's order (the first one is the default for clients that name none).
pub fn load(
    path: &str,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Vec<AccountCreds>, AccountsFileError> {
    let text = std::fs::read_to_string(path).map_err(|e| AccountsFileError::Read {
        path: path.into(),
        message: e.to_string(),
    })?;
    parse(path, &text, env)
}

/// [`load`] on text already read (`path` only names it in errors).
pub fn parse(
    path: &str,
    text: &str,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Vec<AccountCreds>, AccountsFileError> {
    let doc: FileDoc = toml::from_str(text).map_err(|e| AccountsFileError::Parse {
        path: path.into(),
        message: e.message().to_string(),
    })?;
    if doc.account.is_empty() {
        return Err(AccountsFileError::Empty { path: path.into() });
    }
    let mut out: Vec<AccountCreds> = Vec::new();
    for entry in doc.account {
        if !valid_name(&entry.name) {
            return Err(AccountsFileError::BadName { name: entry.name });
        }
        if out.iter().any(|a| a.name == entry.name) {
            return Err(AccountsFileError::Duplicate { name: entry.name });
        }
        let read = |var: &str, what: &'static str| {
            env(var)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
                .ok_or_else(|| AccountsFileError::MissingCredential {
                    name: entry.name.clone(),
                    var: var.to_string(),
                    what,
                })
        };
        for (field, value) in [("ws_url", &entry.ws_url), ("api_url", &entry.api_url)] {
            if let Some(value) = value {
                let ok = url::Url::parse(value).is_ok_and(|u| {
                    matches!(u.scheme(), "http" | "https" | "ws" | "wss") && u.has_host()
                });
                if !ok {
                    return Err(AccountsFileError::BadUrl {
                        name: entry.name.clone(),
                        field,
                        value: value.clone(),
                    });
                }
            }
        }
        let key = read(&entry.key_env, "key")?;
        let secret = read(&entry.secret_env, "secret")?;
        out.push(AccountCreds {
            name: entry.name,
            key,
            secret,
            ws_url: entry.ws_url,
            api_url: entry.api_url,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO: &str = r#"
[[account]]
name = "alpha"
key_env = "A_KEY"
secret_env = "A_SECRET"

[[account]]
name = "beta-2"
key_env = "B_KEY"
secret_env = "B_SECRET"
"#;

    fn env(k: &str) -> Option<String> {
        match k {
            "A_KEY" => Some("ka".into()),
            "A_SECRET" => Some("sa".into()),
            "B_KEY" => Some("kb".into()),
            "B_SECRET" => Some("sb".into()),
            _ => None,
        }
    }

    #[test]
    fn two_accounts_in_file_order() {
        let accounts = parse("f", TWO, env).unwrap();
        let names: Vec<_> = accounts.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["alpha", "beta-2"]);
        assert_eq!(
            (accounts[1].key.as_str(), accounts[1].secret.as_str()),
            ("kb", "sb")
        );
        assert!(
            !format!("{:?}", accounts[0]).contains("sa"),
            "Debug hides the secret"
        );
    }

    #[test]
    fn refusals_name_what_is_wrong() {
        let missing = parse("f", TWO, |k| env(k).filter(|_| k != "B_SECRET")).unwrap_err();
        assert_eq!(
            missing.to_string(),
            "account \"beta-2\": environment variable B_SECRET (its secret) is empty or unset"
        );
        let dup = TWO.replace("beta-2", "alpha");
        assert_eq!(
            parse("f", &dup, env).unwrap_err(),
            AccountsFileError::Duplicate {
                name: "alpha".into()
            }
        );
        let bad = TWO.replace("beta-2", "be ta");
        assert!(matches!(
            parse("f", &bad, env),
            Err(AccountsFileError::BadName { .. })
        ));
        assert_eq!(
            parse("f", "", env).unwrap_err(),
            AccountsFileError::Empty { path: "f".into() }
        );
        let secret_inline = format!(
            "{TWO}\n[[account]]\nname='c'\nkey_env='A_KEY'\nsecret_env='A_SECRET'\nsecret='x'\n"
        );
        assert!(matches!(
            parse("f", &secret_inline, env),
            Err(AccountsFileError::Parse { .. })
        ));
    }
}
