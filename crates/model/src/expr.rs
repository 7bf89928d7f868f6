//! idlink's expression language: what a `ScalarRule`, `NavigationRule` or
//! `ResourceCorrelationRule` computes when a plain Binding is not enough.
//!
//! ```text
//! lower(unaccent(FirstName)) + '.' + lower(unaccent(LastName))
//! 'cn=' + Groups + ',ou=groups,dc=example,dc=org'
//! if(MiddleName, substring(MiddleName, 0, 1) + '. ', '') + LastName
//! format_date(HireDate, 'dd/MM/yyyy')
//! ```
//!
//! The language reference for users is `docs/expressions.md`. Expressions are parsed once (by
//! `check`, with located errors) and evaluated for each owner. A value is a list of strings:
//! empty means "no value", one element is a scalar, several come from a multi-valued path.
//! Functions map over the elements; concatenating a list with a scalar maps too; concatenating
//! with an empty value gives the other side unchanged. Empty strings are dropped from every
//! result, so "no value" is always the empty list.
//!
//! Parsing is bounded ([`MAX_SOURCE_LEN`], [`MAX_DEPTH`]) and evaluation is bounded
//! ([`MAX_VALUE_LEN`]), so a hostile expression is refused instead of exhausting the stack or
//! the memory.

use std::fmt::Write as _;

use chrono::format::Item;

use crate::values::{ValueFormat, read_datetime};

/// The longest expression accepted, in bytes.
pub const MAX_SOURCE_LEN: usize = 64 * 1024;
/// The deepest nesting of parentheses and function calls accepted.
pub const MAX_DEPTH: usize = 64;
/// The longest string an evaluation may build, in bytes.
pub const MAX_VALUE_LEN: usize = 1024 * 1024;

/// A parsed expression. Cheap to clone, shareable between threads.
#[derive(Debug, Clone)]
pub struct Expr {
    node: Node,
}

/// Why a text is not an expression: where (a byte offset in the source text) and what was
/// expected there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (at byte {offset})")]
pub struct ExprError {
    /// Byte offset in the source text.
    pub offset: usize,
    pub message: String,
}

/// Why an expression could not be evaluated for one owner.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct EvalError {
    pub message: String,
}

#[derive(Debug, Clone)]
enum Node {
    Text(String),
    Number(usize),
    /// A property path as written (`Organization.Name`, `HR_Person:FirstName`) and its offset.
    Path {
        at: usize,
        path: String,
    },
    /// `a + b + c`, at least two parts.
    Concat(Vec<Node>),
    /// A function whose arguments are all expressions.
    Call(Func, Vec<Node>),
    Substring {
        value: Box<Node>,
        start: usize,
        len: Option<usize>,
    },
    FormatDate {
        value: Box<Node>,
        /// The output pattern, translated to chrono items once.
        output: Vec<Item<'static>>,
        input: ValueFormat,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Func {
    Lower,
    Upper,
    Trim,
    Substring,
    Replace,
    If,
    Coalesce,
    FormatDate,
    Unaccent,
    First,
    Join,
}

struct FuncInfo {
    name: &'static str,
    func: Func,
    min: usize,
    /// `None`: any number from `min` on.
    max: Option<usize>,
    usage: &'static str,
}

const FUNCTIONS: &[FuncInfo] = &[
    FuncInfo {
        name: "lower",
        func: Func::Lower,
        min: 1,
        max: Some(1),
        usage: "lower(x)",
    },
    FuncInfo {
        name: "upper",
        func: Func::Upper,
        min: 1,
        max: Some(1),
        usage: "upper(x)",
    },
    FuncInfo {
        name: "trim",
        func: Func::Trim,
        min: 1,
        max: Some(1),
        usage: "trim(x)",
    },
    FuncInfo {
        name: "substring",
        func: Func::Substring,
        min: 2,
        max: Some(3),
        usage: "substring(x, start[, length])",
    },
    FuncInfo {
        name: "replace",
        func: Func::Replace,
        min: 3,
        max: Some(3),
        usage: "replace(x, from, to)",
    },
    FuncInfo {
        name: "if",
        func: Func::If,
        min: 2,
        max: Some(3),
        usage: "if(condition, then[, else])",
    },
    FuncInfo {
        name: "coalesce",
        func: Func::Coalesce,
        min: 1,
        max: None,
        usage: "coalesce(a, b, ...)",
    },
    FuncInfo {
        name: "format_date",
        func: Func::FormatDate,
        min: 2,
        max: Some(3),
        usage: "format_date(x, 'pattern'[, 'input pattern'])",
    },
    FuncInfo {
        name: "unaccent",
        func: Func::Unaccent,
        min: 1,
        max: Some(1),
        usage: "unaccent(x)",
    },
    FuncInfo {
        name: "first",
        func: Func::First,
        min: 1,
        max: Some(1),
        usage: "first(x)",
    },
    FuncInfo {
        name: "join",
        func: Func::Join,
        min: 2,
        max: Some(2),
        usage: "join(x, separator)",
    },
];

/// Other names of functions: the .NET method names the product's documentation writes.
const ALIASES: &[(&str, &str)] = &[("tolower", "lower"), ("toupper", "upper")];

fn function(name: &str) -> Option<&'static FuncInfo> {
    let lower = name.to_ascii_lowercase();
    let canonical = ALIASES
        .iter()
        .find(|(alias, _)| *alias == lower)
        .map_or(lower.as_str(), |(_, to)| *to);
    FUNCTIONS.iter().find(|f| f.name == canonical)
}

/// The names [`apply_named`] knows, as the documentation writes them, then idlink's own.
pub const NAMED_FUNCTIONS: &[&str] = &[
    "ToLower", "ToUpper", "Trim", "Unaccent", "lower", "upper", "trim", "unaccent",
];

/// Whether `name` (case-insensitive) is one [`apply_named`] knows.
pub fn is_named_function(name: &str) -> bool {
    named(name).is_some()
}

fn named(name: &str) -> Option<fn(&str) -> String> {
    match name.trim().to_ascii_lowercase().as_str() {
        "tolower" | "lower" => Some(str::to_lowercase),
        "toupper" | "upper" => Some(str::to_uppercase),
        "trim" => Some(|s: &str| s.trim().to_string()),
        "unaccent" => Some(unaccent),
        _ => None,
    }
}

/// Applies a function named alone, as a `ResourceCorrelationRule`'s `SourceExpression` or
/// `TargetExpression` written together with a binding names it (`ToLower`): to each of
/// `values`. Known names (case-insensitive): `ToLower`/`lower`, `ToUpper`/`upper`, `Trim`/`trim`,
/// `Unaccent`/`unaccent`. Empty results are dropped.
pub fn apply_named(name: &str, values: Vec<String>) -> Result<Vec<String>, EvalError> {
    let Some(f) = named(name) else {
        return Err(EvalError {
            message: format!(
                "unknown function '{}': write one of {}",
                name.trim(),
                NAMED_FUNCTIONS.join(", ")
            ),
        });
    };
    Ok(values
        .iter()
        .map(|v| f(v))
        .filter(|v| !v.is_empty())
        .collect())
}

/// Removes diacritics and transliterates to ASCII, for logins: `Éloïse Müller-Østergård` becomes
/// `Eloise Muller-Ostergard`, `ß` becomes `ss`. ASCII is kept as it is; a character without an
/// ASCII transliteration is removed.
pub fn unaccent(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_ascii() {
            out.push(c);
        } else if let Some(t) = deunicode::deunicode_char(c) {
            out.push_str(t);
        }
    }
    out
}

