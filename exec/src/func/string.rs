//! String and regex functions.
//!
//! Positions and lengths count characters (Unicode scalar values), not
//! bytes, and are 1-based, as in PostgreSQL; ASCII strings take a byte
//! fast path. `trim` removes spaces only (PostgreSQL), or the characters of
//! its second argument. `concat` skips NULLs; every other function returns
//! NULL for a NULL argument. Regexes use the `regex` crate's syntax (no
//! backreferences or lookaround, linear-time matching); a literal pattern
//! is compiled at plan time, a computed one per row through a one-entry
//! per-thread cache, with a compiled-size limit either way.

use std::cell::RefCell;

use regex::{Regex, RegexBuilder};
use thiserror::Error;

use super::{cast, eval_arg, get};
use crate::error::EvalError;
use crate::expr::Expr;
use crate::types::{Str, Value};

/// Compiled regex size limit: a user pattern cannot make one row's
/// evaluation allocate without bound.
const REGEX_SIZE_BYTES_MAX: usize = 4 << 20;

pub(crate) fn compile_regex(pattern: &str) -> Result<Regex, regex::Error> {
    RegexBuilder::new(pattern).size_limit(REGEX_SIZE_BYTES_MAX).build()
}

thread_local! {
    /// The last pattern compiled at run time. Patterns computed per row are
    /// usually the same for long stretches (a column of a lookup table).
    static LAST_REGEX: RefCell<Option<Regex>> = const { RefCell::new(None) };
}

/// Runs `f` with the compiled form of a pattern known only at run time.
pub(super) fn with_dynamic_regex<R>(
    function: &'static str,
    pattern: &str,
    f: impl FnOnce(&Regex) -> R,
) -> Result<R, EvalError> {
    let cached = LAST_REGEX.with(|c| c.borrow().as_ref().filter(|r| r.as_str() == pattern).cloned());
    let re = match cached {
        Some(re) => re,
        None => {
            let re = compile_regex(pattern).map_err(|e| EvalError::Function {
                function,
                reason: format!("invalid regex {pattern:?}: {e}"),
            })?;
            LAST_REGEX.with(|c| *c.borrow_mut() = Some(re.clone()));
            re
        }
    };
    Ok(f(&re))
}

pub(super) fn lower(v: &Value) -> Result<Value, EvalError> {
    let s = get!("lower", v, Str);
    Ok(Value::Str(Str::from_str_to_lowercase(s)))
}

pub(super) fn upper(v: &Value) -> Result<Value, EvalError> {
    let s = get!("upper", v, Str);
    Ok(Value::Str(Str::from_str_to_uppercase(s)))
}

fn char_len(s: &str) -> usize {
    if s.is_ascii() {
        s.len()
    } else {
        s.chars().count()
    }
}

pub(super) fn length(v: &Value) -> Result<Value, EvalError> {
    let s = get!("length", v, Str);
    Ok(Value::Int(char_len(s) as i64))
}

/// The byte offset of character `n` (0-based), or `s.len()` past the end.
fn byte_offset(s: &str, n: usize) -> usize {
    if s.is_ascii() {
        return n.min(s.len());
    }
    s.char_indices().nth(n).map_or(s.len(), |(i, _)| i)
}

/// Characters `[skip, skip + take)` of `s`.
fn char_slice(s: &str, skip: usize, take: Option<usize>) -> &str {
    let start = byte_offset(s, skip);
    let rest = &s[start..];
    match take {
        Some(t) => &rest[..byte_offset(rest, t)],
        None => rest,
    }
}

fn to_usize(i: i64) -> usize {
    usize::try_from(i.max(0)).unwrap_or(usize::MAX)
}

/// `substring(s, start[, count])`: characters at 1-based positions
/// `[start, start + count)` that exist. A start before 1 still counts
/// toward `count` (PostgreSQL: substring('hello', 0, 3) = 'he').
pub(super) fn substring(s: &Value, start: &Value, count: Option<&Value>) -> Result<Value, EvalError> {
    let s = get!("substring", s, Str);
    let start = get!("substring", start, Int);
    let end = match count {
        None => None,
        Some(c) => {
            let c = get!("substring", c, Int);
            if c < 0 {
                return Err(EvalError::Function {
                    function: "substring",
                    reason: format!("negative substring length {c} not allowed"),
                });
            }
            Some(start.saturating_add(c))
        }
    };
    let begin = start.max(1);
    let take = match end {
        Some(e) if e <= begin => return Ok(Value::Str(Str::default())),
        Some(e) => Some(to_usize(e - begin)),
        None => None,
    };
    Ok(Value::str(char_slice(s, to_usize(begin - 1), take)))
}

