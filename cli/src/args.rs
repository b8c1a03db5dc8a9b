//! A small getopt_long-compatible argument parser (`-ovalue`, `-o value`, `--opt=value`, `--opt value`,
//! bundled flags `-nv`, `--` ends options), so `pgrepl recv` accepts exactly what pg_recvlogical accepts.

/// One option: short letter, long name, whether it takes a value.
pub struct Opt {
    pub short: Option<char>,
    pub long: &'static str,
    pub value: bool,
}

/// Parsed options in order (by long name) and positional arguments.
#[derive(Debug, Default)]
pub struct Parsed {
    pub opts: Vec<(&'static str, Option<String>)>,
    pub positional: Vec<String>,
}

impl Parsed {
    pub fn has(&self, long: &str) -> bool {
        self.opts.iter().any(|(k, _)| *k == long)
    }
    /// The last value given for `long`.
    pub fn value(&self, long: &str) -> Option<&str> {
        self.opts.iter().rev().find(|(k, _)| *k == long).and_then(|(_, v)| v.as_deref())
    }
    /// Every value given for `long`, in order.
    pub fn values<'a>(&'a self, long: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.opts.iter().filter(move |(k, _)| *k == long).filter_map(|(_, v)| v.as_deref())
    }
}

pub fn parse(args: &[String], spec: &[Opt]) -> Result<Parsed, String> {
    let mut p = Parsed::default();
    let mut i = 0;
    while let Some(a) = args.get(i) {
        i += 1;
        if a == "--" {
            p.positional.extend(args.get(i..).unwrap_or_default().iter().cloned());
            break;
        }
        if let Some(long) = a.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (long, None),
            };
            // getopt_long accepts unambiguous prefixes
            let exact = spec.iter().find(|o| o.long == name);
            let o = match exact {
                Some(o) => o,
                None => {
                    let m: Vec<&Opt> = spec.iter().filter(|o| o.long.starts_with(name)).collect();
                    match m.as_slice() {
                        [o] => *o,
                        [] => return Err(format!("unrecognized option '--{name}'")),
                        _ => return Err(format!("option '--{name}' is ambiguous")),
                    }
                }
            };
            if o.value {
                let v = match inline {
                    Some(v) => v,
                    None => {
                        let v = args.get(i).ok_or_else(|| format!("option '--{}' requires an argument", o.long))?;
                        i += 1;
                        v.clone()
                    }
                };
                p.opts.push((o.long, Some(v)));
            } else {
                if inline.is_some() {
                    return Err(format!("option '--{}' doesn't allow an argument", o.long));
                }
                p.opts.push((o.long, None));
            }
        } else if let Some(flags) = a.strip_prefix('-').filter(|f| !f.is_empty()) {
            let chars: Vec<char> = flags.chars().collect();
            let mut j = 0;
            while let Some(&c) = chars.get(j) {
                j += 1;
                let o = spec.iter().find(|o| o.short == Some(c)).ok_or_else(|| format!("invalid option -- '{c}'"))?;
                if o.value {
                    let rest: String = chars.get(j..).unwrap_or_default().iter().collect();
                    let v = if !rest.is_empty() {
                        rest
                    } else {
                        let v = args.get(i).ok_or_else(|| format!("option requires an argument -- '{c}'"))?;
                        i += 1;
                        v.clone()
                    };
                    p.opts.push((o.long, Some(v)));
                    break;
                }
                p.opts.push((o.long, None));
            }
        } else {
            p.positional.push(a.clone());
        }
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &[Opt] = &[
        Opt { short: Some('o'), long: "option", value: true },
        Opt { short: Some('n'), long: "no-loop", value: false },
        Opt { short: Some('v'), long: "verbose", value: false },
        Opt { short: None, long: "start", value: false },
        Opt { short: None, long: "startpos-dummy", value: true },
    ];

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn getopt_forms() {
        let p =
            parse(&s(&["-ofoo=1", "-o", "bar", "--option=baz", "--option", "q", "-nv", "--start", "x"]), SPEC).unwrap();
        assert_eq!(p.values("option").collect::<Vec<_>>(), vec!["foo=1", "bar", "baz", "q"]);
        assert!(p.has("no-loop") && p.has("verbose") && p.has("start"));
        assert_eq!(p.positional, vec!["x"]);
        assert!(parse(&s(&["-x"]), SPEC).is_err());
        assert!(parse(&s(&["--sta"]), SPEC).is_err(), "ambiguous prefix");
        assert!(parse(&s(&["--no-l"]), SPEC).unwrap().has("no-loop"));
        assert!(parse(&s(&["-o"]), SPEC).is_err());
        assert!(parse(&s(&["--start=1"]), SPEC).is_err());
    }
}