impl Expr {
    /// Parses an idlink expression. `C#:` expressions are refused with a message saying they
    /// must be rewritten.
    pub fn parse(src: &str) -> Result<Expr, ExprError> {
        if src.len() > MAX_SOURCE_LEN {
            return Err(ExprError {
                offset: MAX_SOURCE_LEN,
                message: format!(
                    "the expression is {} bytes long; at most {MAX_SOURCE_LEN} are allowed",
                    src.len()
                ),
            });
        }
        let lead = src.len() - src.trim_start().len();
        if src[lead..].starts_with("C#:") {
            return Err(ExprError {
                offset: lead,
                message: "a C# expression cannot run in idlink: rewrite it as a Binding or in \
                          idlink's expression language (docs/expressions.md)"
                    .to_string(),
            });
        }
        let mut p = Parser {
            src,
            pos: 0,
            depth: 0,
        };
        p.skip_ws();
        if p.peek().is_none() {
            return Err(ExprError {
                offset: 0,
                message: "empty expression: write a property path (FirstName), a 'text' literal \
                          or a function call (lower(FirstName))"
                    .to_string(),
            });
        }
        let node = p.concat()?;
        p.skip_ws();
        if let Some(c) = p.peek() {
            let message = match c {
                ')' => "unexpected ')': no '(' is open here".to_string(),
                ',' => "unexpected ',' outside a function call; to join texts use '+'".to_string(),
                _ => format!(
                    "unexpected '{c}' after a complete expression; expected '+' or the end of \
                     the expression"
                ),
            };
            return Err(p.error_at(p.pos, message));
        }
        Ok(Expr { node })
    }

    /// A Binding (`Organization.Name`, optionally `EntityType:Path`) as an expression: a path
    /// lookup.
    pub fn binding(path: &str) -> Expr {
        Expr {
            node: Node::Path {
                at: 0,
                path: path.trim().to_string(),
            },
        }
    }

    /// Property paths the expression reads, as written (`FirstName`, `Organization.Name`,
    /// `HR_Person:FirstName`), each once, in the order they first appear.
    pub fn paths(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for (_, p) in self.paths_at() {
            if !out.contains(&p) {
                out.push(p);
            }
        }
        out
    }

    /// Every occurrence of a property path with its byte offset in the source text (0 for an
    /// expression made by [`Expr::binding`]), in source order.
    pub fn paths_at(&self) -> Vec<(usize, &str)> {
        let mut out = Vec::new();
        collect_paths(&self.node, &mut out);
        out
    }

    /// Evaluates. `lookup(path)` gives the values of a property path for the current owner
    /// (empty vec = no value; several values when the path crosses a multi-valued association).
    /// The result is a list of strings: empty = no value, one element = a scalar.
    pub fn eval(&self, lookup: &dyn Fn(&str) -> Vec<String>) -> Result<Vec<String>, EvalError> {
        eval(&self.node, lookup)
    }
}

fn collect_paths<'a>(node: &'a Node, out: &mut Vec<(usize, &'a str)>) {
    match node {
        Node::Text(_) | Node::Number(_) => {}
        Node::Path { at, path } => out.push((*at, path)),
        Node::Concat(parts) | Node::Call(_, parts) => {
            for p in parts {
                collect_paths(p, out);
            }
        }
        Node::Substring { value, .. } | Node::FormatDate { value, .. } => {
            collect_paths(value, out);
        }
    }
}