/// `concat(a, …)`: NULL arguments count as empty strings (PostgreSQL), so
/// the result is never NULL.
pub(super) fn concat(args: &[Expr], row: &[Value]) -> Result<Value, EvalError> {
    let mut out = Str::default();
    for a in args {
        cast::push_text(&*eval_arg(a, row)?, &mut out);
    }
    Ok(Value::Str(out))
}

/// `split_part(s, delimiter, n)`: the n-th field (1-based; negative counts
/// from the end); '' past the last field; n = 0 is an error. An empty
/// delimiter makes the whole string the only field.
pub(super) fn split_part(s: &Value, delimiter: &Value, n: &Value) -> Result<Value, EvalError> {
    let s = get!("split_part", s, Str);
    let d = get!("split_part", delimiter, Str);
    let n = get!("split_part", n, Int);
    if n == 0 {
        return Err(EvalError::Function {
            function: "split_part",
            reason: "field position must not be zero".into(),
        });
    }
    let field = if d.is_empty() {
        if n == 1 || n == -1 {
            s
        } else {
            ""
        }
    } else if n > 0 {
        s.split(d).nth(to_usize(n - 1)).unwrap_or("")
    } else {
        // Fields are found left to right (which matters for overlapping
        // delimiters) and then counted from the end.
        let fields = s.split(d).count();
        let back = to_usize(n.saturating_neg());
        match fields.checked_sub(back) {
            Some(i) => s.split(d).nth(i).unwrap_or(""),
            None => "",
        }
    };
    Ok(Value::str(field))
}

pub(super) fn trim(side: super::TrimSide, s: &Value, chars: Option<&Value>) -> Result<Value, EvalError> {
    use super::TrimSide;
    let s = get!("trim", s, Str);
    let set = match chars {
        None => " ",
        Some(c) => get!("trim", c, Str),
    };
    let strip = |c: char| set.contains(c);
    let out = match side {
        TrimSide::Both => s.trim_matches(strip),
        TrimSide::Leading => s.trim_start_matches(strip),
        TrimSide::Trailing => s.trim_end_matches(strip),
    };
    Ok(Value::str(out))
}

/// `replace(s, from, to)`; an empty `from` leaves `s` unchanged.
pub(super) fn replace(s: &Value, from: &Value, to: &Value) -> Result<Value, EvalError> {
    let s = get!("replace", s, Str);
    let from = get!("replace", from, Str);
    let to = get!("replace", to, Str);
    if from.is_empty() || !s.contains(from) {
        return Ok(Value::str(s));
    }
    Ok(Value::Str(Str::from(s.replace(from, to))))
}

/// `starts_with` (prefix = true) and `ends_with`.
pub(super) fn affix(s: &Value, part: &Value, prefix: bool) -> Result<Value, EvalError> {
    let name = if prefix { "starts_with" } else { "ends_with" };
    let s = get!(name, s, Str);
    let part = get!(name, part, Str);
    Ok(Value::Bool(if prefix {
        s.starts_with(part)
    } else {
        s.ends_with(part)
    }))
}

/// `strpos(s, sub)`: 1-based character position of the first occurrence,
/// 0 when absent, 1 for an empty `sub`.
pub(super) fn strpos(s: &Value, sub: &Value) -> Result<Value, EvalError> {
    let s = get!("strpos", s, Str);
    let sub = get!("strpos", sub, Str);
    Ok(Value::Int(match s.find(sub) {
        Some(i) => char_len(&s[..i]) as i64 + 1,
        None => 0,
    }))
}

/// `left(s, n)` (left = true) and `right(s, n)`; a negative n means all
/// but |n| characters from the other end.
pub(super) fn left_right(s: &Value, n: &Value, left: bool) -> Result<Value, EvalError> {
    let name = if left { "left" } else { "right" };
    let s = get!(name, s, Str);
    let n = get!(name, n, Int);
    let len = char_len(s);
    let keep = if n >= 0 {
        to_usize(n).min(len)
    } else {
        len.saturating_sub(to_usize(n.saturating_neg()))
    };
    let out = if left {
        char_slice(s, 0, Some(keep))
    } else {
        char_slice(s, len - keep, None)
    };
    Ok(Value::str(out))
}

pub(super) fn reverse(v: &Value) -> Result<Value, EvalError> {
    let s = get!("reverse", v, Str);
    Ok(Value::Str(s.chars().rev().collect()))
}

