//! PromQL syntax, checked when a configuration is loaded: a rule whose
//! query Prometheus would refuse is a configuration error with its key path,
//! not a data error at the first evaluation. The grammar is
//! `promql-parser`'s (the full Prometheus grammar and function list).

use std::fmt;

/// Why a query does not parse, and where when that can be told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// The parser's words.
    pub message: String,
    /// 1-based character column of the offending place, when known.
    pub column: Option<usize>,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.column {
            Some(c) => write!(f, "PromQL syntax error at column {c}: {}", self.message),
            None => write!(f, "PromQL syntax error: {}", self.message),
        }
    }
}

/// Parses `query`; the error says where when the parser's message allows.
pub fn check(query: &str) -> Result<(), SyntaxError> {
    promql_parser::parser::parse(query)
        .map(|_| ())
        .map_err(|message| SyntaxError {
            column: locate(query, &message),
            message,
        })
}

/// The parser reports no positions; these are the messages whose place in
/// the query can be found again.
fn locate(query: &str, message: &str) -> Option<usize> {
    let at = if message.contains("unclosed left parenthesis") {
        parentheses(query).0
    } else if message.contains("unexpected right parenthesis") {
        parentheses(query).1
    } else if let Some(name) = message
        .strip_prefix("unknown function with name '")
        .and_then(|r| r.strip_suffix('\''))
    {
        query.find(&format!("{name}("))
    } else {
        message
            .rsplit_once(": ")
            .map(|(_, text)| text.trim())
            .filter(|t| !t.is_empty())
            .and_then(|t| query.find(t))
    }?;
    Some(query[..at].chars().count() + 1)
}

/// Byte offsets of the first unmatched `(` and of the first `)` without a
/// `(`, outside string literals.
fn parentheses(query: &str) -> (Option<usize>, Option<usize>) {
    let mut open = Vec::new();
    let mut stray = None;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (i, c) in query.char_indices() {
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                }
            }
            None => match c {
                '"' | '\'' | '`' => quote = Some(c),
                '(' => open.push(i),
                ')' if open.pop().is_none() && stray.is_none() => stray = Some(i),
                _ => {}
            },
        }
    }
    (open.first().copied(), stray)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_queries_pass() {
        for q in [
            "sum(yarn_pending_memory_mb{cluster=\"emr-abc12345\"})",
            "sum(a) / sum(b)",
            "sum(x) and on() (time() - max(timestamp(x)) < 120)",
            "max_over_time(x[5m])",
            "q",
        ] {
            assert_eq!(check(q), Ok(()), "{q}");
        }
    }

    #[test]
    fn errors_say_where_when_they_can() {
        let e = check("sum(rate(x[5m])").unwrap_err();
        assert_eq!(e.column, Some(4), "{e}");
        assert!(e.to_string().contains("unclosed left parenthesis"), "{e}");
        assert_eq!(check("sum(x))").unwrap_err().column, Some(7));
        assert_eq!(check("rate(x[5q])").unwrap_err().column, Some(8));
        assert_eq!(check("avg(foo(x))").unwrap_err().column, Some(5));
        // A parenthesis inside a label value is not one.
        assert_eq!(check("sum(x{a=\"(\"}").unwrap_err().column, Some(4));
        let e = check("sum(x) +").unwrap_err();
        assert_eq!(e.column, None);
        assert!(e.to_string().starts_with("PromQL syntax error: "), "{e}");
    }
}
