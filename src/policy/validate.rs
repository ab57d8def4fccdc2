//! From the raw policy file to a validated [`Policy`]: names, pairs 1:1, known services.
//!
//! Checks run in file order and stop at the first problem, so the message always
//! points at the earliest line an operator has to fix.

use std::collections::BTreeSet;
use std::ops::Range;
use std::path::Path;

use super::file::{RawPair, RawPolicy};
use super::{Pair, PairAt, Policy, PolicyError, BUILTIN_SERVICES};
use crate::names::{PoolName, ServiceName, MAX_SERVICE_NAME_LEN};
use crate::source::{one_line, LineIndex};

/// Validates a parsed policy file. `text` is the file's text (for line numbers).
pub(crate) fn validate(raw: RawPolicy, text: &str, path: &Path) -> Result<Policy, PolicyError> {
    let v = Validator {
        lines: LineIndex::new(text),
        path,
    };
    let known = v.known_services(&raw)?;
    // (index, line, pools) of the pairs accepted so far.
    let mut seen: Vec<(usize, usize, [PoolName; 2])> = Vec::new();
    let mut pairs = Vec::with_capacity(raw.pair.len());
    for (index, spanned) in raw.pair.iter().enumerate() {
        let line = v.lines.line_of_span(&spanned.span());
        let pair = v.pair(index, spanned.get_ref(), &known)?;
        v.check_unique(index, line, &pair.pools, &seen)?;
        seen.push((index, line, pair.pools.clone()));
        pairs.push(pair);
    }
    Ok(Policy {
        path: path.to_path_buf(),
        pairs,
    })
}

struct Validator<'a> {
    lines: LineIndex,
    path: &'a Path,
}