pub(super) fn regexp_match(s: &Value, re: &Regex) -> Result<Value, EvalError> {
    let s = get!("regexp_match", s, Str);
    Ok(Value::Bool(re.is_match(s)))
}

/// The capture group `regexp_extract` returns without a group argument: the
/// first group when the pattern has one, else the whole match.
pub(crate) fn default_group(re: &Regex) -> i64 {
    if re.captures_len() > 1 {
        1
    } else {
        0
    }
}

/// A `regexp_extract` group number that its pattern does not have.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("group {group} does not exist in pattern {pattern:?} (it has {groups} capture groups)")]
pub struct GroupError {
    pub group: i64,
    pub pattern: String,
    /// Capture groups, not counting the whole match.
    pub groups: usize,
}

/// Checks a group number against a pattern.
pub(crate) fn check_group(re: &Regex, group: i64) -> Result<usize, GroupError> {
    match usize::try_from(group) {
        Ok(g) if g < re.captures_len() => Ok(g),
        _ => Err(GroupError {
            group,
            pattern: re.as_str().to_string(),
            groups: re.captures_len() - 1,
        }),
    }
}

/// `regexp_extract(s, pattern[, group])`: the group of the first match;
/// NULL when nothing matches or the group did not take part in the match.
pub(super) fn regexp_extract(s: &Value, re: &Regex, group: Option<&Value>) -> Result<Value, EvalError> {
    let s = get!("regexp_extract", s, Str);
    let group = match group {
        None => default_group(re),
        Some(g) => get!("regexp_extract", g, Int),
    };
    let group = check_group(re, group).map_err(|e| EvalError::Function {
        function: "regexp_extract",
        reason: e.to_string(),
    })?;
    let found = if group == 0 {
        re.find(s).map(|m| m.as_str())
    } else {
        re.captures(s).and_then(|c| c.get(group)).map(|m| m.as_str())
    };
    Ok(found.map_or(Value::Null, Value::str))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::func::TrimSide;

    fn s(x: &str) -> Value {
        Value::str(x)
    }

    fn i(x: i64) -> Value {
        Value::Int(x)
    }

    #[test]
    fn case_and_length() {
        assert_eq!(lower(&s("HeLLo ÄÖ")), Ok(s("hello äö")));
        assert_eq!(upper(&s("straße")), Ok(s("STRASSE")));
        assert_eq!(length(&s("héllo")), Ok(i(5)));
        assert_eq!(length(&s("")), Ok(i(0)));
        assert_eq!(length(&s("日本語")), Ok(i(3)));
        assert_eq!(length(&Value::Null), Ok(Value::Null));
        assert!(length(&i(3)).is_err());
    }

    #[test]
    fn substring_follows_postgres() {
        let sub = |x: &str, a: i64, n: Option<i64>| substring(&s(x), &i(a), n.map(i).as_ref());
        assert_eq!(sub("hello", 2, Some(3)), Ok(s("ell")));
        assert_eq!(sub("hello", 0, Some(3)), Ok(s("he")));
        assert_eq!(sub("hello", -5, Some(3)), Ok(s("")));
        assert_eq!(sub("hello", 2, None), Ok(s("ello")));
        assert_eq!(sub("hello", -2, None), Ok(s("hello")));
        assert_eq!(sub("hello", 9, None), Ok(s("")));
        assert_eq!(sub("hello", 4, Some(100)), Ok(s("lo")));
        assert_eq!(sub("hello", 1, Some(0)), Ok(s("")));
        assert_eq!(sub("héllo", 2, Some(2)), Ok(s("él")));
        assert_eq!(sub("hello", i64::MAX, Some(i64::MAX)), Ok(s("")));
        assert_eq!(sub("hello", i64::MIN, Some(i64::MAX)), Ok(s("")));
        assert_eq!(sub("hello", i64::MIN, None), Ok(s("hello")));
        assert!(sub("hello", 1, Some(-1)).is_err());
        assert_eq!(substring(&s("x"), &Value::Null, None), Ok(Value::Null));
    }

    #[test]
    fn split_part_fields() {
        let sp = |x: &str, d: &str, n: i64| split_part(&s(x), &s(d), &i(n));
        assert_eq!(sp("a,b,c", ",", 2), Ok(s("b")));
        assert_eq!(sp("a,b,c", ",", 4), Ok(s("")));
        assert_eq!(sp("a,b,c", ",", -1), Ok(s("c")));
        assert_eq!(sp("a,b,c", ",", -3), Ok(s("a")));
        assert_eq!(sp("a,b,c", ",", -4), Ok(s("")));
        assert_eq!(sp("a,b,c", ",", i64::MIN), Ok(s("")));
        assert_eq!(sp("a,b,c", ",", i64::MAX), Ok(s("")));
        assert_eq!(sp("a::b", "::", 2), Ok(s("b")));
        assert_eq!(sp("", ",", 1), Ok(s("")));
        assert_eq!(sp("abc", "", 1), Ok(s("abc")));
        assert_eq!(sp("abc", "", 2), Ok(s("")));
        assert!(sp("abc", ",", 0).is_err());
    }

    #[test]
    fn trim_replace_affixes_positions() {
        assert_eq!(trim(TrimSide::Both, &s("  a b  "), None), Ok(s("a b")));
        assert_eq!(trim(TrimSide::Both, &s("\ta\t"), None), Ok(s("\ta\t")));
        assert_eq!(trim(TrimSide::Leading, &s("  a  "), None), Ok(s("a  ")));
        assert_eq!(trim(TrimSide::Trailing, &s("  a  "), None), Ok(s("  a")));
        assert_eq!(trim(TrimSide::Both, &s("xxaxyx"), Some(&s("xy"))), Ok(s("a")));
        assert_eq!(replace(&s("aXbXc"), &s("X"), &s("--")), Ok(s("a--b--c")));
        assert_eq!(replace(&s("abc"), &s(""), &s("-")), Ok(s("abc")));
        assert_eq!(replace(&s("abc"), &Value::Null, &s("-")), Ok(Value::Null));
        assert_eq!(affix(&s("hello"), &s("he"), true), Ok(Value::Bool(true)));
        assert_eq!(affix(&s("hello"), &s("he"), false), Ok(Value::Bool(false)));
        assert_eq!(affix(&s("hello"), &s(""), false), Ok(Value::Bool(true)));
        assert_eq!(strpos(&s("héllo"), &s("llo")), Ok(i(3)));
        assert_eq!(strpos(&s("hello"), &s("z")), Ok(i(0)));
        assert_eq!(strpos(&s("hello"), &s("")), Ok(i(1)));
        assert_eq!(left_right(&s("héllo"), &i(2), true), Ok(s("hé")));
        assert_eq!(left_right(&s("héllo"), &i(-2), true), Ok(s("hél")));
        assert_eq!(left_right(&s("héllo"), &i(2), false), Ok(s("lo")));
        assert_eq!(left_right(&s("héllo"), &i(-2), false), Ok(s("llo")));
        assert_eq!(left_right(&s("abc"), &i(i64::MIN), false), Ok(s("")));
        assert_eq!(left_right(&s("abc"), &i(i64::MAX), true), Ok(s("abc")));
        assert_eq!(reverse(&s("añb")), Ok(s("bña")));
    }

    #[test]
    fn regexes() {
        let re = compile_regex(r"(\d+)-(\d+)?").unwrap();
        assert_eq!(regexp_match(&s("a 12-"), &re), Ok(Value::Bool(true)));
        assert_eq!(regexp_match(&s("nothing"), &re), Ok(Value::Bool(false)));
        assert_eq!(regexp_extract(&s("a 12-34"), &re, None), Ok(s("12")));
        assert_eq!(regexp_extract(&s("a 12-34"), &re, Some(&i(0))), Ok(s("12-34")));
        assert_eq!(regexp_extract(&s("a 12-"), &re, Some(&i(2))), Ok(Value::Null));
        assert_eq!(regexp_extract(&s("zzz"), &re, None), Ok(Value::Null));
        assert!(regexp_extract(&s("a 12-34"), &re, Some(&i(3))).is_err());
        assert!(regexp_extract(&s("a 12-34"), &re, Some(&i(-1))).is_err());
        let plain = compile_regex("b+").unwrap();
        assert_eq!(regexp_extract(&s("abbc"), &plain, None), Ok(s("bb")));
        assert!(compile_regex("(unclosed").is_err());
        assert!(compile_regex(r"\w{1000}{1000}").is_err());
        let r = with_dynamic_regex("t", "a.c", |re| re.is_match("abc")).unwrap();
        assert!(r);
        assert!(with_dynamic_regex("t", "a.c", |re| re.is_match("xyz")) == Ok(false));
        assert!(with_dynamic_regex("t", "[", |_| ()).is_err());
    }

    #[test]
    fn concat_skips_nulls() {
        let args = vec![
            Expr::lit(s("a")),
            Expr::lit(Value::Null),
            Expr::lit(i(1)),
            Expr::lit(Value::Bool(true)),
        ];
        assert_eq!(concat(&args, &[]), Ok(s("a1true")));
    }
}