struct Parser<'s> {
    src: &'s str,
    pos: usize,
    depth: usize,
}

fn is_ident_start(c: char) -> bool {
    c.is_alphabetic() || c == '_'
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn peek_at(&self, pos: usize) -> Option<char> {
        self.src.get(pos..).and_then(|s| s.chars().next())
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn skip_ws(&mut self) {
        while let Some(c) = self.peek() {
            if !c.is_whitespace() {
                break;
            }
            self.pos += c.len_utf8();
        }
    }

    fn error_at(&self, offset: usize, message: impl Into<String>) -> ExprError {
        ExprError {
            offset,
            message: message.into(),
        }
    }

    /// `term ('+' term)*`
    fn concat(&mut self) -> Result<Node, ExprError> {
        let mut parts = vec![self.term()?];
        loop {
            self.skip_ws();
            if self.peek() == Some('+') {
                self.pos += 1;
                parts.push(self.term()?);
            } else {
                break;
            }
        }
        Ok(if parts.len() == 1 {
            parts.swap_remove(0)
        } else {
            Node::Concat(parts)
        })
    }

    fn enter(&mut self, at: usize) -> Result<(), ExprError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error_at(
                at,
                format!(
                    "the expression is nested too deeply: at most {MAX_DEPTH} levels of \
                     parentheses and function calls"
                ),
            ));
        }
        Ok(())
    }

    fn term(&mut self) -> Result<Node, ExprError> {
        self.skip_ws();
        let start = self.pos;
        match self.peek() {
            None => Err(self.error_at(
                start,
                "the expression ends where a value was expected: a property path, a 'text' \
                 literal, a number or a function call",
            )),
            Some(q @ ('\'' | '"')) => self.string(q),
            Some(c) if c.is_ascii_digit() => self.number(),
            Some('(') => {
                self.enter(start)?;
                self.pos += 1;
                let node = self.concat()?;
                self.skip_ws();
                if self.peek() != Some(')') {
                    return Err(self.expected_close(start, "'('"));
                }
                self.pos += 1;
                self.depth -= 1;
                Ok(node)
            }
            Some(c) if is_ident_start(c) => self.path_or_call(),
            Some('+') => Err(self.error_at(
                start,
                "unexpected '+': a value is missing before or after it",
            )),
            Some(c) => Err(self.error_at(
                start,
                format!(
                    "unexpected '{c}'; expected a property path, a 'text' literal, a number, a \
                     function call or '('"
                ),
            )),
        }
    }

    fn expected_close(&self, open: usize, what: &str) -> ExprError {
        match self.peek() {
            None => self.error_at(
                self.pos,
                format!("the expression ends before the ')' that closes the {what} at byte {open}"),
            ),
            Some(c) => self.error_at(
                self.pos,
                format!("unexpected '{c}'; expected ')' to close the {what} at byte {open}"),
            ),
        }
    }

    fn string(&mut self, quote: char) -> Result<Node, ExprError> {
        let start = self.pos;
        self.pos += 1;
        let mut text = String::new();
        loop {
            match self.bump() {
                None => {
                    return Err(self.error_at(
                        start,
                        format!(
                            "unterminated text: the {quote}...{quote} literal starting here has \
                             no closing {quote} (write {quote}{quote} for a {quote} inside it)"
                        ),
                    ));
                }
                Some(c) if c == quote => {
                    if self.peek() == Some(quote) {
                        self.pos += 1;
                        text.push(quote);
                    } else {
                        return Ok(Node::Text(text));
                    }
                }
                Some(c) => text.push(c),
            }
        }
    }

    fn number(&mut self) -> Result<Node, ExprError> {
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
        }
        let digits = &self.src[start..self.pos];
        if self.peek().is_some_and(is_ident_char) {
            return Err(self.error_at(
                start,
                "a property name cannot start with a digit; a number is digits only",
            ));
        }
        digits
            .parse::<usize>()
            .map(Node::Number)
            .map_err(|_| self.error_at(start, format!("the number {digits} is too large")))
    }

    fn ident(&mut self) {
        while self.peek().is_some_and(is_ident_char) {
            self.bump();
        }
    }

    /// `[EntityType ':'] Name ('.' Name)*`, or `name '(' args ')'`.
    fn path_or_call(&mut self) -> Result<Node, ExprError> {
        let src = self.src;
        let start = self.pos;
        self.ident();
        let mut simple = true;
        if self.peek() == Some(':') && self.peek_at(self.pos + 1).is_some_and(is_ident_start) {
            self.pos += 1;
            self.ident();
            simple = false;
        }
        while self.peek() == Some('.') {
            self.pos += 1;
            if !self.peek().is_some_and(is_ident_start) {
                return Err(self.error_at(
                    self.pos,
                    format!(
                        "expected a property name after '{}.'",
                        &self.src[start..self.pos - 1]
                    ),
                ));
            }
            self.ident();
            simple = false;
        }
        let end = self.pos;
        let name = &src[start..end];
        self.skip_ws();
        if self.peek() != Some('(') {
            self.pos = end;
            return Ok(Node::Path {
                at: start,
                path: name.to_string(),
            });
        }
        if !simple {
            return Err(self.error_at(
                start,
                format!("'{name}' is a property path, not a function: it cannot be called"),
            ));
        }
        let Some(info) = function(name) else {
            let suggestion = crate::diag::did_you_mean(
                name,
                FUNCTIONS
                    .iter()
                    .map(|f| f.name)
                    .chain(ALIASES.iter().map(|(a, _)| *a)),
            );
            let message = match suggestion {
                Some(s) => format!("unknown function '{name}'; did you mean '{s}'?"),
                None => format!(
                    "unknown function '{name}'; the functions are {}",
                    FUNCTIONS
                        .iter()
                        .map(|f| f.name)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            return Err(self.error_at(start, message));
        };
        let open = self.pos;
        self.enter(open)?;
        self.pos += 1;
        let mut args: Vec<(usize, Node)> = Vec::new();
        self.skip_ws();
        if self.peek() == Some(')') {
            self.pos += 1;
        } else {
            loop {
                self.skip_ws();
                let at = self.pos;
                args.push((at, self.concat()?));
                self.skip_ws();
                match self.peek() {
                    Some(',') => self.pos += 1,
                    Some(')') => {
                        self.pos += 1;
                        break;
                    }
                    None => {
                        return Err(self.error_at(
                            self.pos,
                            format!(
                                "the expression ends inside the call to {name}: expected ',' or \
                                 ')' ({})",
                                info.usage
                            ),
                        ));
                    }
                    Some(c) => {
                        return Err(self.error_at(
                            self.pos,
                            format!(
                                "unexpected '{c}' in the call to {name}: expected ',' or ')' ({})",
                                info.usage
                            ),
                        ));
                    }
                }
            }
        }
        self.depth -= 1;
        let n = args.len();
        if n < info.min || info.max.is_some_and(|m| n > m) {
            let wanted = match info.max {
                Some(m) if m == info.min => plural(m, "argument"),
                Some(m) => format!("{} to {m} arguments", info.min),
                None => format!("at least {}", plural(info.min, "argument")),
            };
            return Err(self.error_at(
                start,
                format!("{} takes {wanted}, found {n}: {}", info.name, info.usage),
            ));
        }
        self.build_call(info, args)
    }

    fn build_call(&self, info: &FuncInfo, args: Vec<(usize, Node)>) -> Result<Node, ExprError> {
        let mut it = args.into_iter();
        match info.func {
            Func::Substring => {
                let (_, value) = it.next().ok_or_else(|| self.arity_bug(info))?;
                let number = |(at, n): (usize, Node), what: &str| match n {
                    Node::Number(n) => Ok(n),
                    _ => Err(self.error_at(
                        at,
                        format!(
                            "substring's {what} must be a whole number written as digits, such as 0"
                        ),
                    )),
                };
                let start = match it.next() {
                    Some(a) => number(a, "start")?,
                    None => 0,
                };
                let len = it.next().map(|a| number(a, "length")).transpose()?;
                Ok(Node::Substring {
                    value: Box::new(value),
                    start,
                    len,
                })
            }
            Func::FormatDate => {
                let (_, value) = it.next().ok_or_else(|| self.arity_bug(info))?;
                let output = match it.next() {
                    Some((at, Node::Text(p))) => match ValueFormat::parse(&p) {
                        ValueFormat::Date { items, .. } if is_date_pattern(&items) => items,
                        _ => {
                            return Err(self.error_at(
                                at,
                                format!(
                                    "'{p}' is not a date pattern: write a .NET date pattern such \
                                     as 'yyyy-MM-dd' or 'dd/MM/yyyy HH:mm'"
                                ),
                            ));
                        }
                    },
                    Some((at, _)) => {
                        return Err(self.error_at(
                            at,
                            "format_date's pattern must be a 'text' literal such as 'yyyy-MM-dd'",
                        ));
                    }
                    None => return Err(self.arity_bug(info)),
                };
                let input = match it.next() {
                    None => ValueFormat::Default,
                    Some((at, Node::Text(p))) => match ValueFormat::parse(&p) {
                        ValueFormat::Date { items, .. } if !is_date_pattern(&items) => {
                            return Err(self.error_at(at, format!("'{p}' is not a date pattern")));
                        }
                        ValueFormat::MultivaluedText => {
                            return Err(self.error_at(at, format!("'{p}' is not a date pattern")));
                        }
                        f => f,
                    },
                    Some((at, _)) => {
                        return Err(self
                            .error_at(at, "format_date's input pattern must be a 'text' literal"));
                    }
                };
                Ok(Node::FormatDate {
                    value: Box::new(value),
                    output,
                    input,
                })
            }
            func => Ok(Node::Call(func, it.map(|(_, n)| n).collect())),
        }
    }
}

impl Parser<'_> {
    /// Unreachable: arguments are counted before a call is built.
    fn arity_bug(&self, info: &FuncInfo) -> ExprError {
        self.error_at(
            self.pos,
            format!("{} is missing an argument: {}", info.name, info.usage),
        )
    }
}

