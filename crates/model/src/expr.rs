//! Placeholder for idlink's expression language (being written on the `expr` branch): only
//! bindings evaluate here; any other expression is refused.

#[derive(Debug, Clone)]
pub struct Expr {
    path: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExprError {
    pub offset: usize,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvalError {
    pub message: String,
}

impl Expr {
    pub fn parse(src: &str) -> Result<Expr, ExprError> {
        Err(ExprError {
            offset: 0,
            message: format!("expressions are not supported yet: {src}"),
        })
    }

    pub fn binding(path: &str) -> Expr {
        Expr {
            path: path.to_string(),
        }
    }

    pub fn paths(&self) -> Vec<&str> {
        vec![self.path.as_str()]
    }

    pub fn eval(&self, lookup: &dyn Fn(&str) -> Vec<String>) -> Result<Vec<String>, EvalError> {
        Ok(lookup(&self.path))
    }
}