impl Validator<'_> {
    fn invalid(
        &self,
        span: &Range<usize>,
        key: String,
        problem: String,
        fix: String,
    ) -> PolicyError {
        PolicyError::Invalid {
            path: self.path.to_path_buf(),
            line: self.lines.line_of_span(span),
            key,
            problem: one_line(&problem),
            fix: one_line(&fix),
        }
    }

    /// Built-in services followed by the `[[service]]` declarations, in file order.
    fn known_services(&self, raw: &RawPolicy) -> Result<Vec<String>, PolicyError> {
        let mut known: Vec<String> = BUILTIN_SERVICES.iter().map(|s| (*s).to_owned()).collect();
        for (i, service) in raw.service.iter().enumerate() {
            let name = &service.get_ref().name;
            let key = format!("service[{i}].name");
            if ServiceName::new(name.get_ref()).is_err() {
                return Err(self.invalid(
                    &name.span(),
                    key,
                    format!("\"{}\" is not a valid service name", name.get_ref()),
                    format!("use lower-case letters, digits and '-', starting with a letter or digit, at most {MAX_SERVICE_NAME_LEN} characters (it becomes the ALPN name pg1/<service>)"),
                ));
            }
            if BUILTIN_SERVICES.contains(&name.get_ref().as_str()) {
                return Err(self.invalid(
                    &name.span(),
                    key,
                    format!("\"{}\" is a built-in service", name.get_ref()),
                    "remove this [[service]]; built-in services need no declaration".into(),
                ));
            }
            if known.contains(name.get_ref()) {
                return Err(self.invalid(
                    &name.span(),
                    key,
                    format!("service \"{}\" is declared twice", name.get_ref()),
                    "keep only one [[service]] with this name".into(),
                ));
            }
            known.push(name.get_ref().clone());
        }
        Ok(known)
    }

    /// Checks one pair on its own: two valid, distinct pools and known services.
    fn pair(&self, index: usize, raw: &RawPair, known: &[String]) -> Result<Pair, PolicyError> {
        let pools = raw.pools.get_ref();
        let key = format!("pair[{index}].pools");
        let [first, second] = pools.as_slice() else {
            return Err(self.invalid(
                &raw.pools.span(),
                key,
                format!("lists {} pool(s), but a pair is exactly two pools", pools.len()),
                "write pools = [\"<pool at site 1>\", \"<pool at site 2>\"], one [[pair]] per pair of pools".into(),
            ));
        };
        let [a, b] = [first, second].map(|pool| {
            PoolName::new(pool.get_ref()).map_err(|_| {
                self.invalid(
                    &pool.span(),
                    key.clone(),
                    format!("\"{}\" is not a valid pool name", pool.get_ref()),
                    "use the pool's DNS name (FQDN), e.g. \"pool01.site1.example\"".into(),
                )
            })
        });
        let pools = [a?, b?];
        if pools[0] == pools[1] {
            return Err(self.invalid(
                &raw.pools.span(),
                key,
                format!("pairs \"{}\" with itself", first.get_ref()),
                "a pool's pair is its backup pool at the other site; name both pools".into(),
            ));
        }
        let services = self.services(index, raw, known)?;
        Ok(Pair { pools, services })
    }

    fn services(
        &self,
        index: usize,
        raw: &RawPair,
        known: &[String],
    ) -> Result<BTreeSet<ServiceName>, PolicyError> {
        let key = format!("pair[{index}].services");
        if raw.services.get_ref().is_empty() {
            return Err(self.invalid(
                &raw.services.span(),
                key,
                "is empty, so the pair could not use anything".into(),
                "list what the pair may use, e.g. services = [\"backup-smb\", \"cms-smb\", \"cms-https\"], or remove the [[pair]]".into(),
            ));
        }
        let mut services = BTreeSet::new();
        for service in raw.services.get_ref() {
            let name = service.get_ref();
            if !known.contains(name) {
                return Err(PolicyError::UnknownService {
                    path: self.path.to_path_buf(),
                    line: self.lines.line_of_span(&service.span()),
                    pair: index,
                    service: name.clone(),
                    known: known.to_vec(),
                });
            }
            // Known services are valid names (built in, or checked above).
            let Ok(service_name) = ServiceName::new(name) else {
                continue;
            };
            if !services.insert(service_name) {
                return Err(self.invalid(
                    &service.span(),
                    key,
                    format!("lists \"{name}\" twice"),
                    "list each service once".into(),
                ));
            }
        }
        Ok(services)
    }

    /// Pairs are 1:1: no pool may appear in an earlier pair (compared case-insensitively).
    fn check_unique(
        &self,
        index: usize,
        line: usize,
        pools: &[PoolName; 2],
        seen: &[(usize, usize, [PoolName; 2])],
    ) -> Result<(), PolicyError> {
        let text = |pools: &[PoolName; 2]| pools.clone().map(|p| p.to_string());
        for (earlier, earlier_line, earlier_pools) in seen {
            let same = |a: &PoolName| earlier_pools.contains(a);
            if pools.iter().all(same) {
                return Err(PolicyError::DuplicatePair {
                    path: self.path.to_path_buf(),
                    line,
                    pair: index,
                    first: *earlier,
                    first_line: *earlier_line,
                    pools: text(pools),
                });
            }
            if let Some(pool) = pools.iter().find(|p| same(p)) {
                return Err(PolicyError::PoolInTwoPairs {
                    path: self.path.to_path_buf(),
                    pool: pool.to_string(),
                    first: Box::new(PairAt {
                        index: *earlier,
                        line: *earlier_line,
                        pools: text(earlier_pools),
                    }),
                    second: Box::new(PairAt {
                        index,
                        line,
                        pools: text(pools),
                    }),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::super::{Policy, PolicyError};

    fn folder(rel: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
    }

    /// The `*.toml` files of a folder, sorted; fails the test if there are none.
    fn toml_files(rel: &str) -> Vec<PathBuf> {
        let dir = folder(rel);
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) => panic!("{}: {e}", dir.display()),
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        files.sort();
        assert!(!files.is_empty(), "no test files in {}", dir.display());
        files
    }

    #[test]
    fn every_valid_policy_parses() {
        let mut files = toml_files("policy/tests/valid");
        files.push(folder("policy/pairing.toml"));
        for file in files {
            if let Err(e) = Policy::load(&file) {
                panic!("{} should be valid but: {e}", file.display());
            }
        }
    }

    #[test]
    fn every_invalid_policy_fails_with_its_expected_message() {
        let mut failures = Vec::new();
        for file in toml_files("policy/tests/invalid") {
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            let Some(expect) = text
                .lines()
                .next()
                .and_then(|l| l.strip_prefix("# expect: "))
            else {
                failures.push(format!(
                    "{}: first line must be `# expect: <fragment>`",
                    file.display()
                ));
                continue;
            };
            let message = match Policy::load(&file) {
                Ok(_) => {
                    failures.push(format!("{}: should be invalid", file.display()));
                    continue;
                }
                Err(e) => e.to_string(),
            };
            let names_file = message.starts_with(&file.display().to_string());
            if !message.contains(expect) || message.contains('\n') || !names_file {
                failures.push(format!(
                    "{}:\n  got:    {message}\n  wanted: {expect}",
                    file.display()
                ));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn example_pairing_is_one_reciprocal_pair() {
        let policy = Policy::load(&folder("policy/pairing.toml")).ok();
        let policy = policy.expect("checked by every_valid_policy_parses");
        assert_eq!(policy.pairs.len(), 1);
        assert_eq!(
            policy.peer_of("pool01.site1.example"),
            Some("pool02.site2.example")
        );
        assert_eq!(
            policy.peer_of("pool02.site2.example"),
            Some("pool01.site1.example")
        );
        assert!(policy.pairs[0].services.contains("spool"));
    }

    #[test]
    fn empty_policy_is_valid_and_denies_everything() {
        let policy = Policy::parse("", std::path::Path::new("empty.toml")).ok();
        assert_eq!(policy.map(|p| p.pairs.len()), Some(0));
    }

    #[test]
    fn missing_file_is_a_read_error_naming_it() {
        let dir = tempfile::tempdir().ok();
        let dir = dir.expect("temp dir");
        let path = dir.path().join("nope.toml");
        match Policy::load(&path) {
            Err(e @ PolicyError::Read { .. }) => {
                assert!(e.to_string().contains("nope.toml: cannot read"))
            }
            other => panic!("expected a read error, got {other:?}"),
        }
    }

    #[test]
    fn errors_carry_structured_context() {
        let text = "[[pair]]\npools = [\"a.x\", \"b.x\"]\nservices = [\"nope\"]\n";
        match Policy::parse(text, std::path::Path::new("p.toml")) {
            Err(PolicyError::UnknownService {
                line,
                pair,
                service,
                known,
                ..
            }) => {
                assert_eq!((line, pair, service.as_str()), (3, 0, "nope"));
                assert_eq!(known.len(), 4);
            }
            other => panic!("expected UnknownService, got {other:?}"),
        }
    }
}