/// Valid, and writes some part of a date (a pattern of literals only is a mistake).
fn is_date_pattern(items: &[Item<'_>]) -> bool {
    !items.iter().any(|i| matches!(i, Item::Error))
        && items
            .iter()
            .any(|i| matches!(i, Item::Numeric(..) | Item::Fixed(..)))
}

fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

fn too_long() -> EvalError {
    EvalError {
        message: format!("the value grows past {MAX_VALUE_LEN} bytes"),
    }
}

fn keep(values: impl IntoIterator<Item = String>) -> Vec<String> {
    values.into_iter().filter(|v| !v.is_empty()).collect()
}

/// The single value of a function argument that must not be a list ("" when it has none).
fn scalar(values: Vec<String>, what: &str) -> Result<String, EvalError> {
    let n = values.len();
    let mut it = values.into_iter();
    match (it.next(), n) {
        (None, _) => Ok(String::new()),
        (Some(v), 1) => Ok(v),
        _ => Err(EvalError {
            message: format!(
                "{what} has {n} values; it must have one (use first(x) or join(x, sep))"
            ),
        }),
    }
}

fn concat(a: Vec<String>, b: Vec<String>) -> Result<Vec<String>, EvalError> {
    let join = |x: &str, y: &str| {
        if x.len() + y.len() > MAX_VALUE_LEN {
            Err(too_long())
        } else {
            Ok(format!("{x}{y}"))
        }
    };
    match (a.len(), b.len()) {
        (0, _) => Ok(b),
        (_, 0) => Ok(a),
        (1, _) => b.iter().map(|y| join(&a[0], y)).collect(),
        (_, 1) => a.iter().map(|x| join(x, &b[0])).collect(),
        (n, m) => Err(EvalError {
            message: format!(
                "cannot concatenate two lists ({n} values and {m} values): make one side a single \
                 value with first(x) or join(x, separator)"
            ),
        }),
    }
}

fn eval(node: &Node, lookup: &dyn Fn(&str) -> Vec<String>) -> Result<Vec<String>, EvalError> {
    Ok(match node {
        Node::Text(s) => keep([s.clone()]),
        Node::Number(n) => vec![n.to_string()],
        Node::Path { path, .. } => keep(lookup(path)),
        Node::Concat(parts) => {
            let mut acc = Vec::new();
            for p in parts {
                acc = concat(acc, eval(p, lookup)?)?;
            }
            acc
        }
        Node::Substring { value, start, len } => keep(eval(value, lookup)?.iter().map(|v| {
            let rest = v.chars().skip(*start);
            match len {
                Some(l) => rest.take(*l).collect(),
                None => rest.collect(),
            }
        })),
        Node::FormatDate {
            value,
            output,
            input,
        } => {
            let mut out = Vec::new();
            for v in eval(value, lookup)? {
                let date = match read_datetime(input, v.trim()) {
                    Some(Some(d)) => d,
                    // A date that means "never" (1601date): no value.
                    Some(None) => continue,
                    None => {
                        let shown: String = v.chars().take(40).collect();
                        return Err(EvalError {
                            message: format!(
                                "format_date: '{shown}' is not a date{}",
                                match input {
                                    ValueFormat::Date { written, .. } =>
                                        format!(" in the format '{written}'"),
                                    _ => " (expected ISO 8601, such as 2024-05-31 or 2024-05-31T08:30:00Z)"
                                        .to_string(),
                                }
                            ),
                        });
                    }
                };
                let mut s = String::new();
                write!(s, "{}", date.format_with_items(output.iter())).map_err(|_| EvalError {
                    message: "format_date: the date cannot be written in this pattern".to_string(),
                })?;
                out.push(s);
            }
            keep(out)
        }
        Node::Call(func, args) => call(*func, args, lookup)?,
    })
}

fn call(
    func: Func,
    args: &[Node],
    lookup: &dyn Fn(&str) -> Vec<String>,
) -> Result<Vec<String>, EvalError> {
    let arg = |i: usize| match args.get(i) {
        Some(a) => eval(a, lookup),
        None => Ok(Vec::new()),
    };
    Ok(match func {
        Func::Lower => keep(arg(0)?.iter().map(|v| v.to_lowercase())),
        Func::Upper => keep(arg(0)?.iter().map(|v| v.to_uppercase())),
        Func::Trim => keep(arg(0)?.iter().map(|v| v.trim().to_string())),
        Func::Unaccent => keep(arg(0)?.iter().map(|v| unaccent(v))),
        Func::First => arg(0)?.into_iter().take(1).collect(),
        Func::Replace => {
            let values = arg(0)?;
            let from = scalar(arg(1)?, "replace's 'from'")?;
            let to = scalar(arg(2)?, "replace's 'to'")?;
            if from.is_empty() {
                return Ok(values);
            }
            let mut out = Vec::with_capacity(values.len());
            for v in values {
                let grown = v.matches(from.as_str()).count() * to.len();
                if v.len() + grown > MAX_VALUE_LEN {
                    return Err(too_long());
                }
                out.push(v.replace(from.as_str(), &to));
            }
            keep(out)
        }
        Func::If => {
            if arg(0)?.is_empty() {
                arg(2)?
            } else {
                arg(1)?
            }
        }
        Func::Coalesce => {
            for a in args {
                let v = eval(a, lookup)?;
                if !v.is_empty() {
                    return Ok(v);
                }
            }
            Vec::new()
        }
        Func::Join => {
            let values = arg(0)?;
            let sep = scalar(arg(1)?, "join's separator")?;
            let total = values.iter().map(String::len).sum::<usize>()
                + sep.len() * values.len().saturating_sub(1);
            if total > MAX_VALUE_LEN {
                return Err(too_long());
            }
            keep([values.join(&sep)])
        }
        // Built as their own nodes by the parser.
        Func::Substring | Func::FormatDate => {
            return Err(EvalError {
                message: "internal error: a function node was built wrongly".to_string(),
            });
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn person() -> HashMap<&'static str, Vec<String>> {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        HashMap::from([
            ("FirstName", s(&["Éloïse"])),
            ("LastName", s(&["Müller-Østergård"])),
            ("MiddleName", s(&[])),
            ("Blank", s(&[""])),
            ("Padded", s(&["  Ann Lee  "])),
            ("Organization.Name", s(&["Sales"])),
            ("HR_Person:FirstName", s(&["Eloise"])),
            ("Groups", s(&["admins", "users"])),
            ("Roles", s(&["r1", "r2", "r3"])),
            ("HireDate", s(&["2024-05-31T00:00:00Z"])),
            ("BirthDate", s(&["2024-05-31"])),
            ("LocalDate", s(&["31/05/2024"])),
            ("NotADate", s(&["yesterday"])),
            ("Street", s(&["Straße"])),
        ])
    }

    fn run(src: &str) -> Result<Vec<String>, EvalError> {
        let data = person();
        let expr = Expr::parse(src).unwrap_or_else(|e| panic!("{src}: {e}"));
        expr.eval(&|p| data.get(p).cloned().unwrap_or_default())
    }

    fn ok(src: &str) -> Vec<String> {
        run(src).unwrap_or_else(|e| panic!("{src}: {e}"))
    }

    fn one(src: &str) -> String {
        let v = ok(src);
        assert_eq!(v.len(), 1, "{src}: {v:?}");
        v[0].clone()
    }

    fn err(src: &str) -> ExprError {
        match Expr::parse(src) {
            Ok(e) => panic!("{src} parsed: {e:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn literals_paths_and_concatenation() {
        assert_eq!(one("'text'"), "text");
        assert_eq!(one("\"text\""), "text");
        assert_eq!(one("'it''s'"), "it's");
        assert_eq!(one(r#""say ""hi""""#), r#"say "hi""#);
        assert_eq!(one("42"), "42");
        assert_eq!(one("FirstName"), "Éloïse");
        assert_eq!(one("Organization.Name"), "Sales");
        assert_eq!(one("HR_Person:FirstName"), "Eloise");
        assert_eq!(one("'a' + 'b' + ('c' + 'd')"), "abcd");
        assert_eq!(one("  FirstName+'.'+ LastName "), "Éloïse.Müller-Østergård");
        assert_eq!(ok("''"), Vec::<String>::new());
        assert_eq!(ok("Unknown"), Vec::<String>::new());
        assert_eq!(
            ok("Blank"),
            Vec::<String>::new(),
            "empty strings are no value"
        );
    }

    #[test]
    fn concatenation_with_an_empty_value_keeps_the_other_side() {
        assert_eq!(
            one("FirstName + MiddleName + LastName"),
            "ÉloïseMüller-Østergård"
        );
        assert_eq!(one("MiddleName + 'x'"), "x");
        assert_eq!(ok("MiddleName + Blank"), Vec::<String>::new());
    }

    #[test]
    fn concatenation_maps_over_lists() {
        assert_eq!(ok("'cn=' + Groups"), ["cn=admins", "cn=users"]);
        assert_eq!(
            ok("'cn=' + Groups + ',ou=groups'"),
            ["cn=admins,ou=groups", "cn=users,ou=groups"]
        );
        assert_eq!(ok("Groups + MiddleName"), ["admins", "users"]);
        let e = run("Groups + Roles").expect_err("two lists");
        assert!(e.message.contains("2 values and 3 values"), "{e}");
        assert_eq!(
            one("join(Groups, ';') + '|' + first(Roles)"),
            "admins;users|r1"
        );
    }

    #[test]
    fn case_and_trim() {
        assert_eq!(one("lower(LastName)"), "müller-østergård");
        assert_eq!(one("UPPER(FirstName)"), "ÉLOÏSE");
        assert_eq!(one("upper(Street)"), "STRASSE");
        assert_eq!(one("ToLower('ABC')"), "abc");
        assert_eq!(one("toupper('abc')"), "ABC");
        assert_eq!(one("trim(Padded)"), "Ann Lee");
        assert_eq!(
            ok("trim('   ')"),
            Vec::<String>::new(),
            "a blank result is no value"
        );
        assert_eq!(ok("lower(Groups)"), ["admins", "users"]);
        assert_eq!(ok("upper(MiddleName)"), Vec::<String>::new());
    }

    #[test]
    fn substring_counts_characters_and_clamps() {
        assert_eq!(one("substring(FirstName, 0, 1)"), "É");
        assert_eq!(one("substring(FirstName, 2, 2)"), "oï");
        assert_eq!(one("substring(FirstName, 3)"), "ïse");
        assert_eq!(one("substring('abc', 1, 100)"), "bc");
        assert_eq!(ok("substring('abc', 3)"), Vec::<String>::new());
        assert_eq!(ok("substring('abc', 99, 5)"), Vec::<String>::new());
        assert_eq!(ok("substring('abc', 0, 0)"), Vec::<String>::new());
        assert_eq!(one("substring('😀x', 1)"), "x");
        assert_eq!(ok("substring(Groups, 0, 1)"), ["a", "u"]);
        let e = err("substring('abc', '1')");
        assert_eq!(e.offset, 17);
        assert!(e.message.contains("whole number"), "{e}");
        let e = err("substring('abc', 99999999999999999999999)");
        assert!(e.message.contains("too large"), "{e}");
    }

    #[test]
    fn replace_if_coalesce_first_join() {
        assert_eq!(one("replace(LastName, '-', ' ')"), "Müller Østergård");
        assert_eq!(one("replace('a.b.c', '.', '')"), "abc");
        assert_eq!(
            one("replace('abc', '', 'x')"),
            "abc",
            "an empty 'from' changes nothing"
        );
        assert_eq!(ok("replace('--', '-', '')"), Vec::<String>::new());
        assert_eq!(ok("replace(Groups, 's', 'S')"), ["adminS", "uSerS"]);
        assert!(run("replace('a', Groups, 'b')").is_err());

        assert_eq!(one("if(MiddleName, 'has', 'none')"), "none");
        assert_eq!(one("if(FirstName, 'has', 'none')"), "has");
        assert_eq!(one("if(Blank, 'has', 'none')"), "none");
        assert_eq!(ok("if(MiddleName, 'has')"), Vec::<String>::new());
        assert_eq!(
            one("FirstName + if(MiddleName, ' ' + MiddleName) + ' ' + LastName"),
            "Éloïse Müller-Østergård"
        );

        assert_eq!(
            one("coalesce(MiddleName, Blank, FirstName, LastName)"),
            "Éloïse"
        );
        assert_eq!(ok("coalesce(MiddleName)"), Vec::<String>::new());
        assert_eq!(ok("coalesce(MiddleName, Groups)"), ["admins", "users"]);

        assert_eq!(one("first(Groups)"), "admins");
        assert_eq!(ok("first(MiddleName)"), Vec::<String>::new());

        assert_eq!(one("join(Groups, ', ')"), "admins, users");
        assert_eq!(one("join(Groups, '')"), "adminsusers");
        assert_eq!(one("join(FirstName, ',')"), "Éloïse");
        assert_eq!(ok("join(MiddleName, ',')"), Vec::<String>::new());
    }

    #[test]
    fn format_date_uses_the_dotnet_patterns() {
        assert_eq!(one("format_date(HireDate, 'dd/MM/yyyy')"), "31/05/2024");
        assert_eq!(one("format_date(BirthDate, 'yyyyMMdd')"), "20240531");
        assert_eq!(
            one("format_date(HireDate, 'yyyy-MM-ddTHH:mm:ss')"),
            "2024-05-31T00:00:00"
        );
        assert_eq!(
            one("format_date(LocalDate, 'yyyy-MM-dd', 'dd/MM/yyyy')"),
            "2024-05-31"
        );
        assert_eq!(
            one("format_date('2024-05-31T23:30:00-02:00', 'yyyy-MM-dd HH:mm')"),
            "2024-06-01 01:30"
        );
        assert_eq!(ok("format_date(MiddleName, 'yyyy')"), Vec::<String>::new());
        let e = run("format_date(NotADate, 'yyyy')").expect_err("not a date");
        assert!(e.message.contains("'yesterday' is not a date"), "{e}");
        let e = run("format_date(HireDate, 'yyyy', 'dd/MM/yyyy')").expect_err("other format");
        assert!(e.message.contains("dd/MM/yyyy"), "{e}");
        let e = err("format_date(HireDate, FirstName)");
        assert_eq!(e.offset, 22);
        assert!(e.message.contains("literal"), "{e}");
        let e = err("format_date(HireDate, 'week')");
        assert!(e.message.contains("not a date pattern"), "{e}");
        assert!(
            err("format_date(HireDate, '')")
                .message
                .contains("not a date pattern")
        );
        let e = err("format_date(HireDate, 'multivaluedtext')");
        assert_eq!(e.offset, 22);
        assert!(e.message.contains("not a date pattern"), "{e}");
    }

    #[test]
    fn unaccent_makes_logins() {
        assert_eq!(
            one("unaccent(FirstName + ' ' + LastName)"),
            "Eloise Muller-Ostergard"
        );
        assert_eq!(one("unaccent(Street)"), "Strasse");
        assert_eq!(
            unaccent("Łukasz Żółć Æsa Œuvre đ"),
            "Lukasz Zolc AEsa OEuvre d"
        );
        // Combining marks (text in decomposed form) go too.
        assert_eq!(unaccent("e\u{301}le\u{300}ve"), "eleve");
        assert_eq!(unaccent("plain-ascii_1.2"), "plain-ascii_1.2");
        assert_eq!(
            one("lower(unaccent(FirstName)) + '.' + lower(unaccent(replace(LastName, '-', '')))"),
            "eloise.mullerostergard"
        );
    }

    #[test]
    fn named_functions_for_correlation_rules() {
        let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            apply_named("ToLower", v(&["ABC", "Déf"])),
            Ok(v(&["abc", "déf"]))
        );
        assert_eq!(apply_named("toupper", v(&["abc"])), Ok(v(&["ABC"])));
        assert_eq!(apply_named(" Trim ", v(&[" a ", "  "])), Ok(v(&["a"])));
        assert_eq!(apply_named("Unaccent", v(&["Ørsted"])), Ok(v(&["Orsted"])));
        assert!(apply_named("ToTitle", v(&["a"])).is_err());
        assert!(is_named_function("TOLOWER"));
        assert!(!is_named_function("C#:x:return x;"));
        for n in NAMED_FUNCTIONS {
            assert!(is_named_function(n), "{n}");
        }
    }

    #[test]
    fn paths_are_listed_once_as_written() {
        let e = Expr::parse(
            "lower(FirstName) + '.' + Organization.Name + HR_Person:FirstName + FirstName + 'X'",
        )
        .expect("parses");
        assert_eq!(
            e.paths(),
            ["FirstName", "Organization.Name", "HR_Person:FirstName"]
        );
        assert_eq!(
            e.paths_at(),
            [
                (6, "FirstName"),
                (25, "Organization.Name"),
                (45, "HR_Person:FirstName"),
                (67, "FirstName")
            ]
        );
        assert!(
            Expr::parse("'only' + 3")
                .expect("parses")
                .paths()
                .is_empty()
        );
        let b = Expr::binding(" Manager.Mail ");
        assert_eq!(b.paths(), ["Manager.Mail"]);
        let data = person();
        assert_eq!(
            Expr::binding("Organization.Name").eval(&|p| data.get(p).cloned().unwrap_or_default()),
            Ok(vec!["Sales".to_string()])
        );
    }

    #[test]
    fn errors_are_located_and_say_what_was_expected() {
        let e = err("");
        assert_eq!(e.offset, 0);
        assert!(e.message.contains("empty expression"), "{e}");
        assert_eq!(err("   ").offset, 0);

        let e = err("lower(FirstName) + lowr(LastName)");
        assert_eq!(e.offset, 19);
        assert!(e.message.contains("did you mean 'lower'"), "{e}");
        let e = err("frobnicate(x)");
        assert!(e.message.contains("the functions are lower, upper"), "{e}");

        let e = err("lower(FirstName, LastName)");
        assert_eq!(e.offset, 0);
        assert!(e.message.contains("lower takes 1 argument, found 2"), "{e}");
        let e = err("'x' + replace(FirstName, 'a')");
        assert_eq!(e.offset, 6);
        assert!(
            e.message.contains("replace takes 3 arguments, found 2"),
            "{e}"
        );
        let e = err("substring(FirstName)");
        assert!(e.message.contains("2 to 3 arguments"), "{e}");
        let e = err("coalesce()");
        assert!(e.message.contains("at least 1 argument"), "{e}");

        let e = err("'abc' + 'déf");
        assert_eq!(e.offset, 8);
        assert!(e.message.contains("unterminated"), "{e}");

        let e = err("FirstName LastName");
        assert_eq!(e.offset, 10);
        assert!(e.message.contains("expected '+'"), "{e}");
        let e = err("FirstName)");
        assert_eq!(e.offset, 9);
        assert!(e.message.contains("no '(' is open"), "{e}");
        let e = err("'a', 'b'");
        assert_eq!(e.offset, 3);

        let e = err("'a' +");
        assert_eq!(e.offset, 5);
        assert!(e.message.contains("ends where a value was expected"), "{e}");
        let e = err("+ 'a'");
        assert_eq!(e.offset, 0);
        let e = err("('a' + 'b'");
        assert_eq!(e.offset, 10);
        assert!(e.message.contains("closes the '(' at byte 0"), "{e}");
        let e = err("lower('a' 'b')");
        assert_eq!(e.offset, 10);
        assert!(e.message.contains("expected ',' or ')'"), "{e}");
        let e = err("lower('a'");
        assert_eq!(e.offset, 9);
        let e = err("Organization.");
        assert_eq!(e.offset, 13);
        assert!(
            e.message.contains("property name after 'Organization.'"),
            "{e}"
        );
        let e = err("Organization.Name(x)");
        assert!(e.message.contains("not a function"), "{e}");
        let e = err("é + #");
        assert_eq!(e.offset, 5, "offsets are in bytes");
        let e = err("2abc");
        assert_eq!(e.offset, 0);
    }

    #[test]
    fn csharp_is_refused_with_a_rewrite_message() {
        let e = err("  C#:person:return person.Name;");
        assert_eq!(e.offset, 2);
        assert!(e.message.contains("rewrite"), "{e}");
    }

    #[test]
    fn hostile_input_is_refused_not_crashed_on() {
        let deep = format!("{}'x'{}", "(".repeat(30_000), ")".repeat(30_000));
        let e = err(&deep);
        assert!(e.message.contains("nested too deeply"), "{e}");
        assert_eq!(e.offset, MAX_DEPTH);

        let calls = format!("{}'x'{}", "lower(".repeat(5_000), ")".repeat(5_000));
        assert!(err(&calls).message.contains("nested too deeply"));

        let ok_depth = format!("{}'x'{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
        assert_eq!(one(&ok_depth), "x");
        let too_deep = format!(
            "{}'x'{}",
            "(".repeat(MAX_DEPTH + 1),
            ")".repeat(MAX_DEPTH + 1)
        );
        assert!(Expr::parse(&too_deep).is_err());

        let huge = format!("'{}'", "a".repeat(MAX_SOURCE_LEN));
        let e = err(&huge);
        assert_eq!(e.offset, MAX_SOURCE_LEN);
        assert!(e.message.contains("at most 65536"), "{e}");

        // A long flat concatenation is not recursion.
        let long = vec!["'a'"; 10_000].join("+");
        assert_eq!(one(&long).len(), 10_000);

        // Doubling a value 64 times would need 2^64 bytes.
        let mut bomb = "'aa'".to_string();
        for _ in 0..60 {
            bomb = format!("replace({bomb}, 'a', 'aa')");
        }
        let e = run(&bomb).expect_err("bounded");
        assert!(e.message.contains("grows past"), "{e}");
    }

    #[test]
    fn expressions_are_shareable() {
        fn assert_send_sync<T: Send + Sync + Clone + std::fmt::Debug>() {}
        assert_send_sync::<Expr>();
    }
}
